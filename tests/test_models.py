"""The model contract, for every architecture: causality, step == full forward, round trip."""

import pytest
import torch

from seqlab.checkpoint import load_weights, save_checkpoint
from seqlab.models import ARCHS, build_model
from seqlab.errors import SeqlabError

from conftest import TINY

ALL = sorted(ARCHS)


def tiny(arch, **over):
    torch.manual_seed(0)
    return build_model(arch, {**TINY.get(arch, {}), "vocab_size": 50, **over}).eval()


@pytest.mark.parametrize("arch", ALL)
def test_forward_shapes(arch):
    model = tiny(arch)
    logits, _ = model(torch.randint(0, 50, (3, 20)))
    assert logits.shape == (3, 20, 50)


@pytest.mark.parametrize("arch", ALL)
def test_causal(arch):
    model = tiny(arch)
    x = torch.randint(0, 50, (2, 24))
    y = x.clone()
    y[:, 13] = (y[:, 13] + 1) % 50
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[:, :13], b[:, :13], atol=1e-6)
    assert not torch.allclose(a[:, 13:], b[:, 13:], atol=1e-6)


@pytest.mark.parametrize("arch", ALL)
def test_step_by_step_equals_full_forward(arch):
    model = tiny(arch)
    x = torch.randint(0, 50, (2, 20))
    full, _ = model(x)
    state = model.init_state(2, "cpu")
    prefix, state = model(x[:, :5], state)  # prefill, then one token at a time
    steps = [prefix]
    for t in range(5, 20):
        logits, state = model.step(x[:, t], state)
        steps.append(logits[:, None])
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize("arch", ALL)
def test_scoring_paths_give_the_training_forwards_features(arch):
    """Without gradients scoring takes faster paths (the LSTM's input table, the transformer's GELU in
    sigmoid form and its window_features skipping the last block's unread positions): same values."""
    model = tiny(arch)
    x = torch.randint(0, 50, (3, 24))
    reference, _ = model.features(x)  # gradients on: the path training takes
    with torch.inference_mode():
        assert torch.allclose(model.scoring_features(x)[0], reference, atol=1e-5)
        assert torch.allclose(model.window_features(x, 7), reference[:, -7:], atol=1e-5)
        short = x[:1, :6]  # fewer tokens than the vocabulary (a search query): the LSTM projects them alone
        assert torch.allclose(model.scoring_features(short)[0], model.features(short)[0], atol=1e-5)


def test_state_carries_across_windows():
    model = tiny("lstm")
    x = torch.randint(0, 50, (2, 30))
    full, _ = model(x)
    first, state = model(x[:, :17])
    second, _ = model(x[:, 17:], state)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)


def test_transformer_cache_rebuilds_when_full():
    """Past the context window the cache is rebuilt from the last half window."""
    model = tiny("transformer")  # block_size 32
    x = torch.randint(0, 50, (1, 45))
    state = model.init_state(1, "cpu")
    _, state = model(x[:, :30], state)
    for t in range(30, 45):
        logits, state = model.step(x[:, t], state)
    assert state.length <= 32 and torch.equal(state.tokens, x[:, -state.length:])
    ref, _ = model(state.tokens)  # a fresh pass over the tokens the cache now holds
    assert torch.allclose(logits, ref[:, -1], atol=1e-5)



def test_transformer_cache_rebuilds_rows_a_slice_at_a_time():
    """The re-read fills the cache REFILL_ROWS rows at a time (a partial slice last), its last layer's output for
    the last position alone: at every step, the re-read's and those after it (which read its cache), the logits are
    what a fresh pass over the tokens the cache holds gives."""
    from seqlab.models.transformer import REFILL_ROWS

    model = tiny("transformer")  # block_size 32: the re-read at token 33, then 12 steps from the rebuilt cache
    rows = 2 * REFILL_ROWS + 3
    x = torch.randint(0, 50, (rows, 45))
    state = model.init_state(rows, "cpu")
    with torch.no_grad():
        _, state = model(x[:, :30], state)
        for t in range(30, 45):
            logits, state = model.step(x[:, t], state)
            assert torch.equal(state.tokens, x[:, t + 1 - state.length : t + 1])
            assert torch.allclose(logits, model(state.tokens)[0][:, -1], atol=1e-5)

@pytest.mark.parametrize("arch", ALL)
def test_checkpoint_round_trip(arch, tmp_path):
    model = tiny(arch)
    save_checkpoint(tmp_path, model)
    again = tiny(arch)
    for p in again.parameters():
        torch.nn.init.zeros_(p)
    load_weights(tmp_path, again)
    x = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(x)[0], again(x)[0])


def test_transformer_attention_weights_get_no_dropout():
    """Dropout stays on the residuals and embeddings; on the attention weights it cost a CPU step 1.4x
    (docs/quality.md). With those dropouts silenced, a training-mode forward is deterministic only if attention drops
    nothing."""
    model = tiny("transformer", dropout=0.5).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    x = torch.randint(0, 50, (2, 24))
    a, _ = model(x)
    b, _ = model(x)
    assert torch.equal(a, b)

def test_checkpoint_of_wrong_shape_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path, tiny("lstm"))
    with pytest.raises(SeqlabError, match="does not fit"):
        load_weights(tmp_path, tiny("lstm", n_hidden=16))


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(SeqlabError, match="transformer"):
        build_model("gru9", {})
