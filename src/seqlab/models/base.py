"""The contract every architecture implements.

    logits, state = model(idx, state=None)   # idx (B, T) -> logits (B, T, V)
    state = model.init_state(B, device)       # state for incremental use
    logits, state = model.step(idx_t, state)  # idx_t (B,) -> logits (B, V)
    loss, state = model.loss(idx, targets, state)  # mean cross-entropy (nats): what training minimises
    loss = model.features_loss(x, targets)    # the same from features already computed
    x, state = model.features(idx, state)     # what the output layer reads: logits = output_layer()(x)
    x = model.window_features(idx, last)      # the same for the last `last` positions only, no state
    model.replace_io(input_layer, head)       # other ends on the same trunk: vectors in, events out
                                              # (models/events.py): logits = model(x (B, T, D) float)[0]

`state=None` means "start from nothing and return no state" (the training path
of a model that carries none). Recurrent models return their state so the
trainer can carry it into the next window; attention models take a KV cache as
their state during generation. `max_context` is the longest context the model
can use (None when unbounded) and `carries_state` says whether training should
carry state across consecutive windows.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..config import validate
from .heads import AdaptiveHead, SampledHead, output_layer


class SeqModel(nn.Module):
    max_context: int | None = None
    carries_state: bool = False

    def init_state(self, batch_size: int, device) -> object:
        raise NotImplementedError

    def forward(self, idx, state=None):
        """idx (B, T) -> logits (B, T, V); with a state, idx continues the text the state holds."""
        x, state = self.features(idx, state)
        return self.output_layer()(x), state

    def features(self, idx, state=None):
        raise NotImplementedError

    def scoring_features(self, idx, state=None):
        """features() for scoring long inputs without gradients; an architecture may override it with
        a faster path that gives the same values."""
        return self.features(idx, state)

    def window_features(self, idx, last: int):
        """scoring_features(idx) of the last `last` positions only (B, last, C), from no state: what
        scoring a sliding window reads. An architecture may skip work for the other positions."""
        return self.scoring_features(idx)[0][:, -last:]

    def step(self, idx: torch.Tensor, state):
        logits, state = self(idx[:, None], state)
        return logits[:, -1], state

    def loss(self, idx, targets, state=None):
        """(mean cross-entropy in nats of targets (B, T) following idx (B, T), new state)."""
        x, state = self.features(idx, state)
        return self.features_loss(x, targets), state

    def features_loss(self, x, targets):
        """Mean cross-entropy in nats of targets (B, T) given the features x (B, T, C) that precede them. With an
        adaptive softmax only the clusters the targets fall in are scored; a sampled head's is its own objective
        (negative sampling, not a cross-entropy); else the output layer's logits are."""
        head = self.output_layer()
        if isinstance(head, (AdaptiveHead, SampledHead)):
            return head.loss(x, targets)
        return F.cross_entropy(head(x).float().flatten(0, 1), targets.flatten())

    def output_layer(self) -> nn.Module:
        return self.head

    def input_embedding(self) -> nn.Embedding:
        """The token embedding, whose output style vectors are added to (models/style.py)."""
        return self.embed

    def replace_io(self, input_layer: nn.Module, head: nn.Module) -> None:
        """Swap the token embedding for `input_layer` and the output layer for `head`; the trunk between them
        stays as it is, so features() and forward() read whatever input_layer takes (models/events.py)."""
        for old, new in ((self.input_embedding(), input_layer), (self.output_layer(), head)):
            name = next(n for n, m in self.named_children() if m is old)
            setattr(self, name, new)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict:
        """Facts worth showing in `seqlab info` beyond the config."""
        return {}


def map_state(fn, state):
    """Apply fn to every tensor of a nested state (tuples, lists, dicts)."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    return state


def state_batch_dims(model) -> list[int]:
    """Which dimension of each tensor of a carried state (a flat tuple) is the batch (found by asking
    init_state for B=1 and B=2)."""
    one, two = list(model.init_state(1, "cpu")), list(model.init_state(2, "cpu"))
    return [next(d for d, (a, b) in enumerate(zip(s.shape, t.shape)) if a != b) for s, t in zip(one, two)]


class LayerStack(SeqModel):
    """Token embedding -> recurrent layers -> projection back to the embedding width -> output head.
    LSTM and QRNN share this frame; each makes its layers (make_layer(inputs, outputs)) and runs them
    in hidden_states(idx, state) -> ([per-layer outputs (B, T, H)], new state)."""

    carries_state = True

    def __init__(self, config, make_layer):
        super().__init__()
        self.config = c = config
        validate(c, "model")
        n_embd = c.n_embd or c.n_hidden
        self.embed = nn.Embedding(c.vocab_size, n_embd)
        self.drop = nn.Dropout(c.dropout)
        sizes = [n_embd] + [c.n_hidden] * c.n_layer
        self.layers = nn.ModuleList(make_layer(a, b) for a, b in zip(sizes, sizes[1:]))
        self.proj = nn.Linear(c.n_hidden, n_embd, bias=False) if n_embd != c.n_hidden else nn.Identity()
        self.head = output_layer(c, n_embd, self.embed)
        nn.init.normal_(self.embed.weight, std=n_embd ** -0.5)

    def features(self, idx, state=None):
        outputs, state = self.hidden_states(idx, state)
        return self.proj(self.drop(outputs[-1])), state

    def hidden_states(self, idx, state=None):
        raise NotImplementedError
