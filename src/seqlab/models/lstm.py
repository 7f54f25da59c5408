"""Stacked LSTM language model; its (h, c) state carries across training windows.

Layers are separate single-layer LSTMs so every layer's activations can be
looked at (`hidden_states`), at no cost to speed.

`scoring_features` is features() for inference on long inputs, faster on a CPU:
see its docstring.
"""

from dataclasses import dataclass

import torch
from torch import nn

from ..config import SOFTMAXES, dropout_rate, non_negative, one_of, positive, setting
from .base import LayerStack


@dataclass
class LSTMConfig:
    vocab_size: int = setting(257, positive)
    n_layer: int = setting(2, positive)
    n_hidden: int = setting(512, positive)
    n_embd: int = setting(0, non_negative)  # 0 = same as n_hidden, which lets the output layer share the embedding
    dropout: float = setting(0.1, dropout_rate)
    softmax: str = setting("full", one_of(*SOFTMAXES), flag="--softmax")  # "full" (tied to the embedding),
    # "adaptive" (large vocabularies) or "sampled" (the tied table by negative sampling; see heads.py)
    cutoffs: list[int] = setting(kind=positive, factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]


def run_layer(layer: nn.LSTM, x, h, c):
    """layer(x, (h, c)). One time step (generation, compress, serve) takes PyTorch's native kernel:
    oneDNN's, the CPU default, spends ~10 ms a call setting up for so little work, ten times the step
    itself; over whole windows it is the faster one."""
    if torch.jit.is_tracing():  # an exported graph holds the layer, not the choice of kernel
        return layer(x, (h, c))
    # None leaves a flag as it is (setting allow_tf32 warns on CPU builds)
    with torch.backends.mkldnn.flags(enabled=x.shape[1] > 1, deterministic=None, allow_tf32=None, fp32_precision=None):
        return layer(x, (h, c))


class LSTM(LayerStack):
    def __init__(self, config: LSTMConfig):
        super().__init__(config, lambda a, b: nn.LSTM(a, b, batch_first=True))

    def init_state(self, batch_size: int, device):
        shape = (self.config.n_layer, batch_size, self.config.n_hidden)
        dtype = self.embed.weight.dtype
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def hidden_states(self, idx, state=None):
        """([per-layer outputs (B, T, H)], new state): the model's insides, for analysis."""
        h, c = state if state is not None else self.init_state(idx.shape[0], idx.device)
        x = self.embed(idx)  # (B, T, E)
        outputs, hs, cs = [], [], []
        for i, layer in enumerate(self.layers):
            x, (h_i, c_i) = run_layer(layer, self.drop(x), h[i : i + 1].contiguous(), c[i : i + 1].contiguous())
            outputs.append(x)
            hs.append(h_i)
            cs.append(c_i)
        return outputs, (torch.cat(hs), torch.cat(cs))

    def scoring_features(self, idx, state=None):
        """features(idx, state) at inference, equal to float tolerance and faster on a CPU.

        With byte-sized vocabularies the first layer's input projection of every token,
        embed(idx) @ W_ih^T + biases, is one of V rows: a table (V, 4H) built once replaces a
        (B*T, E) x (E, 4H) matmul as costly as the recurrence itself, and the time loop does one
        matmul per step (an input with fewer tokens than V, such as a search query, projects its own
        tokens instead: building the table would cost more than the whole forward). Style vectors are
        added by a hook on the embedding, which the table would skip: a model that has one, or that is
        training, takes features().
        """
        if self.training or torch.is_grad_enabled() or self.embed._forward_hooks:
            return self.features(idx, state)
        h, c = state if state is not None else self.init_state(idx.shape[0], idx.device)
        x, c_first = self._first_layer_by_table(idx, h[0], c[0])  # (B, T, H), (B, H)
        hs, cs = [x[:, -1]], [c_first]
        for i, layer in enumerate(self.layers[1:], start=1):
            x, (h_i, c_i) = run_layer(layer, x, h[i : i + 1].contiguous(), c[i : i + 1].contiguous())
            hs.append(h_i[0])
            cs.append(c_i[0])
        return self.proj(x), (torch.stack(hs), torch.stack(cs))

    def _first_layer_by_table(self, idx, h, c):
        """The first layer over idx (B, T) from h, c (B, H): its outputs (B, T, H) and last cell state."""
        layer, n = self.layers[0], self.config.n_hidden
        ifog = torch.arange(4 * n, device=idx.device).view(4, n)[[0, 1, 3, 2]].flatten()
        w_ih, w_hh = layer.weight_ih_l0[ifog], layer.weight_hh_l0[ifog]  # gates reordered i, f, o, g:
        bias = (layer.bias_ih_l0 + layer.bias_hh_l0)[ifog]  # ... one sigmoid covers three of them
        w_hh_t, steps = w_hh.t(), idx.t().contiguous()  # (H, 4H), (T, B)
        if steps.numel() < self.embed.weight.shape[0]:  # a short input (a query): project its own tokens only
            inputs = torch.addmm(bias, self.embed.weight[steps.flatten()], w_ih.t()).view(*steps.shape, 4 * n)
        else:
            table = torch.addmm(bias, self.embed.weight, w_ih.t())  # (V, 4H): each token's input projection
            inputs = None
        out = w_hh.new_empty(idx.shape[0], idx.shape[1], n)
        for t in range(idx.shape[1]):
            gates = torch.addmm(table[steps[t]] if inputs is None else inputs[t], h, w_hh_t)  # (B, 4H)
            i_f_o = gates[:, : 3 * n].sigmoid_()
            g = gates[:, 3 * n :].tanh_()
            c = torch.addcmul(i_f_o[:, n : 2 * n] * c, i_f_o[:, :n], g)
            h = torch.mul(i_f_o[:, 2 * n :], c.tanh(), out=out[:, t])
        return out, c
