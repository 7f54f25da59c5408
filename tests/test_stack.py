"""Neural stack: the update follows the paper's equations, and the model learns through it."""

import pytest
import torch

from seqlab.models import build_model
from seqlab.models.stack import stack_update

from conftest import TINY


def run_ops(ops, values, max_depth=10):
    """Apply (d, u) pairs with the given values to an empty stack; return the (V, s, r) after each step."""
    V, s = torch.zeros(1, 0, 2), torch.zeros(1, 0)
    out = []
    for (d, u), v in zip(ops, values):
        V, s, r = stack_update(V, s, torch.tensor([v]), torch.tensor([d]), torch.tensor([u]), max_depth)
        out.append((V, s, r))
    return out


def test_push_push_pop_by_hand():
    """The example of Grefenstette et al. (2015), figure 1, worked through their equations:
    t=1: push v1 with d=0.8            -> s = [0.8],           r = 0.8 v1
    t=2: pop 0.1, push v2 with d=0.5   -> s = [0.7, 0.5],      r = 0.5 v2 + 0.5 v1
    t=3: pop 0.9, push v3 with d=0.9   -> pop takes 0.5 of v2 and the last 0.4 from v1:
                                          s = [0.3, 0.0, 0.9], r = 0.9 v3 + min(0.3, 1 - 0.9) v1
    """
    v1, v2, v3 = [1.0, 0.0], [0.0, 1.0], [2.0, -1.0]
    (V1, s1, r1), (V2, s2, r2), (V3, s3, r3) = run_ops([(0.8, 0.0), (0.5, 0.1), (0.9, 0.9)], [v1, v2, v3])
    close = lambda a, b: torch.allclose(a, torch.tensor([b]), atol=1e-6)
    assert close(s1, [0.8]) and close(r1, [0.8, 0.0])
    assert close(s2, [0.7, 0.5]) and close(r2, [0.5, 0.5])
    assert close(s3, [0.3, 0.0, 0.9]) and close(r3, [0.9 * 2.0 + 0.1 * 1.0, 0.9 * -1.0])
    assert torch.equal(V3[0], torch.tensor([v1, v2, v3]))  # values never change once pushed


def test_pop_beyond_the_bottom_empties_the_stack():
    steps = run_ops([(0.6, 0.0), (0.3, 0.0), (0.0, 5.0)], [[1.0, 1.0]] * 3)
    V, s, r = steps[-1]
    assert torch.allclose(s, torch.zeros(1, 3)) and torch.allclose(r, torch.zeros(1, 2))


def test_read_takes_top_strength_one():
    """Strengths below the top unit are not read: [0.5, 0.5, 0.5] reads the top two items only."""
    V, s, r = run_ops([(0.5, 0.0)] * 3, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])[-1]
    assert torch.allclose(r, torch.tensor([[0.0, 0.5]]), atol=1e-6)


def test_depth_is_bounded_and_grows_with_pushes():
    steps = run_ops([(1.0, 0.0)] * 6, [[float(i), 0.0] for i in range(6)], max_depth=4)
    assert [s.shape[1] for _, s, _ in steps] == [1, 2, 3, 4, 4, 4]
    V, _, r = steps[-1]
    assert V[0, :, 0].tolist() == [2.0, 3.0, 4.0, 5.0]  # the oldest items dropped off the bottom
    assert torch.allclose(r, torch.tensor([[5.0, 0.0]]))


def tiny(**over):
    torch.manual_seed(0)
    return build_model("stack", {**TINY["stack"], "vocab_size": 50, **over})


def test_state_carries_across_windows():
    model = tiny().eval()
    x = torch.randint(0, 50, (2, 30))
    full, _ = model(x)
    first, state = model(x[:, :17])
    second, _ = model(x[:, 17:], state)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)


def test_stack_operations_get_gradient():
    """The loss reaches push, pop and value weights: the stack is differentiable end to end."""
    model = tiny()
    logits, _ = model(torch.randint(0, 50, (2, 12)))
    logits.logsumexp(-1).mean().backward()
    grad = model.stack_ops.weight.grad
    assert all(grad[i].abs().sum() > 0 for i in (0, 1)) and grad[2:].abs().sum() > 0


def test_reads_feed_the_controller():
    """Changing what the stack holds changes the next prediction: r_t reaches the controller."""
    model = tiny().eval()
    x = torch.randint(0, 50, (1, 5))
    _, state = model(x)
    h, c, V, s, r = state
    a, _ = model(x[:, -1:], (h, c, V, s, r))
    b, _ = model(x[:, -1:], (h, c, V, s, r + 1.0))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("over", [{"max_depth": 0}, {"memory_width": 0}])
def test_bad_config_is_a_clear_error(over):
    from seqlab.errors import SeqlabError

    with pytest.raises(SeqlabError, match="model\\."):
        tiny(**over)


def test_tiny_stack_learns_structure(trained_runs, corpus_file):
    """Trained by the shared loop (stateful batches, eval, checkpoint, samples), it learns the tiny grammar."""
    from collections import Counter
    from math import log2

    from seqlab.run import read_metrics

    final = [r for r in read_metrics(trained_runs["stack"]) if r["event"] == "final"][-1]
    text = corpus_file.read_bytes()
    unigram = -sum(c / len(text) * log2(c / len(text)) for c in Counter(text).values())
    assert final.get("val_bpb_network", final["val_bpb"]) < 0.6 * unigram
