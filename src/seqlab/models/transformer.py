"""GPT-style transformer: pre-norm blocks, causal attention, a KV cache for generation.

Learned absolute positions keep it weight-compatible with GPT-2. When a cache
fills the context window, it is rebuilt from the last half window, so the cost
per generated token stays bounded however long the output grows.
"""

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SOFTMAXES, dropout_rate, one_of, positive, setting, validate
from ..options import number
from .base import SeqModel
from .heads import output_layer


@dataclass
class TransformerConfig:
    vocab_size: int = setting(257, positive)
    n_layer: int = setting(4, positive)
    n_head: int = setting(4, positive)
    n_embd: int = setting(256, positive)
    block_size: int = setting(256, positive)
    dropout: float = setting(0.1, dropout_rate)
    bias: bool = False
    layer_norm_eps: float = setting(1e-5, number(min=0, min_open=True))
    activation: str = setting("gelu", one_of("gelu", "gelu_exact"))  # "gelu" (tanh approx, as GPT-2) or exact
    softmax: str = setting("full", one_of(*SOFTMAXES), flag="--softmax")  # "full" (tied to the embedding),
    # "adaptive" (large vocabularies) or "sampled" (the tied table by negative sampling; see heads.py)
    cutoffs: list[int] = setting(kind=positive, factory=list)  # adaptive softmax clusters; [] = [vocab/8, vocab/2]

    def check(self) -> str | None:
        """What the fields cannot say alone (config.validate asks)."""
        if self.n_embd % self.n_head:
            return f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
        return None


