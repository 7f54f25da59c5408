"""Numbers in, events out: the two ends that let any trunk read a numeric series.

A step of a series is a vector x_t of D channels (already transformed: series/features.py). `VectorInput`
embeds it with a learned linear map and an activation, a "market vector" as wide as the trunk, where a
text model looks a token up in its table; `EventHead` turns the trunk's features at every step into one
logit per event (a sigmoid gives its probability), where a text model has its softmax. The trunk between
them (lstm, qrnn, conv, transformer) is the one text uses, unchanged: `event_model` builds it from its own
config and swaps its ends (SeqModel.replace_io).

    model = event_model("lstm", {"n_layer": 2, "n_hidden": 128}, n_inputs=21, n_events=1, context=128)
    logits, _ = model(x)  # x (B, T, 21) float -> (B, T, 1), causal: step t reads x_1 .. x_t only
"""

from dataclasses import asdict

import torch
from torch import nn

from ..errors import SeqlabError
from . import build_model, model_config
from .base import SeqModel
from .qrnn import QRNNLayer

SERIES_ARCHS = ("lstm", "qrnn", "conv", "transformer")  # the stack's controller reads token ids (BOS)
ACTIVATIONS = {"gelu": nn.GELU, "tanh": nn.Tanh, "relu": nn.ReLU}
UNUSED_VOCAB = 1  # the token table the trunk builds is replaced; one row keeps it small


class VectorInput(nn.Linear):
    """x (B, T, D) -> activation(x W^T + b) (B, T, E). A Linear, so `.weight` gives the trunks their dtype."""

    def __init__(self, n_inputs: int, width: int, activation: str):
        super().__init__(n_inputs, width)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x):
        return self.act(super().forward(x))


class EventHead(nn.Linear):
    """Features (B, T, C) -> one logit per event (B, T, K)."""


def check_series_arch(arch: str, activation: str) -> None:
    if arch not in SERIES_ARCHS:
        raise SeqlabError(f"--series trains {', '.join(SERIES_ARCHS)}; got --arch {arch}")
    if activation not in ACTIVATIONS:
        raise SeqlabError(f"series.activation={activation!r} is not known; choose one of: {', '.join(ACTIVATIONS)}")


def event_config(arch: str, values: dict, context: int):
    """The trunk's resolved config for a series model: no token vocabulary; a transformer's window = context."""
    fixed = {"vocab_size": UNUSED_VOCAB, "softmax": "full", "cutoffs": []}
    if arch == "transformer":
        fixed["block_size"] = context
    return model_config(arch, {**values, **fixed})


def event_model(arch: str, values: dict, n_inputs: int, n_events: int, activation: str = "gelu",
                context: int = 128) -> SeqModel:
    """A trunk of `arch` (config `values`) reading vectors of n_inputs and predicting n_events logits per step."""
    check_series_arch(arch, activation)
    model = build_model(arch, asdict(event_config(arch, values, context)))
    width = model.input_embedding().embedding_dim
    model.replace_io(VectorInput(n_inputs, width, activation), EventHead(model.output_layer().in_features, n_events))
    remember_over(model, context)
    return model


def remember_over(model: nn.Module, context: int) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"): forget-gate
    biases log U(1, context - 1), input gates the opposite, so a recurrent trunk starts out keeping what it
    read for up to `context` steps instead of halving its state every step. On a noisy series that is the
    difference between finding a cause 30 steps back and memorising the training rows first
    (bench/events.py --planted; docs/series.md)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LSTM):
                H = module.hidden_size
                for i in range(module.num_layers):
                    keep = torch.log(torch.empty(H).uniform_(1, max(2, context - 1)))
                    b_ih, b_hh = getattr(module, f"bias_ih_l{i}"), getattr(module, f"bias_hh_l{i}")
                    b_ih[H:2 * H], b_ih[:H] = keep, -keep  # gates i, f, g, o
                    b_hh[:2 * H] = 0
            elif isinstance(module, QRNNLayer):
                H = module.n_hidden
                module.gates.bias[H:2 * H] = torch.log(torch.empty(H).uniform_(1, max(2, context - 1)))  # z, f, o


def event_probabilities(model: SeqModel, x: torch.Tensor) -> torch.Tensor:
    """x (B, T, D) -> probabilities (B, T, K), without gradients."""
    with torch.no_grad():
        return torch.sigmoid(model(x)[0].float())
