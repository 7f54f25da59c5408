"""Shared fixtures: a small structured corpus and tiny trained runs (seconds on a CPU)."""

import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab.config import RunConfig, TrainConfig, DataConfig

# Tiny models are many tiny operations: one thread is faster, and steady on a busy machine.
torch.set_num_threads(1)

TINY = {
    "transformer": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.0},
    "lstm": {"n_layer": 1, "n_hidden": 48, "dropout": 0.0},
    "qrnn": {"n_layer": 2, "n_hidden": 48, "dropout": 0.0},
    "conv": {"n_layer": 4, "n_channels": 32, "kernel_size": 2, "cycle": 0, "dropout": 0.0},
    "stack": {"n_hidden": 48, "memory_width": 8, "max_depth": 16, "dropout": 0.0},
}


def structured_text(n_lines: int = 400, seed: int = 0) -> str:
    """Lines from a tiny grammar: far below the entropy of its own byte frequencies."""
    rng = random.Random(seed)
    names, verbs, things = ["anna", "bob", "carl"], ["sees", "takes", "likes"], ["the cat", "a red box", "it"]
    return "".join(f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(things)}.\n" for _ in range(n_lines))


def grammar_bits_per_byte(text: bytes, start: int = 0) -> float:
    """What text[start:] costs a model that knows structured_text's grammar, in bits per byte: each line picks its
    name, verb and object, 3 equally likely each, and the first byte of each tells which (every other byte follows),
    so log2(3) bits at those bytes and none elsewhere. A network far above it has not learned the grammar; one
    below it by more than luck allows saw what it was scoring."""
    bits, pos = 0.0, 0
    for line in text.splitlines(keepends=True):
        verb = line.index(b" ") + 1
        obj = line.index(b" ", verb) + 1
        bits += math.log2(3) * sum(pos + at >= start for at in (0, verb, obj))
        pos += len(line)
    return bits / (len(text) - start)


def held_out_grammar_bpb(corpus: bytes, val_fraction: float = 0.1) -> float:
    """grammar_bits_per_byte of the held-out split of a structured_text corpus: its last val_fraction, rounded up."""
    return grammar_bits_per_byte(corpus, len(corpus) - math.ceil(len(corpus) * val_fraction))


def assert_near_the_grammar(bpb: float, ideal: float, high: float = 1.25) -> None:
    assert 0.9 * ideal < bpb < high * ideal, f"{bpb:.4f} bits per byte; the grammar's own: {ideal:.4f}"


@torch.no_grad()
def brute_force_bits(model, tokens, n_context: int) -> np.ndarray:
    """Surprisal in bits of tokens[n_context:] computed the plain way, the reference for scoring.py's batches,
    blocks, threads and fast paths: a recurrent model reads the whole text in one forward pass from a fresh
    state; a model of context L reads windows of L tokens with stride L/2 (each scored token sees at least L/2
    before it, as scoring.py documents), one window per forward pass."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    L = model.max_context
    spans = [(0, n_context, len(tokens))] if not L else [
        (max(0, min(first + L // 2, len(tokens)) - 1 - L), first, min(first + L // 2, len(tokens)))
        for first in range(n_context, len(tokens), L // 2)]
    bits = []
    for start, first, stop in spans:  # targets tokens[first:stop], inputs tokens[start:stop - 1]
        logits, _ = model(tokens[None, start : stop - 1], model.init_state(1, "cpu") if not L else None)
        logp = torch.log_softmax(logits[0, first - start - 1 :].float(), dim=-1)
        bits.append(-logp.gather(1, tokens[first:stop, None])[:, 0] / math.log(2))
    return torch.cat(bits).numpy()


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml's addopts): a worker a core this process may use, at most 4: each worker trains
    its own session runs (trained_runs), so more only costs memory and start-up."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    path.write_text(structured_text())
    return path


def lines_said_twice(seed: int = 3, n_lines: int = 200, n_bytes: int = 8400) -> bytes:
    """Random lines, each said twice in a row: the network cannot learn them, the counts remember them."""
    rng = random.Random(seed)
    lines = (bytes(rng.randrange(97, 123) for _ in range(rng.randrange(20, 100))) + b"\n" for _ in range(n_lines))
    return b"".join(2 * line for line in lines)[:n_bytes]


def coded_and_eval_bits(run, data: bytes, blob: bytes, tmp_path) -> tuple[int, float, int]:
    """(bits of a compressed file, eval's bits for the same bytes with the same run, bits of the file's header)."""
    from seqlab.compress import Header
    from seqlab.evaluate import evaluate

    path = tmp_path / "eval-input.txt"
    path.write_bytes(data)
    return 8 * len(blob), evaluate(run, [str(path)])["bpb"] * len(data), 8 * Header.unpack(blob, "x")[1]


def tiny_config(corpus: Path, arch: str = "lstm", steps: int = 60, **train) -> RunConfig:
    cfg = RunConfig(arch=arch, model=dict(TINY[arch]), data=DataConfig(paths=[str(corpus)]))
    cfg.train = TrainConfig(max_steps=steps, batch_size=8, seq_len=32, lr=1e-2, eval_every_steps=20,
                            eval_tokens=2048, threads=1, device="cpu", **train)
    return cfg


def bitcm_copy(run_dir: Path, out: Path, on: bool = True) -> Path:
    """A copy of a trained byte-level run with counts.bitcm set in its config.json and no kept state of the bitwise
    model (as a user's run that turns it on after training has none yet)."""
    import json
    import shutil

    shutil.copytree(run_dir, out)
    shutil.rmtree(out / "counts" / "bitcm", ignore_errors=True)
    config = json.loads((out / "config.json").read_text())
    config["counts"]["bitcm"] = on
    (out / "config.json").write_text(json.dumps(config))
    return out


class TrainedRuns(dict):
    """Tiny trained runs, one per architecture, trained the first time a test asks for one."""

    def __init__(self, factory, corpus: Path):
        super().__init__()
        self.factory, self.corpus = factory, corpus

    def __missing__(self, arch: str) -> Path:
        from seqlab.train import train

        out = self.factory.mktemp(f"run-{arch}")
        self[arch] = train(tiny_config(self.corpus, arch, steps=400), out, log=lambda *a: None)
        return self[arch]


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, corpus_file) -> TrainedRuns:
    """Shared by the tests that only read runs: trained_runs["lstm"] is a run directory."""
    os.environ.setdefault("SEQLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    return TrainedRuns(tmp_path_factory, corpus_file)


def train_interrupted_at(step: int, cfg: RunConfig, run_dir: Path, monkeypatch) -> None:
    """Train until `step`, then stop as Ctrl-C or SIGTERM would (the checkpoint is saved)."""
    from seqlab.errors import SeqlabError
    from seqlab.train.loop import TrainLoop, train

    real_step = TrainLoop.train_step

    def interrupted(self):
        if self.pos["step"] == step:
            raise KeyboardInterrupt
        return real_step(self)

    with monkeypatch.context() as patch:
        patch.setattr(TrainLoop, "train_step", interrupted)
        with pytest.raises(SeqlabError, match=f"interrupted at step {step}"):
            train(cfg, run_dir, log=lambda *a: None)


# ---- CI: a skipped test is a failed run ----------------------------------------------------------------------
# A test skips only where something it needs is missing from a developer's machine; CI (.ci/run sets CI=1)
# installs all of it, so there a skip means a test that did not run, and the run fails.
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nCI=1 and {len(_skipped)} test(s) skipped, which CI counts as failed: {', '.join(_skipped)}")
