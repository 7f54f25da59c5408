"""Dilated causal convolutions (WaveNet / ByteNet style) with gated activations.

Layer i convolves its input with dilation 2^(i mod cycle): 1, 2, 4, ... so the
receptive field doubles per layer. Each layer is pre-normed and gated,
y = tanh(W_f * a) * sigmoid(W_g * a), and joined to the others either by a
residual sum or DenseNet-style (each layer reads a projection of everything
before it). The receptive field is the model's `max_context`; keep it within
train.seq_len, or the far taps only ever see padding during training.

Generation is incremental as in Fast WaveNet: each layer keeps a queue of its
last dilation*(kernel_size-1) inputs, so a new token costs one column per layer
however long the text is. The queues start as zeros, which is exactly the left
padding of the full forward, so stepping equals the full forward.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SOFTMAXES, dropout_rate, non_negative, one_of, positive, setting, validate
from ..options import integer
from .base import SeqModel
from .heads import output_layer

CONNECTIONS = ("residual", "dense")


@dataclass
class ConvConfig:
    vocab_size: int = setting(257, positive)
    n_layer: int = setting(10, positive)
    n_channels: int = setting(256, positive)
    kernel_size: int = setting(3, integer(min=2))
    cycle: int = setting(5, non_negative)  # dilations restart every `cycle` layers (1, 2, .., 16, 1, 2, ..); 0 = never
    connection: str = setting("residual", one_of(*CONNECTIONS))  # "residual" or "dense"
    dropout: float = setting(0.1, dropout_rate)
    softmax: str = setting("full", one_of(*SOFTMAXES), flag="--softmax")  # "full" (tied to the embedding),
    # "adaptive" (large vocabularies) or "sampled" (the tied table by negative sampling; see heads.py)
    cutoffs: list[int] = setting(kind=positive, factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]


class GatedConv(nn.Module):
    """Pre-norm, dilated causal convolution, tanh * sigmoid gate, 1x1 output projection."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.context = dilation * (kernel_size - 1)  # past inputs one output needs
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation)
        self.out = nn.Linear(channels, channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, queue=None):
        """x (B, T, C), queue (B, context, C) of past inputs or None (zeros) -> (B, T, C), new queue."""
        a = self.norm(x).transpose(1, 2)  # (B, C, T)
        a = F.pad(a, (self.context, 0)) if queue is None else torch.cat([queue.transpose(1, 2), a], dim=2)
        filt, gate = self.conv(a).chunk(2, dim=1)  # (B, C, T) each
        y = torch.tanh(filt) * torch.sigmoid(gate)
        new_queue = a[:, :, a.shape[2] - self.context :].transpose(1, 2) if queue is not None else None
        return self.out(self.drop(y.transpose(1, 2))), new_queue


class Conv(SeqModel):
    carries_state = False

    def __init__(self, config: ConvConfig):
        super().__init__()
        self.config = c = config
        validate(c, "model")
        C = c.n_channels
        self.dilations = [2 ** (i % c.cycle if c.cycle else i) for i in range(c.n_layer)]
        self.max_context = 1 + sum(d * (c.kernel_size - 1) for d in self.dilations)  # the receptive field
        self.embed = nn.Embedding(c.vocab_size, C)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(GatedConv(C, c.kernel_size, d, c.dropout) for d in self.dilations)
        if c.connection == "dense":  # layer i reads a projection of [embedding, outputs of layers < i]
            self.joins = nn.ModuleList(nn.Linear((i + 1) * C, C) for i in range(1, c.n_layer + 1))
        self.ln_f = nn.LayerNorm(C)
        self.head = output_layer(c, C, self.embed)
        nn.init.normal_(self.embed.weight, std=C ** -0.5)

    def init_state(self, batch_size: int, device):
        """One queue (B, dilation*(kernel_size-1), C) of past layer inputs per layer, zeros = before the text."""
        dtype = self.embed.weight.dtype
        C = self.config.n_channels
        return tuple(torch.zeros(batch_size, layer.context, C, device=device, dtype=dtype) for layer in self.layers)

    def features(self, idx, state=None):
        queues = state if state is not None else (None,) * len(self.layers)
        x = self.drop(self.embed(idx))  # (B, T, C)
        new_queues = []
        if self.config.connection == "residual":
            for layer, queue in zip(self.layers, queues):
                y, queue = layer(x, queue)
                x = x + y
                new_queues.append(queue)
        else:
            features = [x]
            for i, (layer, queue) in enumerate(zip(self.layers, queues)):
                inp = x if i == 0 else self.joins[i - 1](torch.cat(features, -1))
                y, queue = layer(inp, queue)
                features.append(y)
                new_queues.append(queue)
            x = self.joins[-1](torch.cat(features, -1))
        return self.ln_f(x), (tuple(new_queues) if state is not None else None)

    def describe(self) -> dict:
        return {"receptive_field": f"{self.max_context} tokens", "dilations": ",".join(map(str, self.dilations))}

