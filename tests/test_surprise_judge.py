"""surprise's judge reads every candidate edit of a span's anchors in batches and in stages (fix.py
_edit_bits_all): each tail must get the bits it gets judged alone, and the same edit must win."""

import numpy as np
import pytest
import torch

from seqlab.run import load
from seqlab.scoring import mixing_session
from seqlab.surprise.fix import MIN_GAIN, PROBES, Judge, _edit_bits, _edit_bits_all, _edits
from seqlab.train import train

from conftest import tiny_config

TEXT = "".join(f"call_{i % 7}(x{i % 5}, {i * 37 % 1000});\n" for i in range(300))


@pytest.fixture(scope="module", params=["transformer", "lstm"])
def judge(request, tmp_path_factory) -> Judge:
    """A judge as surprise's (the network mixed with the count model) of a run trained a few steps."""
    path = tmp_path_factory.mktemp(request.param)
    (path / "calls.txt").write_text(TEXT)
    run = load(train(tiny_config(path / "calls.txt", request.param, steps=20), path / "run", log=lambda *a: None))
    return Judge(run, mixing_session(run))


def _group(judge: Judge, data: bytes, anchor: int, prefix: int):
    """(state, last logits, history, tails) for the edits at `anchor`, the network having read `prefix`
    tokens before it; and each edit's channel cost, made up: the text's 0, then -100 (never cut short), 1000
    (always), 3, ... in turn."""
    run, tok = judge.run, judge.run.tokenizer
    ids = tok.encode(data[:anchor])[-prefix:]
    logits, state = run.model(torch.tensor([ids]), run.model.init_state(1, torch.device("cpu")))
    edits = _edits(data, anchor, b"x1, 2", [b"(", b";", b"\n"])
    tails = [np.asarray(tok.encode(ins + data[anchor + m : anchor + 2 + 16])) for m, ins, _ in edits]
    costs = np.array([0.0] + [(-100.0, 1000.0, 3.0)[i % 3] for i in range(len(tails) - 1)])
    return (state, logits[0, -1], judge.history(data, anchor), tails), costs


def _gains(bits: np.ndarray, costs: np.ndarray) -> np.ndarray:
    return bits[0] - bits[1:] - costs[1:]


@torch.no_grad()
def test_batched_staged_judge_equals_judging_each_edit_alone(judge):
    """Two anchors' edits judged together, first tokens first and the rest of those that could still win:
    every tail read to its end has the bits it has judged alone, every one cut short could not have been
    suggested, and the best edit is the same. Rows mixed up between tails, anchors or stages would differ."""
    data = TEXT.encode()[:400]
    data = data[:200] + data[201:]  # a byte lost
    groups, costs = zip(*(_group(judge, data, anchor, 8) for anchor in (197, 199)))
    batched = _edit_bits_all(judge, list(groups), list(costs))
    cut = 0
    for (state, last, history, tails), cost, bits in zip(groups, costs, batched):
        assert max(len(t) for t in tails) > PROBES[-1] and len({len(t) for t in tails}) > 1  # stages, ragged rows
        alone = np.array([_edit_bits(judge, state, last, history, [t])[0] for t in tails])
        read = np.isfinite(bits)
        np.testing.assert_allclose(bits[read], alone[read], rtol=1e-4, atol=1e-3)
        assert (_gains(alone, cost)[~read[1:]] < MIN_GAIN).all()
        cut += int((~read).sum())
        gains = _gains(bits, cost)
        assert np.argmax(gains) == np.argmax(_gains(alone, cost))
    assert cut  # the 1000-bit edits at least were cut short


@torch.no_grad()
def test_staged_judge_equals_one_read_past_a_transformer_window(judge):
    """A prefix so long that one read of the tails overflows a transformer's context (it re-reads its last
    half window first): the stages read the same window, so each tail's bits are one read's."""
    data = TEXT.encode()
    context = judge.run.model.max_context or 64
    group, costs = _group(judge, data, 300, context - 4)
    staged = _edit_bits_all(judge, [group], [costs])[0]
    whole = _edit_bits_all(judge, [group])[0]
    read = np.isfinite(staged)
    assert read[0] and read.sum() > 1
    np.testing.assert_allclose(staged[read], whole[read], rtol=1e-4, atol=1e-3)
    assert (_gains(whole, costs)[~read[1:]] < MIN_GAIN).all()
