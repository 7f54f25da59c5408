import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from seqlab.run import load, read_metrics
from seqlab.train import train
from seqlab.train.defaults import LADDERS, choose
from seqlab.train.loop import lr_at

from conftest import train_interrupted_at, structured_text, tiny_config


def quiet(*args):
    pass


def unigram_bits_per_byte(text: bytes) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_tiny_model_learns_structure(trained_runs, corpus_file, arch):
    final = [r for r in read_metrics(trained_runs[arch]) if r["event"] == "final"][-1]
    unigram = unigram_bits_per_byte(corpus_file.read_bytes())
    assert final["val_bpb"] < 0.6 * unigram, (final["val_bpb"], unigram)


def bos_line_start_mass(run_dir, text: bytes) -> float:
    """Probability the model gives, after BOS from a fresh state, to the bytes that start the text's lines."""
    import torch

    run = load(run_dir)
    model = run.model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([[run.tokenizer.bos_id]]), model.init_state(1, "cpu"))
    line_starts = sorted({text[0]} | {text[i + 1] for i in range(len(text) - 1) if text[i] == ord("\n")})
    return logits[0, -1].softmax(-1)[line_starts].sum().item()


@pytest.mark.parametrize("arch", ["transformer", "lstm", "qrnn", "conv", "stack"])
def test_a_text_begun_at_bos_starts_like_the_corpus_lines(trained_runs, corpus_file, arch):
    """Generation starts at BOS from a fresh state, a state the corpus's one document barely trains:
    the windows that start documents (here its lines) teach it, so a sample starts as a line does."""
    assert bos_line_start_mass(trained_runs[arch], corpus_file.read_bytes()) > 0.8


def test_without_document_start_windows_bos_is_noise(corpus_file, tmp_path, monkeypatch):
    import seqlab.data.batches

    with_them = train(tiny_config(corpus_file, "transformer", steps=60), tmp_path / "with", log=quiet)
    monkeypatch.setattr(seqlab.data.batches, "fresh_rows", lambda batch_size: 0)
    without = train(tiny_config(corpus_file, "transformer", steps=60), tmp_path / "without", log=quiet)
    text = corpus_file.read_bytes()
    assert bos_line_start_mass(with_them, text) > bos_line_start_mass(without, text) + 0.4


def test_document_starts_fall_back_to_blank_lines_then_lines_then_anywhere():
    import numpy as np

    from seqlab.data.batches import DocumentStarts, StreamBatcher
    from seqlab.data.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    as_tokens = lambda text: np.array([tok.bos_id, *text], dtype=np.uint16)
    opening = lambda tokens, starts: [bytes(tokens[p + 1 : p + 4].tolist()) for p in starts.positions]
    paragraphs = as_tokens(b"".join(b"p%02d a line\nanother\n\n" % i for i in range(80)))
    assert opening(paragraphs, DocumentStarts(paragraphs, tok, 9)) == [b"p%02d" % i for i in range(80)]
    lines = as_tokens(b"".join(b"l%02d\n" % i for i in range(80)))  # too few blank lines: every line
    assert opening(lines, DocumentStarts(lines, tok, 9)) == [b"l%02d" % i for i in range(79)]  # that fit
    assert len(DocumentStarts(as_tokens(b"x" * 100), tok, 9)) == 100 - 9 + 2  # no lines: anywhere
    x, _, _, _ = StreamBatcher(paragraphs, 32, 8, 0, tokenizer=tok).next()
    assert len(x) == 34 and (x[-2:, 0] == tok.bos_id).all() and (x[:-2, 0] != tok.bos_id).any()


