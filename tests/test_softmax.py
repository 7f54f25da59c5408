"""--softmax adaptive: cheap training loss, full log-probabilities out of forward, every verb unchanged; --softmax
sampled: the tied table by negative sampling, still a language model."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.__main__ import build_parser, main
from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.models.heads import AdaptiveHead
from seqlab.run import load, read_metrics
from seqlab.train import config_from_args, train

from conftest import TINY, brute_force_bits, tiny_config, train_interrupted_at

BPE = "bpe:320"


def quiet(*args):
    pass


def head_config(corpus, softmax: str, arch: str = "lstm", steps: int = 60):
    """A tiny BPE run's config with the output layer `softmax`."""
    cfg = tiny_config(corpus, arch, steps)
    cfg.data.tokenizer = BPE
    cfg.model["softmax"] = softmax
    return cfg


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory, corpus_file):
    return train(head_config(corpus_file, "adaptive"), tmp_path_factory.mktemp("adaptive"), log=quiet)


def evals(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["event"] == "eval"]


def test_adaptive_training_lowers_the_loss(adaptive_run):
    first, last = evals(adaptive_run)[0], evals(adaptive_run)[-1]
    assert last["train_loss"] < 0.7 * first["train_loss"], (first, last)
    assert last["train_loss"] < 0.5 * math.log(320)  # far below a uniform guess over the vocabulary
    assert last["val_bpb"] < first["val_bpb"]


