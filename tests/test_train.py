import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seqlab.run import load, read_config, read_metrics
from seqlab.train import train
from seqlab.train.defaults import LADDERS, choose
from seqlab.train.loop import lr_at

from conftest import (assert_near_the_grammar, brute_force_bits, grammar_bits_per_byte, held_out_grammar_bpb,
                      structured_text, tiny_config, train_interrupted_at)


def quiet(*args):
    pass


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_tiny_model_learns_structure(trained_runs, corpus_file, arch):
    """The network's own held-out figure (the count model alone cannot move it) is the grammar's entropy."""
    final = [r for r in read_metrics(trained_runs[arch]) if r["event"] == "final"][-1]
    assert_near_the_grammar(final["val_bpb_network"], held_out_grammar_bpb(corpus_file.read_bytes()))


def bos_line_start_mass(run_dir, text: bytes) -> float:
    """Probability the model gives, after BOS from a fresh state, to the bytes that start the text's lines."""
    import torch

    run = load(run_dir)
    model = run.model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([[run.tokenizer.bos_id]]), model.init_state(1, "cpu"))
    line_starts = sorted({text[0]} | {text[i + 1] for i in range(len(text) - 1) if text[i] == ord("\n")})
    return logits[0, -1].softmax(-1)[line_starts].sum().item()


@pytest.mark.parametrize("arch", ["transformer", "lstm", "qrnn", "conv", pytest.param("stack", marks=pytest.mark.slow)])
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


def test_budget_run_stops_on_time_and_ends_annealed(corpus_file, tmp_path):
    cfg = tiny_config(corpus_file, "lstm", steps=0)
    cfg.train.budget_seconds = 3.0
    t0 = time.monotonic()
    train(cfg, tmp_path / "r", log=quiet)
    state = load(tmp_path / "r")
    assert time.monotonic() - t0 < 60 and state.model is not None
    evals = [r for r in read_metrics(tmp_path / "r") if r["event"] == "eval"]
    assert 3.0 <= evals[-1]["elapsed"] < 6.0
    # the schedule spans the wall-clock budget: warmed up early, decayed to lr * min_lr_ratio as time ran out
    assert max(r["lr"] for r in evals[:3]) > 0.9 * cfg.train.lr
    end = cfg.train.lr * cfg.train.min_lr_ratio  # the last step starts a step (and an eval) before the end
    assert end <= evals[-1]["lr"] < 1.5 * end


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


KILL_STEPS = 600  # the killed run's length: killed near step 100, it resumes and trains again in seconds


def test_sigkill_mid_training_resumes_where_its_checkpoint_left_off(tmp_path):
    """Killed at a moment nobody chose, the run resumes from its last checkpoint's step, takes only the steps
    left, and ends with the very weights of a run that was never interrupted."""
    from seqlab.train.loop import TrainLoop

    corpus = tmp_path / "big.txt"
    corpus.write_text(structured_text(3000))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "seqlab", "train", str(corpus), "--arch", "lstm", "--max-steps", str(KILL_STEPS),
           "--out", str(run), "--batch-size", "4", "--seq-len", "32", "--threads", "1",
           "--set", "model.n_layer=1", "--set", "model.n_hidden=32", "--set", "train.checkpoint_every_seconds=0.2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run / "checkpoint.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)  # then kill it mid-stride, at no step in particular
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert load(run).model is not None  # the checkpoint on disk is whole
    saved = _step(run)
    assert 0 < saved < KILL_STEPS, saved

    steps, logged = [], []
    real_step = TrainLoop.train_step

    def counted(self):
        steps.append(self.pos["step"])
        return real_step(self)

    TrainLoop.train_step = counted
    try:
        train(read_config(run), run, resume=True, log=logged.append)
    finally:
        TrainLoop.train_step = real_step
    assert f"resuming at step {saved} " in "\n".join(map(str, logged))
    assert steps == list(range(saved, KILL_STEPS))  # only the steps left, from the checkpoint's
    whole = train(read_config(run), tmp_path / "whole", log=quiet)
    resumed, uninterrupted = load(run).model.state_dict(), load(whole).model.state_dict()
    for name, weights in uninterrupted.items():
        assert torch.equal(resumed[name], weights), name


