"""Training across processes (DDP, gloo on CPU): 2 ranks take the steps one process takes with the same batch."""

import os
import subprocess
import sys
import time

import pytest
import torch

from seqlab.run import load, read_metrics
from seqlab.train import train

from conftest import train_interrupted_at, tiny_config

STEPS = 40
# The same model up to summation order holds in fp32; bf16 autocast (train.precision=auto on a CPU that
# computes bf16 natively) rounds a half batch's activations differently from a whole one's.
FP32 = {"precision": "fp32"}


def quiet(*args):
    pass


def evals(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["event"] == "eval"]


def assert_same_training(one, two, rel=1e-4, atol=1e-5):
    """Same global batch, same steps: the same model up to float summation order."""
    a, b = evals(one), evals(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [20, 40]
    assert b[-1]["val_bpb"] == pytest.approx(a[-1]["val_bpb"], rel=rel)
    assert b[-1]["tokens"] == a[-1]["tokens"]  # tokens count every rank's rows
    wa, wb = load(one).model.state_dict(), load(two).model.state_dict()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=atol), (name, (wa[name] - wb[name]).abs().max())


@pytest.fixture(scope="module")
def single(tmp_path_factory, corpus_file) -> dict:
    """The one-process reference runs."""
    return {arch: train(tiny_config(corpus_file, arch, steps=STEPS, **FP32), tmp_path_factory.mktemp(f"one-{arch}"),
                        log=quiet)
            for arch in ("transformer", "lstm")}


def test_nproc_2_matches_one_process_and_learns(single, corpus_file, tmp_path):
    from seqlab.train.distributed import train_processes

    run_dir = tmp_path / "two"
    assert train_processes(train, tiny_config(corpus_file, "transformer", steps=STEPS, **FP32), run_dir, nproc=2)
    records = read_metrics(run_dir)
    assert [r["event"] for r in records].count("start") == 1 and records[-1]["event"] == "final"  # rank 0 only
    first, last = evals(run_dir)[0], evals(run_dir)[-1]
    assert last["train_loss"] < first["train_loss"] and last["val_bpb"] < 6.0
    assert_same_training(single["transformer"], run_dir)


def test_torchrun_resumes_a_one_process_lstm_run_and_matches_it(single, corpus_file, tmp_path, monkeypatch):
    """The carried LSTM state is saved in global stream order, so any number of ranks can take it up."""
    train_interrupted_at(20, tiny_config(corpus_file, "lstm", steps=STEPS, **FP32), tmp_path / "split", monkeypatch)

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "seqlab", "train", "--resume", str(tmp_path / "split")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("held-out:") == 1 and done.stdout.count("resuming at step 20") == 1  # rank 0 logs
    assert [r["event"] for r in read_metrics(tmp_path / "split")].count("final") == 1
    assert_same_training(single["lstm"], tmp_path / "split")


def test_budget_clock_is_rank_zeros_so_ranks_stop_together(corpus_file, tmp_path):
    from seqlab.train.distributed import train_processes

    cfg = tiny_config(corpus_file, "transformer", steps=0)
    cfg.train.budget_seconds, cfg.train.eval_every_steps = 2.0, 0
    t0 = time.monotonic()
    assert train_processes(train, cfg, tmp_path / "budget", nproc=2)  # a disagreement would hang in all-reduce
    assert time.monotonic() - t0 < 120
    final = [r for r in read_metrics(tmp_path / "budget") if r["event"] == "eval"][-1]
    assert 2.0 <= final["elapsed"] < 5.0


def test_batch_that_does_not_split_is_a_one_line_error(corpus_file, tmp_path):
    from seqlab.train.distributed import train_processes
    from seqlab.errors import SeqlabError

    cfg = tiny_config(corpus_file, "transformer", steps=2)
    cfg.train.batch_size = 7
    with pytest.raises(SeqlabError, match="multiple of 2"):
        train_processes(train, cfg, tmp_path / "odd", nproc=2)
