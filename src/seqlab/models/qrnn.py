"""Quasi-recurrent network (Bradbury, Merity, Xiong & Socher 2016), stacked; state carries across windows.

Each layer computes its gates for every time step at once with a masked causal
convolution over the last `window` inputs (one matrix product), then runs the
only sequential part, "fo-pooling":

    z, f, o = tanh(W_z * x), sigmoid(W_f * x), sigmoid(W_o * x)   # * = causal conv
    c_t = f_t * c_{t-1} + (1 - f_t) * z_t
    h_t = o_t * c_t

The pooling is a linear recurrence, so it runs as a chunked scan, vectorised
over time (`linear_scan`), with a hand-written backward (`ForgetMult`). State =
the last window-1 inputs of every layer (for the convolution) and every layer's c.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SOFTMAXES, dropout_rate, non_negative, one_of, positive, setting
from .base import LayerStack

POOL_CHUNK = 4  # steps scanned at once; the smallest product of gates in a chunk must stay a normal float32
F_MIN = 1e-8  # forget gates are clamped here, so F_MIN ** POOL_CHUNK (1e-32) never underflows


@dataclass
class QRNNConfig:
    vocab_size: int = setting(257, positive)
    n_layer: int = setting(2, positive)
    n_hidden: int = setting(512, positive)
    n_embd: int = setting(0, non_negative)  # 0 = same as n_hidden, which lets the output layer share the embedding
    window: int = setting(2, positive)  # convolution width: gates at t see inputs t-window+1..t
    dropout: float = setting(0.1, dropout_rate)
    softmax: str = setting("full", one_of(*SOFTMAXES), flag="--softmax")  # "full" (tied to the embedding),
    # "adaptive" (large vocabularies) or "sampled" (the tied table by negative sampling; see heads.py)
    cutoffs: list[int] = setting(kind=positive, factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]


def fo_pool(f, x, c0):
    """c_t = f_t c_{t-1} + x_t for f, x (B, T, H) and c0 (B, H); x = (1 - f) z in a QRNN. Returns c (B, T, H).

    f >= F_MIN. The scan runs in float32 at least (the chunked products need its range); returns f's dtype.
    """
    if f.shape[1] == 1:  # a generation step: the recurrence itself
        return (f[:, 0] * c0 + x[:, 0])[:, None]
    dtype = torch.promote_types(f.dtype, torch.float32)
    return ForgetMult.apply(f.to(dtype), x.to(dtype), c0.to(dtype)).to(f.dtype)


def linear_scan(f, x, c0, chunk: int = POOL_CHUNK):
    """c_t = f_t c_{t-1} + x_t without autograd, vectorised over time.

    Within a chunk of L steps, with keep_t = f_1 ... f_t (a cumulative product),
    c_t = keep_t (c0 + sum_{s<=t} x_s / keep_s): one cumprod and one cumsum for all
    chunks at once. The chunks are then joined by a loop of T/L tiny steps on
    (B, H) that carries c from each chunk's end into the next.
    """
    B, T, H = x.shape
    pad = -T % chunk
    if pad:  # gates of 1 and inputs of 0 after the end leave every real step as it is
        f, x = F.pad(f, (0, 0, 0, pad), value=1.0), F.pad(x, (0, 0, 0, pad))
    n = (T + pad) // chunk
    f, x = f.reshape(B, n, chunk, H), x.reshape(B, n, chunk, H)
    keep = torch.cumprod(f, dim=2)  # (B, n, L, H), >= F_MIN ** L
    local = torch.cumsum(x / keep, dim=2).mul_(keep)  # c_t of each chunk started from c = 0
    starts = torch.empty(B, n, 1, H, dtype=x.dtype, device=x.device)
    c = c0
    for j in range(n):
        starts[:, j, 0] = c
        c = local[:, j, -1] + keep[:, j, -1] * c
    return local.add_(keep.mul_(starts)).view(B, n * chunk, H)[:, :T]


class ForgetMult(torch.autograd.Function):
    """fo-pooling with its own backward: the gradient of a linear recurrence is the same recurrence run
    backwards (g_t = dL/dc_t + f_{t+1} g_{t+1}), so both directions use `linear_scan`, as the QRNN paper's
    kernels do, instead of autograd recording a dozen elementwise steps."""

    @staticmethod
    def forward(ctx, f, x, c0):
        c = linear_scan(f, x, c0)
        ctx.save_for_backward(f, c, c0)
        return c

    @staticmethod
    def backward(ctx, grad_c):
        f, c, c0 = ctx.saved_tensors
        # The multiplier of step T+1 meets a zero start, so any nonzero value (1) will do.
        f_next = torch.cat([f[:, 1:], torch.ones_like(f[:, :1])], dim=1)
        g = linear_scan(f_next.flip(1), grad_c.flip(1), torch.zeros_like(c0)).flip(1)  # dL/dc_t, all paths
        c_prev = torch.cat([c0[:, None], c[:, :-1]], dim=1)
        return g * c_prev, g, f[:, 0] * g[:, 0]


class QRNNLayer(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, window: int):
        super().__init__()
        self.window, self.n_hidden = window, n_hidden
        self.gates = nn.Linear(window * n_in, 3 * n_hidden)  # the causal convolution as one matrix product

    def forward(self, x, prev, c0):
        """x (B, T, D), prev (B, window-1, D) inputs before x, c0 (B, H) -> h (B, T, H), new prev, c_T."""
        T = x.shape[1]
        xs = torch.cat([prev, x], dim=1)  # (B, window-1+T, D)
        taps = torch.cat([xs[:, j : j + T] for j in range(self.window)], dim=-1)  # (B, T, window*D)
        z_pre, f_pre, o_pre = self.gates(taps).chunk(3, dim=-1)  # (B, T, H) each
        f = torch.sigmoid(f_pre).clamp(min=F_MIN)
        c = fo_pool(f, (1 - f) * torch.tanh(z_pre), c0)
        h = torch.sigmoid(o_pre) * c
        return h, xs[:, xs.shape[1] - (self.window - 1) :], c[:, -1]


class QRNN(LayerStack):
    def __init__(self, config: QRNNConfig):
        super().__init__(config, lambda a, b: QRNNLayer(a, b, config.window))

    def init_state(self, batch_size: int, device):
        """(previous inputs of layer 0, ..., of layer L-1, c (L, B, H)): a flat tuple, as checkpoints store it."""
        c, dtype = self.config, self.embed.weight.dtype
        sizes = [layer.gates.in_features // c.window for layer in self.layers]
        prevs = tuple(torch.zeros(batch_size, c.window - 1, d, device=device, dtype=dtype) for d in sizes)
        return prevs + (torch.zeros(c.n_layer, batch_size, c.n_hidden, device=device, dtype=dtype),)

    def hidden_states(self, idx, state=None):
        """([per-layer outputs (B, T, H)], new state): the model's insides, for analysis."""
        state = state if state is not None else self.init_state(idx.shape[0], idx.device)
        prevs, cs = state[:-1], state[-1]
        x = self.embed(idx)  # (B, T, E)
        outputs, new_prevs, new_cs = [], [], []
        for i, layer in enumerate(self.layers):
            x, prev, c = layer(self.drop(x), prevs[i], cs[i])
            outputs.append(x)
            new_prevs.append(prev)
            new_cs.append(c)
        return outputs, tuple(new_prevs) + (torch.stack(new_cs),)