def test_run_directory_describes_itself(trained_runs):
    run_dir = trained_runs["lstm"]
    for name in ("config.json", "tokenizer.json", "checkpoint.safetensors", "metrics.jsonl", "curve.png",
                 "samples.txt"):
        assert (run_dir / name).exists(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["arch"] == "lstm" and config["model"]["vocab_size"] == 257
    events = [r["event"] for r in read_metrics(run_dir)]
    assert events[0] == "start" and events[-1] == "final" and "eval" in events


def test_config_printed_in_full_at_start(corpus_file, tmp_path):
    lines = []
    train(tiny_config(corpus_file, "lstm", steps=2), tmp_path / "r", log=lines.append)
    printed = next(line for line in lines if line.startswith("config:"))
    assert '"weight_decay"' in printed and '"n_hidden": 48' in printed and '"val_fraction"' in printed


def test_schedule_warms_up_and_anneals():
    from seqlab.config import TrainConfig

    cfg = TrainConfig(lr=1.0, warmup_fraction=0.1, min_lr_ratio=0.1)
    assert lr_at(0.0, cfg) < 0.05
    assert lr_at(0.1, cfg) == pytest.approx(1.0)
    assert lr_at(1.0, cfg) == pytest.approx(0.1)
    assert all(lr_at(a / 10, cfg) >= lr_at(b / 10, cfg) for a, b in zip(range(1, 10), range(2, 11)))


def test_budget_run_stops_on_time(corpus_file, tmp_path):
    cfg = tiny_config(corpus_file, "lstm", steps=0)
    cfg.train.budget_seconds = 3.0
    t0 = time.monotonic()
    train(cfg, tmp_path / "r", log=quiet)
    state = load(tmp_path / "r")
    assert time.monotonic() - t0 < 60 and state.model is not None
    final = [r for r in read_metrics(tmp_path / "r") if r["event"] == "eval"][-1]
    assert 3.0 <= final["elapsed"] < 6.0


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_resumed_run_matches_uninterrupted(corpus_file, tmp_path, arch, monkeypatch):
    whole = train(tiny_config(corpus_file, arch, steps=40), tmp_path / "whole", log=quiet)

    train_interrupted_at(20, tiny_config(corpus_file, arch, steps=40), tmp_path / "split", monkeypatch)
    train(tiny_config(corpus_file, arch, steps=40), tmp_path / "split", resume=True, log=quiet)

    def last_eval(run):
        return [r for r in read_metrics(run) if r["event"] == "eval"][-1]

    a, b = last_eval(whole), last_eval(tmp_path / "split")
    assert a["step"] == b["step"] == 40
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert b["val_bpb"] == pytest.approx(a["val_bpb"], rel=1e-5)


def test_sigkill_mid_training_leaves_a_resumable_checkpoint(corpus_file, tmp_path):
    corpus = tmp_path / "big.txt"
    corpus.write_text(structured_text(3000))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "seqlab", "train", str(corpus), "--arch", "lstm", "--max-steps", "100000",
           "--out", str(run), "--batch-size", "4", "--seq-len", "32", "--threads", "1",
           "--set", "model.n_hidden=32", "--set", "train.checkpoint_every_seconds=0.5"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run / "checkpoint.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # let it write a few more checkpoints, then kill it mid-stride
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert load(run).model is not None  # the checkpoint on disk is whole
    resume = [sys.executable, "-m", "seqlab", "train", "--resume", str(run), "--max-steps", str(_step(run) + 5)]
    done = subprocess.run(resume, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [r for r in read_metrics(run) if r["event"] == "final"]


def _step(run) -> int:
    from seqlab.checkpoint import checkpoint_metadata

    return json.loads(checkpoint_metadata(run)["trainer"])["step"]


def test_token_cache_is_reused_and_invalidated(corpus_file, tmp_path, monkeypatch):
    from seqlab.data import corpus as corpus_mod
    from seqlab.data.tokenizer import ByteTokenizer

    calls = []
    real = corpus_mod._encode_to
    monkeypatch.setattr(corpus_mod, "_encode_to", lambda *a: calls.append(1) or real(*a))
    path = tmp_path / "c.txt"
    path.write_text("hello world\n" * 50)
    docs = corpus_mod.read_documents([str(path)])
    root = tmp_path / "cache"
    first = corpus_mod.encode_corpus(docs, [], ByteTokenizer(), 0.1, root)
    again = corpus_mod.encode_corpus(docs, [], ByteTokenizer(), 0.1, root)
    assert len(calls) == 1 and first.val_bytes == again.val_bytes == 60
    path.write_text("hello there\n" * 50)
    corpus_mod.encode_corpus(corpus_mod.read_documents([str(path)]), [], ByteTokenizer(), 0.1, root)
    assert len(calls) == 2


def test_a_backward_tokenizer_holds_out_the_same_bytes_read_right_to_left(tmp_path):
    """The split is taken before the reversal: a backward run is judged on a forward run's held-out bytes.
    Its token arrays are cached apart from the forward ones of the same corpus."""
    from seqlab.data import corpus as corpus_mod
    from seqlab.data.tokenizer import Backward, ByteTokenizer

    path = tmp_path / "c.txt"
    path.write_bytes(b"one two three\n" * 20 + b"the end.\n")
    docs = corpus_mod.read_documents([str(path)])
    forward = corpus_mod.encode_corpus(docs, [], ByteTokenizer(), 0.1, tmp_path / "cache")
    backward = corpus_mod.encode_corpus(docs, [], Backward(ByteTokenizer()), 0.1, tmp_path / "cache")
    assert backward.val_bytes == forward.val_bytes
    assert bytes(backward.held_out[0].scored.tolist())[::-1] == bytes(forward.held_out[0].scored.tolist())
    assert bytes(backward.train[1:].tolist())[::-1] == bytes(forward.train[1:].tolist())
    assert Backward(ByteTokenizer()).decode(Backward(ByteTokenizer()).encode(b"abc")) == b"abc"


def test_a_backward_run_trains_scores_and_refuses_to_generate(corpus_file, tmp_path, capsys):
    from seqlab.__main__ import main
    from seqlab.evaluate import evaluate
    from seqlab.info import info

    cfg = tiny_config(corpus_file, "transformer", steps=200)
    cfg.data.backward = True
    run = load(train(cfg, tmp_path / "back", log=quiet))
    assert run.config.data.backward and run.tokenizer.encode(b"ab").tolist() == [ord("b"), ord("a")]
    assert info(run.path)["reads"] == "right to left"
    final = [r for r in read_metrics(run.path) if r["event"] == "final"][-1]
    assert final["val_bpb"] < 2.5  # it learned the grammar read right to left (uniform bytes: 8)
    lines = corpus_file.read_bytes().splitlines(keepends=True)[:40]
    forward_file, reversed_file = tmp_path / "f.txt", tmp_path / "r.txt"
    forward_file.write_bytes(b"".join(lines))
    reversed_file.write_bytes(b"".join(lines)[::-1])
    assert evaluate(run, [str(forward_file)])["bpb"] < evaluate(run, [str(reversed_file)])["bpb"] - 0.5
    capsys.readouterr()
    assert main(["generate", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backward" in err
    packed, unpacked = tmp_path / "f.sqz", tmp_path / "f.out"
    assert main(["compress", str(run.path), str(forward_file), "-o", str(packed)]) == 0
    assert main(["decompress", str(run.path), str(packed), "-o", str(unpacked)]) == 0
    assert unpacked.read_bytes() == forward_file.read_bytes()


def test_bpe_run_trains_and_reports_bytes(corpus_file, tmp_path):
    cfg = tiny_config(corpus_file, "transformer", steps=30)
    cfg.data.tokenizer = "bpe:300"
    run_dir = train(cfg, tmp_path / "bpe", log=quiet)
    run = load(run_dir)
    assert 257 < run.tokenizer.vocab_size <= 300  # a tiny corpus may offer fewer merges
    final = [r for r in read_metrics(run_dir) if r["event"] == "final"][-1]
    start = read_metrics(run_dir)[0]
    assert final["val_bpb"] < 8 and start["val_bytes"] > 0


def developers_rates(scale: float = 1.0) -> dict[int, float]:
    """Tokens/s by width as measured on the developers' 2 cores: 24k at 4x128, inversely to the parameters."""
    ladder = LADDERS["cpu"]
    return {w: scale * 24_000 * ladder.params(128) / ladder.params(w) for w in ladder.widths}


def test_auto_choice_is_nanogpts_recipe_sized_by_measured_rates_and_corpus():
    ten_minutes = choose(1_000_000, 600, developers_rates())
    assert ten_minutes.arch == "transformer"
    assert ten_minutes.model == {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0,
                                 "bias": False}
    assert ten_minutes.train["batch_size"] == 12 and ten_minutes.train["lr"] == 3e-3
    assert "\n" not in ten_minutes.reason and "10 minutes" in ten_minutes.reason
    widths = [choose(1_000_000, minutes * 60, developers_rates()).model["n_embd"] for minutes in (1, 10, 60, 600)]
    assert widths == sorted(widths) and widths[0] < 128 < widths[-1]
    rates = [choose(1_000_000, minutes * 60, developers_rates()).train["lr"] for minutes in (1, 10, 60, 600)]
    assert rates == sorted(rates, reverse=True) and rates[0] == 3e-3 > rates[-1]  # wider models take less
    assert choose(1_000_000, 600, developers_rates(0.5)).model["n_embd"] < 128  # a slower machine: narrower
    measured_to_128 = {w: r for w, r in developers_rates().items() if w <= 128}
    assert choose(1_000_000, 36_000, measured_to_128).model["n_embd"] == 128  # unmeasured widths do not fit
    small = choose(50_000, 3600, developers_rates())
    assert small.model["n_embd"] == 64 and "the corpus size" in small.reason and small.model["dropout"] > 0
    assert choose(1_000_000, 0, {}, max_steps=100).model["n_embd"] == 64  # 77k tokens: the smallest
    assert choose(1_000_000, 0, {}, max_steps=20_000).model["n_embd"] == 128  # 15M tokens
