"""Neural stack: the update follows the paper's equations, and the model learns through it."""

import pytest
import torch

from seqlab.models import build_model
from seqlab.models.stack import stack_update

from conftest import TINY


def one_hot_actions(name: str) -> torch.Tensor:
    return torch.tensor([[float(name == a) for a in ("push", "pop", "no-op")]])


def test_push_pop_and_no_op_by_hand():
    """The three outcomes of Joulin & Mikolov (2015), section 3.1, on a 3-cell stack of width 2."""
    S = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]])
    v = torch.tensor([[5.0, -5.0]])
    after = lambda action: stack_update(S, one_hot_actions(action), v)[0]
    assert torch.equal(after("push"), torch.tensor([[5.0, -5.0], [1.0, 1.0], [2.0, 2.0]]))
    assert torch.equal(after("pop"), torch.tensor([[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(stack_update(S, one_hot_actions("no-op"), v), S)


def test_soft_actions_mix_the_outcomes():
    torch.manual_seed(0)
    S, v = torch.randn(2, 4, 3), torch.randn(2, 3)
    actions = torch.softmax(torch.randn(2, 3), dim=-1)
    outcomes = [stack_update(S, one_hot_actions(a).expand(2, 3), v) for a in ("push", "pop", "no-op")]
    expected = sum(actions[:, i, None, None] * outcomes[i] for i in range(3))
    assert torch.allclose(stack_update(S, actions, v), expected, atol=1e-6)


def test_pushes_beyond_the_depth_drop_the_bottom_cell():
    S = torch.zeros(1, 3, 1)
    for i in range(5):
        S = stack_update(S, one_hot_actions("push"), torch.tensor([[float(i + 1)]]))
    assert S[0, :, 0].tolist() == [5.0, 4.0, 3.0]


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
    grad = model.actions.weight.grad
    assert all(grad[i].abs().sum() > 0 for i in range(3)) and model.value.weight.grad.abs().sum() > 0


def test_the_top_feeds_the_controller_and_the_output():
    """Changing the top cell changes the next prediction; changing a cell below it, only after a pop."""
    model = tiny().eval()
    x = torch.randint(0, 48, (1, 5))
    _, (h, c, S) = model(x)
    a, _ = model(x[:, -1:], (h, c, S))
    top = S.clone()
    top[:, 0] += 1.0
    b, _ = model(x[:, -1:], (h, c, top))
    assert not torch.allclose(a, b)


def test_bos_empties_the_stack():
    """Each document starts on an empty stack, whatever the one before left on it."""
    model = tiny().eval()
    bos = torch.full((1, 1), model.bos_id)
    doc = torch.cat([bos, torch.randint(0, 48, (1, 6))], dim=1)
    alone, _ = model(doc)
    _, (h, c, S) = model(torch.randint(0, 48, (1, 20)))
    after, _ = model(doc, (h, c, S + 1.0))
    fresh, _ = model(doc, (h, c, torch.zeros_like(S)))
    assert torch.allclose(after, fresh, atol=1e-6) and not torch.allclose(alone, after)


@pytest.mark.parametrize("over", [{"max_depth": 0}, {"memory_width": 0}])
def test_bad_config_is_a_clear_error(over):
    from seqlab.errors import SeqlabError

    with pytest.raises(SeqlabError, match="model\\."):
        tiny(**over)


@pytest.mark.slow
def test_tiny_stack_learns_structure(trained_runs, corpus_file):
    """Trained by the shared loop (stateful batches, eval, checkpoint, samples), it learns the tiny grammar."""
    from seqlab.run import read_metrics

    from conftest import assert_near_the_grammar, held_out_grammar_bpb

    final = [r for r in read_metrics(trained_runs["stack"]) if r["event"] == "final"][-1]
    assert_near_the_grammar(final["val_bpb_network"], held_out_grammar_bpb(corpus_file.read_bytes()))


@pytest.mark.slow
def test_stack_reverses_longer_sequences_than_it_trained_on_and_lstm_does_not(tmp_path):
    """task:reverse trains on lengths 1-10 and holds out 11-16. Same controller size, same 300 steps:
    the stack keeps what it read and pops it back at any length; the plain LSTM does not get there.
    (bench/stack_vs_lstm.py runs the longer comparison.)"""
    from seqlab.config import DataConfig, RunConfig, TrainConfig
    from seqlab.data.tasks import task_accuracy
    from seqlab.run import load
    from seqlab.train import train

    def accuracy(arch: str, model: dict) -> dict:
        config = RunConfig(arch=arch, model={"n_hidden": 64, "dropout": 0.0, **model},
                           data=DataConfig(paths=["task:reverse"]),
                           train=TrainConfig(max_steps=300, batch_size=32, seq_len=64, lr=6e-3, seed=1337,
                                             eval_every_steps=300, eval_tokens=1024, threads=1, device="cpu"))
        run = load(train(config, tmp_path / arch, log=lambda *a: None))
        return task_accuracy(run.model, run.tokenizer, "reverse", run.device)

    stack, lstm = accuracy("stack", {"memory_width": 16}), accuracy("lstm", {"n_layer": 1})
    assert stack["exact_match"] > 0.6 and stack["byte_accuracy"] > 0.9, stack
    assert stack["exact_match"] > lstm["exact_match"] + 0.5, lstm
    assert stack["byte_accuracy"] > lstm["byte_accuracy"] + 0.5, lstm
