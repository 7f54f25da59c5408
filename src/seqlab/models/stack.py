"""Stack-augmented RNN (Grefenstette et al. 2015, "Learning to Transduce with Unbounded Memory").

An LSTM controller drives a differentiable stack. At step t it reads the token
and the previous stack read r_{t-1}, and from its hidden state emits a push
strength d_t, a pop strength u_t (both sigmoid) and a value v_t (tanh). The stack
holds values V (B, S, m) with strengths s (B, S), index S-1 on top (`stack_update`):

    pop:  s[i] <- max(0, s[i] - max(0, u_t - sum_{j>i} s[j]))     (u_t removed from the top down)
    push: V <- [V, v_t],  s <- [s, d_t]
    read: r_t = sum_i min(s[i], max(0, 1 - sum_{j>i} s[j])) V[i]  (the top items of total strength 1)

The stack grows by one item per step up to `max_depth`; beyond it the bottom item
is dropped (it is read only while the items above it hold strength < 1).
The state (h, c, V, s, r) carries across training windows.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SeqlabError
from .base import SeqModel
from .heads import output_layer


@dataclass
class StackConfig:
    vocab_size: int = 257
    n_hidden: int = 256  # controller LSTM
    n_embd: int = 0  # 0 = same as n_hidden, which lets the output layer share the embedding
    memory_width: int = 64  # m: width of each stack value
    max_depth: int = 128  # items kept; older ones drop off the bottom
    dropout: float = 0.1
    softmax: str = "full"  # "full" (tied to the embedding) or "adaptive" (large vocabularies; see heads.py)
    cutoffs: list[int] = field(default_factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]


def strength_above(s):
    """sum_{j>i} s[j] for every i (B, S): the strength lying on top of each item."""
    return torch.flip(torch.cumsum(torch.flip(s, [1]), 1), [1]) - s


def stack_update(V, s, v, d, u, max_depth: int):
    """One step of the neural stack: V (B, S, m), s (B, S), v (B, m), d and u (B,) -> (V, s, r (B, m))."""
    s = F.relu(s - F.relu(u[:, None] - strength_above(s)))  # pop
    V = torch.cat([V[:, max(0, V.shape[1] + 1 - max_depth) :], v[:, None]], dim=1)  # push
    s = torch.cat([s[:, max(0, s.shape[1] + 1 - max_depth) :], d[:, None]], dim=1)
    weights = torch.minimum(s, F.relu(1 - strength_above(s)))  # (B, S)
    return V, s, torch.bmm(weights[:, None], V)[:, 0]


class StackRNN(SeqModel):
    carries_state = True

    def __init__(self, config: StackConfig):
        super().__init__()
        self.config = c = config
        if c.max_depth < 1 or c.memory_width < 1:
            raise SeqlabError(f"stack needs model.max_depth >= 1 and model.memory_width >= 1, got "
                              f"{c.max_depth}, {c.memory_width}")
        n_embd = c.n_embd or c.n_hidden
        self.embed = nn.Embedding(c.vocab_size, n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.input_gates = nn.Linear(n_embd, 4 * c.n_hidden)  # for all tokens at once, outside the loop
        self.recurrent_gates = nn.Linear(c.memory_width + c.n_hidden, 4 * c.n_hidden, bias=False)  # [r, h]
        self.stack_ops = nn.Linear(c.n_hidden, 2 + c.memory_width)  # d, u, v
        self.proj = nn.Linear(c.n_hidden, n_embd, bias=False) if n_embd != c.n_hidden else nn.Identity()
        self.head = output_layer(c, n_embd, self.embed)
        nn.init.normal_(self.embed.weight, std=n_embd ** -0.5)
        # Push 0.5 and pop 0.27 at the start, so reads mix the top items and depend on both d and u. (Pops as
        # strong as pushes empty the stack each step, clipped at zero strength; stronger pushes make reads skip
        # the popped items: either way the pop strength gets no gradient.)
        with torch.no_grad():
            self.stack_ops.bias[1] = -1.0

    def init_state(self, batch_size: int, device):
        """(h, c, V, s, r): controller state, an empty stack, a zero read."""
        c, dtype = self.config, self.embed.weight.dtype
        zeros = lambda *shape: torch.zeros(*shape, device=device, dtype=dtype)
        return (zeros(batch_size, c.n_hidden), zeros(batch_size, c.n_hidden), zeros(batch_size, 0, c.memory_width),
                zeros(batch_size, 0), zeros(batch_size, c.memory_width))

    def features(self, idx, state=None):
        outputs, state = self.hidden_states(idx, state)
        return self.proj(self.drop(outputs[-1])), state

    def hidden_states(self, idx, state=None):
        """([controller outputs (B, T, H)], new state): the model's insides, for analysis."""
        h, c, V, s, r = state if state is not None else self.init_state(idx.shape[0], idx.device)
        x_gates = self.input_gates(self.drop(self.embed(idx)))  # (B, T, 4H)
        m = self.config.memory_width
        hs = []
        for t in range(idx.shape[1]):
            gates = x_gates[:, t] + self.recurrent_gates(torch.cat([r, h], dim=-1))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            ops = self.stack_ops(h)
            d, u, v = torch.sigmoid(ops[:, 0]), torch.sigmoid(ops[:, 1]), torch.tanh(ops[:, 2 : 2 + m])
            V, s, r = stack_update(V, s, v, d, u, self.config.max_depth)
            hs.append(h)
        return [torch.stack(hs, dim=1)], (h, c, V, s, r)

    def describe(self) -> dict:
        return {"stack": f"up to {self.config.max_depth} items of width {self.config.memory_width}"}