def test_a_kill_between_the_temp_write_and_the_rename_leaves_the_previous_checkpoint(corpus_file, tmp_path):
    """checkpoint.before_rename kills the process as its second checkpoint is written in full but not yet
    renamed: the first is the one on disk, it loads, and the run resumes from it."""
    run = tmp_path / "run"
    kill_on_the_second_write = """
import os, signal, sys
from seqlab import checkpoint
from seqlab.__main__ import main
written = []
def kill(tmp, path):
    if path.name == checkpoint.CHECKPOINT_FILE:
        written.append(tmp)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
checkpoint.before_rename = kill
sys.exit(main(sys.argv[1:]))
"""
    cmd = [sys.executable, "-c", kill_on_the_second_write, "train", str(corpus_file), "--arch", "lstm",
           "--max-steps", "40", "--out", str(run), "--batch-size", "4", "--seq-len", "32", "--threads", "1",
           "--set", "model.n_layer=1", "--set", "model.n_hidden=32", "--set", "train.checkpoint_every_seconds=0"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    (unrenamed,) = run.glob(".checkpoint.safetensors.tmp*")
    from safetensors import safe_open

    with safe_open(str(unrenamed), framework="pt") as f:  # the killed write was whole, one step on
        assert json.loads(f.metadata()["trainer"])["step"] == 2
    assert _step(run) == 1 and load(run).model is not None
    train(read_config(run), run, resume=True, log=quiet)
    assert _step(run) == 40 and [r for r in read_metrics(run) if r["event"] == "final"]


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


@pytest.fixture(scope="module")
def backward_run(tmp_path_factory, corpus_file):
    cfg = tiny_config(corpus_file, "transformer", steps=200)
    cfg.data.backward = True
    return load(train(cfg, tmp_path_factory.mktemp("back"), log=quiet))


def test_a_backward_run_trains_and_scores_right_to_left(backward_run, corpus_file, tmp_path, capsys):
    from seqlab.__main__ import main
    from seqlab.evaluate import evaluate
    from seqlab.info import info

    run = backward_run
    assert run.config.data.backward and run.tokenizer.encode(b"ab").tolist() == [ord("b"), ord("a")]
    assert info(run.path)["reads"] == "right to left"
    final = [r for r in read_metrics(run.path) if r["event"] == "final"][-1]
    # it learned the grammar read right to left: the same information, the forward split's held-out bytes
    assert_near_the_grammar(final["val_bpb_network"], held_out_grammar_bpb(corpus_file.read_bytes()), high=1.3)
    lines = corpus_file.read_bytes().splitlines(keepends=True)[:40]
    forward_file, reversed_file = tmp_path / "f.txt", tmp_path / "r.txt"
    forward_file.write_bytes(b"".join(lines))
    reversed_file.write_bytes(b"".join(lines)[::-1])
    forward = evaluate(run, [str(forward_file)])["bpb_network"]
    assert_near_the_grammar(forward, grammar_bits_per_byte(forward_file.read_bytes()), high=1.4)
    assert evaluate(run, [str(reversed_file)])["bpb_network"] > 3 * forward  # read in the order it never saw
    packed, unpacked = tmp_path / "f.sqz", tmp_path / "f.out"
    assert main(["compress", str(run.path), str(forward_file), "-o", str(packed)]) == 0
    assert main(["decompress", str(run.path), str(packed), "-o", str(unpacked)]) == 0
    assert unpacked.read_bytes() == forward_file.read_bytes()


def test_a_backward_run_is_refused_where_text_must_read_left_to_right(backward_run, tmp_path, capsys, monkeypatch):
    import uvicorn

    from seqlab.__main__ import main

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # a serve that failed to refuse returns, not serves
    text = tmp_path / "t.txt"
    text.write_text("anna sees it.\n" * 20)
    run = str(backward_run.path)
    for argv in (["generate", run], ["serve", run, "--port", "0"], ["neurons", run, str(text)],
                 ["export", run, str(tmp_path / "m.onnx")]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"seqlab {argv[0]}: error:" in err and "--backward" in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_bpe_run_trains_and_reports_bytes(corpus_file, tmp_path):
    cfg = tiny_config(corpus_file, "transformer", steps=30)
    cfg.data.tokenizer = "bpe:300"
    run_dir = train(cfg, tmp_path / "bpe", log=quiet)
    run = load(run_dir)
    assert 257 < run.tokenizer.vocab_size <= 300  # a tiny corpus may offer fewer merges
    final = [r for r in read_metrics(run_dir) if r["event"] == "final"][-1]
    corpus = corpus_file.read_bytes()
    held_out = corpus[len(corpus) - math.ceil(0.1 * len(corpus)) :]
    n_tokens = len(run.tokenizer.encode(held_out))
    assert read_metrics(run_dir)[0]["val_bytes"] == len(held_out) and n_tokens < len(held_out) / 2
    assert final["bits_per_token"] == pytest.approx(final["val_bpb"] * len(held_out) / n_tokens)  # per byte: bytes
    uniform = math.log2(run.tokenizer.vocab_size) * n_tokens / len(held_out)  # bits per byte of a uniform guess
    assert held_out_grammar_bpb(corpus) < final["val_bpb_network"] < 0.4 * uniform  # 30 steps: learning


@pytest.mark.slow
def test_bare_train_uses_the_bundled_corpus_and_points_runs_latest_at_its_run(tmp_path):
    """`seqlab train` with nothing but a budget, as the README's first command (minus nine minutes 58 s)."""
    from seqlab.data.corpus import default_corpus_path

    days = {time.strftime("%Y%m%d")}
    done = subprocess.run([sys.executable, "-m", "seqlab", "train", "--budget", "2s"], cwd=tmp_path,
                          capture_output=True, text=True)
    days.add(time.strftime("%Y%m%d"))
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.splitlines()
    assert printed[0].startswith("auto: transformer") and "sized for" in printed[0]  # why, in one line
    assert printed[1].startswith("corpus: 1 document(s)")
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    assert run.name[:8] in days and re.fullmatch(r"\d{8}-\d{6}-transformer", run.name), run.name
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == run.name
    assert json.loads((latest / "config.json").read_text())["data"]["paths"] == []  # the bundled corpus
    start = read_metrics(run)[0]
    assert start["files"] == 1
    assert start["train_bytes"] + start["val_bytes"] == Path(default_corpus_path()).stat().st_size
    assert f"run saved in runs/{run.name}" in printed[-1]


def test_config_file_and_set_both_reach_the_run_and_set_wins(corpus_file, tmp_path, capsys):
    from seqlab.__main__ import main
    from seqlab.models import build_model

    config = tmp_path / "small.json"
    config.write_text(json.dumps({"arch": "lstm", "model": {"n_layer": 1, "n_hidden": 24, "dropout": 0.0},
                                  "data": {"val_fraction": 0.2},
                                  "train": {"max_steps": 3, "batch_size": 4, "seq_len": 16, "lr": 0.005,
                                            "eval_tokens": 256, "threads": 1}}))
    out = tmp_path / "run"
    assert main(["train", str(corpus_file), "--config", str(config), "--set", "model.n_hidden=16",
                 "--set", "train.lr=0.002", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["arch"] == "lstm" and saved["model"]["n_layer"] == 1 and saved["model"]["n_hidden"] == 16
    assert saved["train"]["lr"] == 0.002 and saved["train"]["batch_size"] == 4 and saved["data"]["val_fraction"] == 0.2
    final = [r for r in read_metrics(out) if r["event"] == "final"][-1]
    assert final["step"] == 3
    assert load(out).model.num_params() == build_model("lstm", {"n_layer": 1, "n_hidden": 16,
                                                                 "vocab_size": 257}).num_params()
    config.write_text(json.dumps({"train": {"max_step": 3}}))
    capsys.readouterr()
    assert main(["train", str(corpus_file), "--config", str(config), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown config key.train.max_step" in err and not (tmp_path / "r2").exists()


def test_without_the_count_model_every_figure_is_the_networks(corpus_file, tmp_path):
    from seqlab.__main__ import main
    from seqlab.evaluate import evaluate

    out = tmp_path / "run"
    assert main(["train", str(corpus_file), "--arch", "lstm", "--max-steps", "20", "--out", str(out),
                 "--threads", "1", "--batch-size", "8", "--seq-len", "32", "--set", "model.n_hidden=24",
                 "--set", "train.eval_tokens=512", "--set", "counts.enabled=false"]) == 0
    assert not (out / "history.npy").exists()
    run = load(out)
    assert run.count_model is None
    final = [r for r in read_metrics(out) if r["event"] == "final"][-1]
    assert final["val_bpb"] == final["val_bpb_network"]
    result = evaluate(run)
    assert result["bpb"] == result["bpb_network"] and "count" not in result["context"]
    corpus = corpus_file.read_bytes()
    split = len(corpus) - math.ceil(0.1 * len(corpus))
    tokens = list(corpus[split - 2048 :])  # the 2,048 bytes before the held-out ones as context, then those
    expected = brute_force_bits(run.model, tokens, 2048).sum() / (len(corpus) - split)
    assert result["bpb"] == pytest.approx(expected, rel=1e-5)


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


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    from seqlab.train.cli import default_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20261205-101010")
    first = default_run_dir("lstm")
    first.mkdir(parents=True)
    second = default_run_dir("lstm")
    assert (first.name, second.name) == ("20261205-101010-lstm", "20261205-101010-lstm-2")
