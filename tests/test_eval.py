import json
import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqlab.evaluate import evaluate
from seqlab.models import build_model
from seqlab.run import load
from seqlab import scoring
from seqlab.scoring import RNN_BLOCK, RNN_WARMUP, plan_windows, score_logits, token_bits

from conftest import TINY, assert_near_the_grammar, brute_force_bits, grammar_bits_per_byte


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@pytest.mark.parametrize("n_total,n_context", [(2, 1), (100, 1), (1000, 37), (9000, 1), (RNN_BLOCK * 2 + 5, 300)])
def test_windows_score_every_position_once(arch, n_total, n_context):
    model = build_model(arch, {**TINY[arch], "vocab_size": 50})
    windows = plan_windows(model, n_total, n_context)
    scored = [p for w in windows for p in range(w.first, w.stop)]
    assert scored == list(range(n_context, n_total))
    for w in windows:
        assert 0 <= w.start < w.first  # at least one token of context, never the target itself
        if model.max_context:
            assert w.stop - 1 - w.start <= model.max_context


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_a_large_vocabulary_scores_in_batches_of_bounded_memory(arch, monkeypatch):
    """A batch's log-probabilities stay within scoring.BATCH_LOGITS_BYTES (at most one window over: a window is
    never split), however large the vocabulary; a smaller one's batches hold more tokens. The bound is lowered
    here so that a broken cap costs megabytes, not the gigabytes of a real vocabulary."""
    monkeypatch.setattr(scoring, "BATCH_LOGITS_BYTES", 4 * 512 * 4096)

    def largest_batch(vocab_size: int) -> int:
        model = build_model(arch, {**TINY[arch], "vocab_size": vocab_size}).eval()
        tokens = np.random.default_rng(0).integers(0, vocab_size, 3 * RNN_BLOCK)
        return max(len(logp) for _, logp, _ in score_logits(model, tokens, 1, "cpu"))

    window = RNN_BLOCK + RNN_WARMUP if arch == "lstm" else TINY[arch]["block_size"]
    assert largest_batch(4096) <= 512 + window
    assert largest_batch(64) > largest_batch(4096)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_batches_scored_in_threads_equal_one_at_a_time(arch):
    """With several torch threads the batches are scored side by side in as many workers: the same
    stream, in order, and the caller's thread count is back once it ends (or is abandoned)."""
    torch.manual_seed(0)
    model = build_model(arch, {**TINY[arch], "vocab_size": 50}).eval()
    tokens = np.random.default_rng(1).integers(0, 50, 2 * RNN_BLOCK + 500)  # several recurrent blocks too

    features, ran_in = model.window_features, {}

    def recorded(*args):
        ran_in[torch.get_num_threads()] = ran_in.get(torch.get_num_threads(), set()) | {threading.get_ident()}
        return features(*args)

    def stream(threads: int):
        torch.set_num_threads(threads)
        out = [(first, logp, targets) for first, logp, targets in score_logits(model, tokens, 1, "cpu", 256)]
        assert torch.get_num_threads() == threads
        return out

    saved = torch.get_num_threads()
    model.window_features = recorded
    try:
        alone = stream(1)
        assert ran_in == {1: {threading.get_ident()}}
        ran_in.clear()
        pooled = stream(2)
        assert len(ran_in[1]) == 2 and threading.get_ident() not in ran_in[1]  # two workers, one thread each
        assert len(alone) > 2 and [a[0] for a in alone] == [p[0] for p in pooled]
        for (_, a, ta), (_, b, tb) in zip(alone, pooled):
            assert torch.equal(ta, tb) and torch.allclose(a, b, atol=1e-5)
        next(score_logits(model, tokens, 1, "cpu", 256))  # abandoned after one batch
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_summed_surprisal_equals_loss_times_tokens(arch):
    torch.manual_seed(0)
    model = build_model(arch, {**TINY[arch], "vocab_size": 50}).eval()
    tokens = np.random.default_rng(0).integers(0, 50, 30)
    bits = token_bits(model, tokens, 1, "cpu")
    logits, _ = model(torch.from_numpy(tokens[None, :-1]))
    loss = F.cross_entropy(logits[0], torch.from_numpy(tokens[1:]))
    assert bits.sum() == pytest.approx(loss.item() * 29 / math.log(2), rel=1e-5)


def test_eval_of_held_out_matches_a_brute_force_scorer(trained_runs, corpus_file):
    """The held-out split scored by eval's blocks and threads equals one plain forward pass over the same bytes,
    built here by hand: the last 10% of the file, after the 2,048 bytes before it."""
    from seqlab.run import read_metrics

    run = load(trained_runs["lstm"])
    corpus = corpus_file.read_bytes()
    split = len(corpus) - math.ceil(0.1 * len(corpus))
    network = brute_force_bits(run.model, list(corpus[split - 2048 :]), 2048).sum() / (len(corpus) - split)
    result = evaluate(run)
    assert result["bytes"] == len(corpus) - split
    assert result["bpb_network"] == pytest.approx(network, rel=1e-5)
    assert "carried state" in result["context"]
    final = [r for r in read_metrics(trained_runs["lstm"]) if r["event"] == "final"][-1]
    assert result["bpb"] == pytest.approx(final["val_bpb"], rel=1e-6)  # what training reported is eval's figure
    assert final["val_bpb_network"] == pytest.approx(network, rel=1e-5)
    run.__dict__["count_model"] = None  # without the count model the headline figure is the network's
    assert evaluate(run)["bpb"] == pytest.approx(network, rel=1e-5)


def test_eval_files_json(trained_runs, tmp_path, capsys):
    from seqlab.__main__ import main

    f = tmp_path / "x.txt"
    f.write_text("anna sees the cat.\n" * 5)
    assert main(["eval", str(trained_runs["transformer"]), str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bytes"] == 95 and "sliding window" in out["context"]
    assert_near_the_grammar(out["bpb_network"], grammar_bits_per_byte(f.read_bytes()))  # it knows the grammar
    assert out["perplexity"] == pytest.approx(2 ** out["bits_per_token"])


def test_eval_table(trained_runs, capsys):
    from seqlab.__main__ import main

    assert main(["eval", str(trained_runs["lstm"])]) == 0
    out = capsys.readouterr().out
    assert "bits/byte" in out and "context: carried state" in out
