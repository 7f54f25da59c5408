"""The event model is the text trunks with other ends: vectors in, one logit per event out, still causal."""

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.models.events import SERIES_ARCHS, EventHead, VectorInput, event_model
from series_data import TINY_SERIES


@pytest.mark.parametrize("arch", SERIES_ARCHS)
def test_vectors_in_events_out_and_causal(arch):
    torch.manual_seed(0)
    model = event_model(arch, TINY_SERIES[arch], n_inputs=7, n_events=3, context=24).eval()
    assert isinstance(model.input_embedding(), VectorInput) and isinstance(model.output_layer(), EventHead)
    x = torch.randn(2, 24, 7)
    logits, _ = model(x)
    assert logits.shape == (2, 24, 3)
    later = x.clone()
    later[:, 10:] = torch.randn(2, 14, 7)  # the future changes; steps before it must not
    changed, _ = model(later)
    torch.testing.assert_close(changed[:, :10], logits[:, :10])
    assert not torch.allclose(changed[:, 10:], logits[:, 10:])


@pytest.mark.parametrize("arch", SERIES_ARCHS)
def test_the_trunk_is_the_text_models(arch):
    """Same trunk parameters as the text model of that config, less its token table and softmax."""
    model = event_model(arch, TINY_SERIES[arch], n_inputs=5, n_events=2, context=32)
    text = build_model(arch, {**TINY_SERIES[arch], "vocab_size": 1, **({"block_size": 32} if arch == "transformer"
                                                                       else {})})
    ends = {id(p) for m in (model.input_embedding(), model.output_layer()) for p in m.parameters()}
    trunk = {n: p.shape for n, p in model.named_parameters() if id(p) not in ends}
    text_ends = {id(p) for m in (text.input_embedding(), text.output_layer()) for p in m.parameters()}
    assert trunk == {n: p.shape for n, p in text.named_parameters() if id(p) not in text_ends}


def test_the_stack_is_refused():
    with pytest.raises(SeqlabError, match="--series trains lstm, qrnn, conv, transformer"):
        event_model("stack", {}, 3, 1)