def test_forward_gives_normalised_log_probs_that_match_the_training_loss(adaptive_run):
    model = load(adaptive_run).model.eval()
    assert isinstance(model.output_layer(), AdaptiveHead)
    V = model.config.vocab_size
    idx = torch.randint(0, V, (3, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_probs, _ = model(idx[:, :-1])
        loss, _ = model.loss(idx[:, :-1], idx[:, 1:])
    assert log_probs.shape == (3, 23, V)
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(3, 23), atol=1e-5, rtol=0)
    nll = -log_probs.gather(-1, idx[:, 1:, None]).mean()  # forward and the cheap loss are one distribution
    torch.testing.assert_close(loss, nll, atol=1e-5, rtol=1e-5)


def test_clusters_follow_training_frequency_and_are_saved(adaptive_run):
    from seqlab.data.corpus import cache_root, encode_corpus, read_documents

    run = load(adaptive_run)
    data = encode_corpus(read_documents(run.config.data.paths), [], run.tokenizer, run.config.data.val_fraction,
                         cache_root())
    rank = run.model.output_layer().rank
    counts = torch.from_numpy(np.bincount(data.train, minlength=len(rank)))
    assert not torch.equal(rank, torch.arange(len(rank)))  # BPE ids are not in frequency order
    by_rank = counts[torch.argsort(rank)]
    assert torch.all(by_rank[:-1] >= by_rank[1:])  # position 0 is the most frequent token, and so on


def test_eval_and_generate_work_on_an_adaptive_run(adaptive_run, corpus_file, capsys):
    assert main(["eval", str(adaptive_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    final = [r for r in read_metrics(adaptive_run) if r["event"] == "final"][-1]
    assert result["bpb"] == pytest.approx(final["val_bpb"], rel=1e-4)
    run, corpus = load(adaptive_run), corpus_file.read_bytes()  # the held-out split by hand: the last 10%
    split = len(corpus) - math.ceil(0.1 * len(corpus))
    context = [run.tokenizer.bos_id, *run.tokenizer.encode(corpus[:split])][-2048:]
    tokens = [*context, *run.tokenizer.encode(corpus[split:])]
    network = brute_force_bits(run.model, tokens, len(context)).sum() / (len(corpus) - split)
    assert result["bpb_network"] == pytest.approx(network, rel=1e-5)  # forward's log-probs, scored plainly
    assert main(["generate", str(adaptive_run), "--prompt", "anna", "--max-tokens", "12", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip()


def test_resumed_adaptive_run_matches_uninterrupted(corpus_file, tmp_path, monkeypatch):
    whole = train(head_config(corpus_file, "adaptive", steps=40), tmp_path / "whole", log=quiet)
    train_interrupted_at(20, head_config(corpus_file, "adaptive", steps=40), tmp_path / "split", monkeypatch)
    split = train(head_config(corpus_file, "adaptive", steps=40), tmp_path / "split", resume=True, log=quiet)
    a, b = evals(whole)[-1], evals(split)[-1]
    assert a["step"] == b["step"] == 40
    assert b["train_loss"] == a["train_loss"] and b["val_bpb"] == a["val_bpb"]


@pytest.mark.parametrize("arch", ["transformer", "lstm", "conv"])
def test_default_loss_is_the_cross_entropy_of_forward(arch):
    model = build_model(arch, {**TINY[arch], "vocab_size": 50}).eval()
    idx = torch.randint(0, 50, (2, 17), generator=torch.Generator().manual_seed(1))
    x, y = idx[:, :-1], idx[:, 1:]
    logits, _ = model(x)
    old = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
    assert torch.equal(model.loss(x, y)[0], old)


def test_cli_flag_and_cutoffs_reach_the_config(corpus_file):
    args = build_parser().parse_args(["train", str(corpus_file), "--arch", "lstm", "--softmax", "adaptive",
                                      "--set", "model.cutoffs=40,160"])
    cfg = config_from_args(args)
    assert cfg.model["softmax"] == "adaptive" and cfg.model["cutoffs"] == [40, 160]


def test_bad_cutoffs_are_a_one_line_error(corpus_file, capsys):
    code = main(["train", str(corpus_file), "--arch", "lstm", "--softmax", "adaptive", "--max-steps", "1",
                 "--set", "model.cutoffs=200,100", "--set", "model.n_hidden=8", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "model.cutoffs must be increasing" in err, err


def test_byte_vocabulary_trains_with_a_note_and_exports_to_onnx_not_hf(corpus_file, tmp_path):
    from seqlab.export import export

    cfg = tiny_config(corpus_file, "transformer", steps=2)
    cfg.model["softmax"] = "adaptive"
    lines = []
    run_dir = train(cfg, tmp_path / "r", log=lines.append)
    assert sum("note: --softmax adaptive" in str(line) for line in lines) == 1
    with pytest.raises(SeqlabError, match="--softmax adaptive"):
        export(load(run_dir), tmp_path / "hf", "hf")
    assert export(load(run_dir), tmp_path / "m.onnx", "onnx").exists()  # checked against PyTorch's log-probs


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory, corpus_file):
    return train(head_config(corpus_file, "sampled"), tmp_path_factory.mktemp("sampled"), log=quiet)


def test_sampled_head_trains_the_tied_table_and_stays_a_language_model(sampled_run):
    first, last = evals(sampled_run)[0], evals(sampled_run)[-1]
    assert last["train_loss"] < 0.7 * first["train_loss"], (first, last)
    assert last["val_bpb"] < 0.8 * first["val_bpb"], (first, last)  # forward's estimate of P(w | context) learns
    model = load(sampled_run).model
    assert model.output_layer().embed is model.input_embedding()  # tied after a checkpoint round trip


def test_sampled_noise_is_the_training_unigram_to_three_quarters(sampled_run):
    from seqlab.data.corpus import cache_root, encode_corpus, read_documents

    run = load(sampled_run)
    data = encode_corpus(read_documents(run.config.data.paths), [], run.tokenizer, run.config.data.val_fraction,
                         cache_root())
    weights = torch.from_numpy(np.bincount(data.train, minlength=run.tokenizer.vocab_size)).double() ** 0.75
    torch.testing.assert_close(run.model.output_layer().noise.double(), weights / weights.sum())


def test_sampled_forward_recovers_the_distribution_negative_sampling_was_fitted_to():
    """With a constant context only the biases can fit: negative sampling drives bias(w) to
    log(p(w) / (NEGATIVES * noise(w))), and forward adds log noise(w) back, so its softmax is p."""
    from seqlab.models.heads import SampledHead

    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(2 * torch.randn(12, generator=gen), 0)
    head = SampledHead(nn.Embedding(12, 4))
    head.embed.weight.requires_grad_(False)
    head.set_noise(np.arange(1, 13) ** 2)  # a noise far from p: the offset has work to do
    opt = torch.optim.Adam([head.bias], lr=0.05)
    torch.manual_seed(0)
    for _ in range(600):
        opt.zero_grad()
        head.loss(torch.zeros(512, 4), torch.multinomial(p, 512, replacement=True, generator=gen)).backward()
        opt.step()
    with torch.no_grad():
        estimate = torch.softmax(head(torch.zeros(1, 4))[0], 0)
    torch.testing.assert_close(estimate, p, atol=0.02, rtol=0)
