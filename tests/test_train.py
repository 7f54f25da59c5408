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
from seqlab.train import lr_at, train

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


def test_bpe_run_trains_and_reports_bytes(corpus_file, tmp_path):
    cfg = tiny_config(corpus_file, "transformer", steps=30)
    cfg.data.tokenizer = "bpe:300"
    run_dir = train(cfg, tmp_path / "bpe", log=quiet)
    run = load(run_dir)
    assert 257 < run.tokenizer.vocab_size <= 300  # a tiny corpus may offer fewer merges
    final = [r for r in read_metrics(run_dir) if r["event"] == "final"][-1]
    start = read_metrics(run_dir)[0]
    assert final["val_bpb"] < 8 and start["val_bytes"] > 0
