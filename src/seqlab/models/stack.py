"""Stack-augmented RNN (Joulin & Mikolov 2015, "Inferring Algorithmic Patterns with Stack-Augmented
Recurrent Nets"), with an LSTM controller.

The stack is a fixed-depth tensor S (B, K, m), S[:, 0] on top, empty cells zero. At step t the
controller reads the token and the previous top S_{t-1}[0]; from its hidden state h_t it picks an
action a_t = softmax over (push, pop, no-op); the value to push is v_t = tanh(W e_t), e_t the token's
embedding. The new stack is the mixture of the three outcomes (`stack_update`):

    push:  [v_t, S[0], ..., S[K-2]]      (the bottom cell falls off)
    pop:   [S[1], ..., S[K-1], 0]
    no-op: S

The output reads both the controller and the top it read: x_t = P h_t + Q S_{t-1}[0]. That direct
path, and the token embedding in the pushed value, make the stack the easy place to keep what must
come back later in reverse order (the controller alone memorises lengths it saw and fails beyond them).
Reading BOS empties the stack: each document starts on an empty stack, in training (where the
state carries across windows and so across documents) as at generation (which starts from BOS).
The bench and the test: bench/stack_vs_lstm.py, tests/test_stack.py (task:reverse at unseen lengths).
"""

from dataclasses import dataclass

import torch
from torch import nn

from ..config import SOFTMAXES, dropout_rate, non_negative, one_of, positive, setting, validate
from .base import SeqModel
from .heads import output_layer


@dataclass
class StackConfig:
    vocab_size: int = setting(257, positive)
    n_hidden: int = setting(256, positive)  # controller LSTM
    n_embd: int = setting(0, non_negative)  # 0 = same as n_hidden, which lets the output layer share the embedding
    memory_width: int = setting(64, positive)  # m: width of each stack cell
    max_depth: int = setting(128, positive)  # K: cells kept; a push beyond them drops the bottom one
    dropout: float = setting(0.1, dropout_rate)
    softmax: str = setting("full", one_of(*SOFTMAXES), flag="--softmax")  # "full" (tied to the embedding),
    # "adaptive" (large vocabularies) or "sampled" (the tied table by negative sampling; see heads.py)
    cutoffs: list[int] = setting(kind=positive, factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]


def stack_update(S, actions, v):
    """One step of the stack: S (B, K, m), actions (B, 3) = (push, pop, no-op) weights, v (B, m) -> S."""
    pushed = torch.cat([v[:, None], S[:, :-1]], dim=1)
    popped = torch.cat([S[:, 1:], torch.zeros_like(S[:, :1])], dim=1)
    push, pop, noop = actions[:, :, None, None].unbind(1)  # each (B, 1, 1)
    return push * pushed + pop * popped + noop * S


class StackRNN(SeqModel):
    carries_state = True

    def __init__(self, config: StackConfig):
        super().__init__()
        self.config = c = config
        validate(c, "model")
        n_embd = c.n_embd or c.n_hidden
        self.bos_id = c.vocab_size - 1  # every tokenizer puts BOS last
        self.embed = nn.Embedding(c.vocab_size, n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.input_gates = nn.Linear(n_embd, 4 * c.n_hidden)  # for all tokens at once, outside the loop
        self.recurrent_gates = nn.Linear(c.memory_width + c.n_hidden, 4 * c.n_hidden, bias=False)  # [top, h]
        self.actions = nn.Linear(c.n_hidden, 3)  # push, pop, no-op; zero bias: each 1/3 at the start
        self.value = nn.Linear(n_embd, c.memory_width)  # from the token embedding
        self.proj = nn.Linear(c.n_hidden, n_embd, bias=False)
        self.read = nn.Linear(c.memory_width, n_embd, bias=False)
        self.head = output_layer(c, n_embd, self.embed)
        nn.init.normal_(self.embed.weight, std=n_embd ** -0.5)
        nn.init.zeros_(self.actions.bias)

    def init_state(self, batch_size: int, device):
        """(h, c, S): controller state and an empty stack."""
        c, dtype = self.config, self.embed.weight.dtype
        zeros = lambda *shape: torch.zeros(*shape, device=device, dtype=dtype)
        return zeros(batch_size, c.n_hidden), zeros(batch_size, c.n_hidden), \
            zeros(batch_size, c.max_depth, c.memory_width)

    def features(self, idx, state=None):
        (hs, tops), state = self.hidden_states(idx, state)
        return self.drop(self.proj(hs) + self.read(tops)), state

    def hidden_states(self, idx, state=None):
        """([controller outputs (B, T, H), stack tops (B, T, m)], new state): the model's insides."""
        h, c, S = state if state is not None else self.init_state(idx.shape[0], idx.device)
        emb = self.drop(self.embed(idx))  # (B, T, E)
        x_gates = self.input_gates(emb)  # (B, T, 4H)
        values = torch.tanh(self.value(emb))  # (B, T, m)
        keeps = (idx != self.bos_id).to(S.dtype)[:, :, None, None]  # (B, T, 1, 1): 0 empties the stack
        hs, tops = [], []
        for t in range(idx.shape[1]):
            S = keeps[:, t] * S
            gates = x_gates[:, t] + self.recurrent_gates(torch.cat([S[:, 0], h], dim=-1))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            tops.append(S[:, 0])
            S = stack_update(S, torch.softmax(self.actions(h), dim=-1), values[:, t])
        return [torch.stack(hs, dim=1), torch.stack(tops, dim=1)], (h, c, S)

    def describe(self) -> dict:
        return {"stack": f"{self.config.max_depth} cells of width {self.config.memory_width}"}
