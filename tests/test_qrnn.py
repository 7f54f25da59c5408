"""QRNN: the vectorised fo-pooling equals the plain recurrence, forwards and backwards."""

import pytest
import torch

from seqlab.models import build_model
from seqlab.models.qrnn import F_MIN, fo_pool, linear_scan

from conftest import TINY


def pool_loop(f, x, c0):
    """The reference: c_t = f_t c_{t-1} + x_t, one Python step per time step."""
    c, out = c0, []
    for t in range(f.shape[1]):
        c = f[:, t] * c + x[:, t]
        out.append(c)
    return torch.stack(out, dim=1)


def gates(B, T, H, scale, seed=0, dtype=torch.float32):
    """Forget gates and (1 - f) z as a QRNN makes them; large `scale` saturates the gates (f near 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.sigmoid(torch.randn(B, T, H, generator=g) * scale + 1).clamp(min=F_MIN)
    z = torch.tanh(torch.randn(B, T, H, generator=g) * scale)
    c0 = torch.rand(B, H, generator=g) * 2 - 1
    return f.to(dtype), ((1 - f) * z).to(dtype), c0.to(dtype)


@pytest.mark.parametrize("T", [2, 3, 4, 5, 37, 1000])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_scan_matches_loop(T, scale):
    f, x, c0 = gates(2, T, 8, scale)
    ref = pool_loop(f.double(), x.double(), c0.double())
    assert torch.allclose(fo_pool(f, x, c0).double(), ref, atol=2e-6)


def test_scan_survives_the_smallest_forget_gates():
    """A chunk of gates all at F_MIN is the worst case for the cumulative products."""
    f = torch.full((1, 64, 4), F_MIN)
    x = torch.randn(1, 64, 4)
    out = linear_scan(f, x, torch.ones(1, 4))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, pool_loop(f, x, torch.ones(1, 4)), atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_gradients_match_loop_over_1000_steps(scale):
    f, x, c0 = gates(2, 1000, 8, scale, seed=1)
    weights = torch.randn(2, 1000, 8, generator=torch.Generator().manual_seed(2))
    grads = []
    for fn, dtype in ((fo_pool, torch.float32), (pool_loop, torch.float64)):
        inputs = [t.detach().to(dtype).requires_grad_() for t in (f, x, c0)]
        (fn(*inputs) * weights.to(dtype)).sum().backward()
        grads.append([t.grad for t in inputs])
    for ours, ref in zip(*grads):
        assert torch.isfinite(ours).all()
        assert torch.allclose(ours.double(), ref, atol=1e-5, rtol=1e-4)


def test_pooling_backward_is_exact_in_double():
    f, x, c0 = gates(2, 11, 3, 2.0, dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (f, x, c0))
    from seqlab.models.qrnn import ForgetMult

    assert torch.autograd.gradcheck(ForgetMult.apply, inputs)


def test_model_gradients_finite_on_long_sequence():
    torch.manual_seed(0)
    model = build_model("qrnn", {**TINY["qrnn"], "vocab_size": 50})
    logits, _ = model(torch.randint(0, 50, (2, 1000)))
    logits.logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_state_carries_across_windows():
    torch.manual_seed(0)
    model = build_model("qrnn", {**TINY["qrnn"], "vocab_size": 50, "window": 3}).eval()
    x = torch.randint(0, 50, (2, 30))
    full, _ = model(x)
    first, state = model(x[:, :17])
    second, _ = model(x[:, 17:], state)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)


def test_convolution_sees_exactly_the_window():
    """With forget gates shut (f = F_MIN), h_t depends on inputs t-window+1..t only: causal, and that wide."""
    torch.manual_seed(0)
    layer = build_model("qrnn", {**TINY["qrnn"], "vocab_size": 50, "n_layer": 1, "window": 3}).layers[0]
    with torch.no_grad():
        layer.gates.bias[48:96] = -100.0  # the f block of (z, f, o)
    x = torch.randn(1, 10, 48, requires_grad=True)
    h, _, _ = layer(x, torch.zeros(1, 2, 48), torch.zeros(1, 48))
    (grad,) = torch.autograd.grad(h[0, 6].sum(), x)
    touched = grad[0].abs().amax(-1) > 1e-6
    assert touched.tolist() == [t in (4, 5, 6) for t in range(10)]


def test_tiny_qrnn_learns_structure(trained_runs, corpus_file):
    """Trained by the shared loop (stateful batches, eval, checkpoint, samples), it learns the tiny grammar."""
    from seqlab.run import read_metrics

    from conftest import assert_near_the_grammar, held_out_grammar_bpb

    final = [r for r in read_metrics(trained_runs["qrnn"]) if r["event"] == "final"][-1]
    assert_near_the_grammar(final["val_bpb_network"], held_out_grammar_bpb(corpus_file.read_bytes()))