class KVCache:
    def __init__(self, n_layer: int, batch: int, n_head: int, size: int, head_dim: int, device, dtype):
        shape = (batch, n_head, size, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.tokens = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.length = 0

    def emptied_rows(self, rows: slice) -> "KVCache":
        """A view of rows `rows` (writing to it writes to this cache), empty: to fill them again from position 0."""
        view = copy.copy(self)
        view.k, view.v = [t[rows] for t in self.k], [t[rows] for t in self.v]
        view.tokens, view.length = self.tokens[rows, :0], 0
        return view


class CausalSelfAttention(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        assert c.n_embd % c.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = c.n_head
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.resid_dropout = nn.Dropout(c.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, last: int = 0, every_query: bool = False):
        """last > 0: outputs for the last `last` positions only (they still attend to all of x); every_query: their
        attention computed with every position's, as a pass without `last` rounds it (a cache's re-read)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            start = cache.length
            cache.k[layer][:, :, start : start + T] = k
            cache.v[layer][:, :, start : start + T] = v
            k, v = cache.k[layer][:, :, : start + T], cache.v[layer][:, :, : start + T]
        if last and not every_query:
            q = q[:, :, -last:]
        n_q, n_k = q.shape[2], k.shape[2]
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled():
            # PyTorch's bf16 attention backward on a CPU is several times slower than its fp32 one, which
            # undid the gain of bf16 matrix products: in training attention stays fp32 (train/speed.py);
            # without gradients (compress's bf16 step) its forward is faster in bf16
            with torch.autocast("cpu", enabled=False):
                y = self._attend(q.float(), k.float(), v.float(), n_q, n_k)
        else:
            y = self._attend(q, k, v, n_q, n_k)
        if last and every_query:
            y, n_q = y[:, :, -last:], last
        y = y.transpose(1, 2).contiguous().view(B, n_q, C)
        return self.resid_dropout(self.c_proj(y))

    def _attend(self, q, k, v, n_q: int, n_k: int):
        if n_q == 1:  # a step's one query sees every key: no mask to build and read (the same floats)
            return F.scaled_dot_product_attention(q, k, v)
        if n_q == n_k:
            # no dropout on the attention weights: on a CPU it takes PyTorch off its fused kernel and doubled
            # the attention's cost (a 10-minute default run trained at 21k instead of 38k tokens/s); the
            # residual and embedding dropouts regularise (docs/quality.md)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        # the queries are the last n_q of n_k positions: query i sees keys 0..n_k-n_q+i
        mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(diagonal=n_k - n_q)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MLP(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)
        self.approximate = "tanh" if c.activation == "gelu" else "none"

    def forward(self, x):
        return self.dropout(self.c_proj(gelu(self.c_fc(x), self.approximate)))


GELU_2U = 2 * math.sqrt(2 / math.pi)


def gelu(x: torch.Tensor, approximate: str) -> torch.Tensor:
    """F.gelu; without gradients, GPT-2's tanh form is computed as x·sigmoid(2u), the same function
    (tanh(u) = 2·sigmoid(2u) - 1), in place: twice as fast on CPUs where torch's tanh is slow (AVX2),
    which makes it a fifth of scoring time otherwise. Training keeps F.gelu and its fused backward."""
    if approximate != "tanh" or torch.is_grad_enabled():
        return F.gelu(x, approximate=approximate)
    x = x.float()  # a bf16 step's (compress): a CPU's element-wise work is 2-4x slower in bf16, rounding at every op
    u = x * x
    u.mul_(0.044715 * GELU_2U).add_(GELU_2U).mul_(x)  # 2u = 2·sqrt(2/pi)·(x + 0.044715·x³)
    return u.sigmoid_().mul_(x)


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x, cache=None, layer=0, last: int = 0, every_query: bool = False):
        h = self.ln_1(x)
        x = x[:, -last:] if last else x
        x = x + self.attn(h, cache, layer, last, every_query)
        return x + self.mlp(self.ln_2(x))


class Transformer(SeqModel):
    carries_state = False

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        validate(c, "model")
        self.max_context = c.block_size
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.lm_head = output_layer(c, c.n_embd, self.wte, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def init_state(self, batch_size: int, device, dtype: torch.dtype | None = None) -> KVCache:
        """dtype: the cache's (default the weights'): bf16 for steps under bf16 autocast, whose keys and values are
        bf16 (compress: stored as they come, and half the bytes to read, which is what a step's attention costs)."""
        c = self.config
        dtype = dtype or self.wte.weight.dtype
        return KVCache(c.n_layer, batch_size, c.n_head, c.block_size, c.n_embd // c.n_head, device, dtype)

    def features(self, idx, state: KVCache | None = None):
        B, T = idx.shape[:2]  # (B, T) token ids, or (B, T, D) vectors (models/events.py)
        assert T <= self.max_context, f"sequence of {T} tokens exceeds block_size {self.max_context}"
        if state is None:
            return self._run(idx, None, 0), None
        if state.length + T > self.max_context:
            # Re-prefill from the last half window (amortised: once per half window of tokens)
            keep = max(self.max_context // 2, T)
            history = torch.cat([state.tokens, idx], dim=1)[:, -keep:]
            # the last layer's projection and MLP for the last T positions alone (a fifth of the re-read), its
            # attention for all of them: the whole pass's floats (its attention for the last T alone rounds otherwise)
            x = torch.cat([self._run(history[rows], state.emptied_rows(rows), 0, T, every_query=True)
                           for rows in _row_slices(B)])
            state.length, state.tokens = keep, history
            return x, state
        x = self._run(idx, state, state.length)
        state.length += T
        state.tokens = torch.cat([state.tokens, idx], dim=1)
        return x, state

    def window_features(self, idx, last: int):
        """features(idx)[0][:, -last:], without the last block's work for the other positions: scoring
        reads only the second half of each sliding window (a tenth less work at 4 layers)."""
        return self._run(idx, None, 0, last)

    def _run(self, idx, cache, start: int, last: int = 0, every_query: bool = False):
        """Features (B, T, C) of idx at positions start.. (B, last, C: the last `last` only, when given; every_query:
        as CausalSelfAttention's)."""
        pos = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, cache, i, last if i == len(self.h) - 1 else 0, every_query)
        return self.ln_f(x)

    def output_layer(self) -> nn.Module:
        return self.lm_head

    def input_embedding(self) -> nn.Embedding:
        return self.wte

    def hidden_states(self, idx, state=None):
        """([residual stream after each block (B, T, C)], None): the model's insides, for analysis.

        One window from position 0 (no cache); longer texts are read in overlapping windows by the caller.
        """
        assert state is None and idx.shape[1] <= self.max_context, "one window of at most block_size tokens"
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        outputs = []
        for block in self.h:
            x = block(x)
            outputs.append(x)
        return outputs, None

    def describe(self) -> dict:
        return {"context": f"{self.max_context} tokens"}


def features_at(model: Transformer, idx: torch.Tensor, cache: KVCache, lengths: torch.Tensor) -> torch.Tensor:
    """model.features(idx, state) for rows that continue texts of different lengths: row b of cache holds
    its text's first lengths[b] positions (B rows: the caches of several texts side by side), and its
    tokens idx[b] (T of them) go at the positions after them. The cache's keys and values are written
    in place; cache.length and cache.tokens are left as they were (the caller keeps the lengths).
    A row's text must fit the context (features re-reads a half window there); a row padded past its
    text's end may run past it, into cache slots beyond max_context: those positions are padding, their
    features meaningless (they read the last position's embedding), and no earlier position reads them."""
    T = idx.shape[1]
    pos = lengths[:, None] + torch.arange(T, device=idx.device)  # (B, T)
    keys = torch.arange(int(pos.max()) + 1, device=idx.device)  # no query sees a slot past the last position
    return features_masked(model, idx, pos, cache, pos, keys[None, None, :] <= pos[:, :, None])


def features_masked(model: Transformer, idx: torch.Tensor, pos: torch.Tensor, cache: KVCache, slots: torch.Tensor,
                    sees: torch.Tensor) -> torch.Tensor:
    """Features (B, T, C) of tokens idx (B, T) at positions pos (B, T) (clamped to the context: past it,
    padding), their keys and values written to cache slots `slots` (B, T), each token attending to the
    cache slots sees[b, t] (bool (B, T, keys): the first `keys` slots) says: a causal text, or a tree of
    texts that share their beginnings (each token sees its own ancestors)."""
    B, T = idx.shape
    assert int(slots.max()) < cache.k[0].shape[2], "the cache has no slot for a token"
    x = model.wte(idx) + model.wpe(pos.clamp(max=model.max_context - 1))
    n_keys, mask = sees.shape[2], sees[:, None]  # (B, 1, T, keys)
    rows = torch.arange(B, device=idx.device)[:, None].expand(B, T)
    for i, block in enumerate(model.h):
        attn, C = block.attn, x.shape[-1]
        q, k, v = attn.c_attn(block.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2)  # (B, nh, T, hs)
        cache.k[i][rows, :, slots] = k.view(B, T, attn.n_head, C // attn.n_head)  # (B, T, nh, hs) at (b, :, slot)
        cache.v[i][rows, :, slots] = v.view(B, T, attn.n_head, C // attn.n_head)
        y = F.scaled_dot_product_attention(q, cache.k[i][:, :, :n_keys], cache.v[i][:, :, :n_keys], attn_mask=mask)
        x = x + attn.resid_dropout(attn.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        x = x + block.mlp(block.ln_2(x))
    return model.ln_f(x)


REFILL_ROWS = 16  # rows re-read at a time: their activations (16 x 32 positions x 512 floats, 1 MB) stay in cache


def _row_slices(batch: int) -> list[slice]:
    """A cache's re-read, REFILL_ROWS rows at a time: at 256 rows x 32 positions (compress) the whole batch's
    activations went to memory and back at every operation, and the re-read cost a quarter of the step. Each row's
    floats are the same at 8, 16 or 32 rows (a bf16 step's log-probabilities over six re-reads; at 32 compress's hash
    too, bench/compress_floats.py), not at 64, where the matrix products (2,048 rows) take another kernel; 32 re-read
    a little faster alone, not seen in compress's CPU (docs/compress.md)."""
    return [slice(r, r + REFILL_ROWS) for r in range(0, batch, REFILL_ROWS)]
