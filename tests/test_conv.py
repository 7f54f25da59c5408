"""Dilated causal CNN: the receptive field is what it claims, and incremental generation is exact."""

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.models import build_model

from conftest import TINY


def tiny(**over):
    torch.manual_seed(0)
    return build_model("conv", {**TINY["conv"], "vocab_size": 50, **over}).eval()


def test_dilations_double_and_restart_each_cycle():
    model = tiny(n_layer=6, cycle=3, kernel_size=3)
    assert model.dilations == [1, 2, 4, 1, 2, 4]
    assert model.max_context == 1 + 2 * (1 + 2 + 4) * 2
    assert model.describe()["receptive_field"] == f"{model.max_context} tokens"


@pytest.mark.parametrize("connection", ["residual", "dense"])
def test_receptive_field_is_max_context(connection):
    """The last output depends on the token max_context-1 positions back, and on none further back."""
    model = tiny(connection=connection)  # 4 layers, kernel 2: receptive field 16
    rf = model.max_context
    x = torch.randint(0, 50, (1, 40))
    base, _ = model(x)
    changed = []
    for pos in range(40):
        y = x.clone()
        y[0, pos] = (y[0, pos] + 1) % 50
        changed.append(not torch.allclose(model(y)[0][0, -1], base[0, -1], atol=1e-7))
    assert changed == [pos >= 40 - rf for pos in range(40)]


@pytest.mark.parametrize("connection", ["residual", "dense"])
def test_prefill_in_pieces_equals_full_forward(connection):
    model = tiny(connection=connection)
    x = torch.randint(0, 50, (2, 45))
    full, _ = model(x)
    state, pieces = model.init_state(2, "cpu"), []
    for a, b in [(0, 7), (7, 8), (8, 30), (30, 45)]:
        logits, state = model(x[:, a:b], state)
        pieces.append(logits)
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)


def test_generation_cost_stays_flat():
    """After many steps the queues hold a fixed number of inputs, and the output equals a fresh pass
    over just the last receptive field of tokens."""
    model = tiny(cycle=2, n_layer=4)  # dilations 1, 2, 1, 2: receptive field 7
    x = torch.randint(0, 50, (1, 60))
    state = model.init_state(1, "cpu")
    sizes = [q.shape for q in state]
    for t in range(60):
        logits, state = model.step(x[:, t], state)
    assert [q.shape for q in state] == sizes
    ref, _ = model(x[:, -model.max_context :])
    assert torch.allclose(logits, ref[:, -1], atol=1e-5)


def test_training_path_returns_no_state():
    model = tiny()
    assert not model.carries_state
    assert model(torch.randint(0, 50, (2, 8)))[1] is None


@pytest.mark.parametrize("over", [{"connection": "highway"}, {"kernel_size": 1}, {"n_layer": 0}])
def test_bad_config_is_a_clear_error(over):
    with pytest.raises(SeqlabError, match="model\\."):
        tiny(**over)


def test_tiny_conv_learns_structure(trained_runs, corpus_file):
    """Trained by the shared loop (random windows, sliding-window eval, samples), it learns the grammar."""
    from seqlab.run import read_metrics

    from conftest import assert_near_the_grammar, held_out_grammar_bpb

    final = [r for r in read_metrics(trained_runs["conv"]) if r["event"] == "final"][-1]
    assert_near_the_grammar(final["val_bpb_network"], held_out_grammar_bpb(corpus_file.read_bytes()))
