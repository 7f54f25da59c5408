"""Stacked LSTM language model; its (h, c) state carries across training windows.

Layers are separate single-layer LSTMs so every layer's activations can be
looked at (`hidden_states`), at no cost to speed.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import SeqModel
from .heads import output_layer


@dataclass
class LSTMConfig:
    vocab_size: int = 257
    n_layer: int = 2
    n_hidden: int = 512
    n_embd: int = 0  # 0 = same as n_hidden, which lets the output layer share the embedding
    dropout: float = 0.1
    softmax: str = "full"  # "full" (tied to the embedding) or "adaptive" (large vocabularies; see heads.py)
    cutoffs: list[int] = field(default_factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]


class LSTM(SeqModel):
    carries_state = True

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = c = config
        n_embd = c.n_embd or c.n_hidden
        self.embed = nn.Embedding(c.vocab_size, n_embd)
        self.drop = nn.Dropout(c.dropout)
        sizes = [n_embd] + [c.n_hidden] * c.n_layer
        self.layers = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))
        self.proj = nn.Linear(c.n_hidden, n_embd, bias=False) if n_embd != c.n_hidden else nn.Identity()
        self.head = output_layer(c, n_embd, self.embed)
        nn.init.normal_(self.embed.weight, std=n_embd ** -0.5)

    def init_state(self, batch_size: int, device):
        shape = (self.config.n_layer, batch_size, self.config.n_hidden)
        dtype = self.embed.weight.dtype
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def features(self, idx, state=None):
        outputs, state = self.hidden_states(idx, state)
        return self.proj(self.drop(outputs[-1])), state

    def hidden_states(self, idx, state=None):
        """([per-layer outputs (B, T, H)], new state): the model's insides, for analysis."""
        h, c = state if state is not None else self.init_state(idx.shape[0], idx.device)
        x = self.embed(idx)  # (B, T, E)
        outputs, hs, cs = [], [], []
        for i, layer in enumerate(self.layers):
            x, (h_i, c_i) = layer(self.drop(x), (h[i : i + 1].contiguous(), c[i : i + 1].contiguous()))
            outputs.append(x)
            hs.append(h_i)
            cs.append(c_i)
        return outputs, (torch.cat(hs), torch.cat(cs))
