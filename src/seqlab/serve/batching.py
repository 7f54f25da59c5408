"""Generation rows that join and leave one running batch (continuous batching).

A row is one sequence being generated. Rows start at different times, so their
states differ in length or position; an adapter knows how to hold every active
row's state as ONE batch that a single forward step serves:

- `AttentionBatch` (transformer): a KV cache with one slot per row and per-row
  lengths; each step writes row b's key at its own position and masks the keys
  past it, so rows of any lengths share the step.
- `StackedBatch` (recurrent models whose state is nested tensors): every tensor
  has one batch dimension (found by asking `init_state` for 1, 2 and 3 rows),
  so rows are stacked along it.
- `RowByRow` (anything else, e.g. a state with a shared position counter):
  each row keeps its own state and steps alone. Slower, never wrong.

`choose_adapter` picks one and `verify` checks it against the model's own
full forward on rows of different lengths that join at different steps; an
adapter that disagrees is replaced by `RowByRow` (and the reason is kept).
Every adapter exposes: prefill(seqs: list of token-id lists, any lengths) ->
(last logits (n, V), part), join(part), keep(order), step(tokens (B,)) ->
logits (B, V), and `size`.
"""

import torch
import torch.nn.functional as F

from ..models.base import map_state
from ..models.transformer import KVCache, Transformer


def _leaves(state) -> list:
    if isinstance(state, (tuple, list)):
        return [x for s in state for x in _leaves(s)]
    if isinstance(state, dict):
        return [x for v in state.values() for x in _leaves(v)]  # the order map_state visits them
    return [state]


def batch_dims(model, device) -> list[int] | None:
    """The batch dimension of every tensor in the model's state, or None if the state is not plain stacked tensors."""
    try:
        probes = [_leaves(model.init_state(b, device)) for b in (1, 2, 3)]
    except NotImplementedError:
        return None
    if not probes[0] or len({len(p) for p in probes}) != 1:
        return None
    dims = []
    for a, b, c in zip(*probes):
        if not all(isinstance(t, torch.Tensor) for t in (a, b, c)) or not (a.dim() == b.dim() == c.dim()):
            return None
        differ = [d for d in range(a.dim()) if (a.shape[d], b.shape[d], c.shape[d]) != (a.shape[d],) * 3]
        if len(differ) != 1 or (a.shape[differ[0]], b.shape[differ[0]], c.shape[differ[0]]) != (1, 2, 3):
            return None
        dims.append(differ[0])
    return dims


class StackedBatch:
    """Rows' states stacked along each tensor's batch dimension."""

    name = "stacked"

    def __init__(self, model, device, dims: list[int]):
        self.model, self.device, self.dims = model, device, dims
        self.state = None
        self.size = 0

    def _map2(self, fn, a, b):
        dims = iter(self.dims)
        flat_b = iter(_leaves(b)) if b is not None else None
        return map_state(lambda t: fn(t, next(flat_b) if flat_b else None, next(dims)), a)

    def prefill(self, seqs: list[list[int]]):
        """One forward per distinct length (a state read past padding would be wrong), then back in order."""
        by_length: dict[int, list[int]] = {}
        for i, seq in enumerate(seqs):
            by_length.setdefault(len(seq), []).append(i)
        logits, states, order = [], [], []
        for rows in by_length.values():
            ids = torch.tensor([seqs[i] for i in rows], device=self.device)
            out, state = self.model(ids, self.model.init_state(len(rows), self.device))
            logits.append(out[:, -1])
            states.append(state)
            order += rows
        state = states[0]
        for other in states[1:]:
            state = self._map2(lambda a, b, d: torch.cat([a, b], d), state, other)
        back = torch.tensor(sorted(range(len(order)), key=order.__getitem__), device=self.device)
        state = self._map2(lambda a, _b, d: a.index_select(d, back), state, None)
        return torch.cat(logits)[back], state

    def join(self, part) -> None:
        n = _leaves(part)[0].shape[self.dims[0]]
        self.state = part if self.state is None else self._map2(lambda a, b, d: torch.cat([a, b], d), self.state, part)
        self.size += n

    def keep(self, order: list[int]) -> None:
        if not order:
            self.state, self.size = None, 0
            return
        idx = torch.tensor(order, device=self.device)
        self.state = self._map2(lambda a, _b, d: a.index_select(d, idx), self.state, None)
        self.size = len(order)

    def step(self, tokens):
        logits, self.state = self.model.step(tokens, self.state)
        return logits


class AttentionBatch:
    """A slotted KV cache for the transformer: row b's keys live in slot b, valid up to lens[b]."""

    name = "attention"

    def __init__(self, model, device, max_rows: int):
        c = model.config
        self.model, self.device = model, device
        self.n_head, self.n_embd = c.n_head, c.n_embd
        shape = (max_rows, c.n_head, model.max_context, c.n_embd // c.n_head)
        dtype = model.wte.weight.dtype
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(c.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(c.n_layer)]
        self.lens = torch.zeros(max_rows, dtype=torch.long, device=device)
        self.slots = torch.arange(max_rows, device=device)
        self.size = 0

    def prefill(self, seqs: list[list[int]]):
        """All prompts in one forward, right-padded: causal attention keeps padding out of every real position,
        and the keys written for padding lie past the row's length, masked until overwritten."""
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long, device=self.device)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq)
        lengths = torch.tensor([len(s) for s in seqs], device=self.device)
        c = self.model.config  # a cache just wide enough for the prompts: its keys are copied into slots next
        cache = KVCache(c.n_layer, len(seqs), c.n_head, width, c.n_embd // c.n_head, self.device, self.k[0].dtype)
        logits, cache = self.model(ids, cache)
        last = logits[torch.arange(len(seqs), device=self.device), lengths - 1]  # (n, V)
        return last, (cache, lengths)

    def join(self, part) -> None:
        cache, lengths = part
        n, width = lengths.shape[0], cache.length
        assert self.size + n <= self.lens.shape[0], "more rows than slots"
        rows = slice(self.size, self.size + n)
        for layer in range(len(self.k)):
            self.k[layer][rows, :, :width] = cache.k[layer][:, :, :width]
            self.v[layer][rows, :, :width] = cache.v[layer][:, :, :width]
        self.lens[rows] = lengths
        self.size += n

    def keep(self, order: list[int]) -> None:
        """Row j of the new batch is old row order[j]; only rows that change slot are copied."""
        moves = [(j, old) for j, old in enumerate(order) if j != old]
        if moves:
            dst = torch.tensor([j for j, _ in moves], device=self.device)
            src = torch.tensor([old for _, old in moves], device=self.device)
            used = int(self.lens[src].max())  # keys past every moving row's length are never read: left behind
            for layer in range(len(self.k)):
                self.k[layer][dst, :, :used] = self.k[layer][src, :, :used]
                self.v[layer][dst, :, :used] = self.v[layer][src, :, :used]
            self.lens[dst] = self.lens[src]
        self.size = len(order)

    def step(self, tokens):
        """One token per row at each row's own position; mirrors Transformer._run with a per-row mask."""
        m, B, C = self.model, self.size, self.n_embd
        pos = self.lens[:B]  # (B,)
        span = int(pos.max()) + 1
        assert span <= m.max_context, "a row outgrew the context (the server validates prompt+max_tokens)"
        rows = self.slots[:B]
        mask = (torch.arange(span, device=self.device)[None, :] <= pos[:, None])[:, None, None, :]  # (B, 1, 1, span)
        x = m.drop(m.wte(tokens) + m.wpe(pos))[:, None]  # (B, 1, C)
        for layer, block in enumerate(m.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, 1, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, 1, hs)
            self.k[layer][rows, :, pos] = k[:, :, 0]
            self.v[layer][rows, :, pos] = v[:, :, 0]
            y = F.scaled_dot_product_attention(q, self.k[layer][:B, :, :span], self.v[layer][:B, :, :span],
                                               attn_mask=mask)
            x = x + attn.resid_dropout(attn.c_proj(y.transpose(1, 2).reshape(B, 1, C)))
            x = x + block.mlp(block.ln_2(x))
        self.lens[:B] += 1
        return m.lm_head(m.ln_f(x))[:, 0]  # (B, V)


class RowByRow:
    """Each row keeps its own state and steps alone: the fallback that needs no knowledge of the state."""

    name = "row-by-row"

    def __init__(self, model, device):
        self.model, self.device = model, device
        self.states: list = []
        self.size = 0

    def prefill(self, seqs: list[list[int]]):
        parts, last = [], []
        for seq in seqs:
            ids = torch.tensor([seq], device=self.device)
            logits, state = self.model(ids, self.model.init_state(1, self.device))
            parts.append(state)
            last.append(logits[:, -1])
        return torch.cat(last), parts

    def join(self, parts) -> None:
        self.states.extend(parts)
        self.size = len(self.states)

    def keep(self, order: list[int]) -> None:
        self.states = [self.states[i] for i in order]
        self.size = len(self.states)

    def step(self, tokens):
        out = []
        for i, state in enumerate(self.states):
            logits, self.states[i] = self.model.step(tokens[i : i + 1], state)
            out.append(logits)
        return torch.cat(out)


def hard_context(model, device) -> int | None:
    """max_context if the model cannot read a longer sequence at once (a KV cache's size), else None.

    A convolution's receptive field is a max_context too, but it generates past it
    freely; only a model that refuses a longer input needs prompt + max_tokens to fit.
    """
    if not model.max_context:
        return None
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.max_context + 1, dtype=torch.long, device=device),
                  model.init_state(1, device))
    except Exception:
        return model.max_context
    return None


def choose_adapter(model, device, max_rows: int):
    if type(model) is Transformer:
        return AttentionBatch(model, device, max_rows)
    dims = batch_dims(model, device)
    if dims is not None:
        return StackedBatch(model, device, dims)
    return RowByRow(model, device)


def pick_adapter(model, device, max_rows: int):
    """(adapter, note): the fastest adapter that passes `verify`, else RowByRow (the model's own step, row by row)."""
    adapter = choose_adapter(model, device, max(3, max_rows))  # verify runs three rows at once
    problem = None if isinstance(adapter, RowByRow) else verify(adapter, model, device, _vocab(model))
    if problem:
        return RowByRow(model, device), f"{problem}; generating row by row instead"
    return adapter, adapter.name


def _vocab(model) -> int:
    return model.config.vocab_size if hasattr(model, "config") else 257


@torch.no_grad()
def verify(adapter, model, device, vocab_size: int, atol: float = 1e-4) -> str | None:
    """None if the adapter reproduces the model's own logits while rows join and leave, else why not.

    Rows of different lengths (including a one-token prompt, the shortest there
    is) join a running batch at different steps, two of them in one ragged
    prefill, and one leaves from the middle; every logit vector is compared with
    a full forward over that row's sequence.
    """
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, vocab_size, (n,), generator=g).to(device) for n in (6, 10, 5)]
    ref = [model(s[None], model.init_state(1, device))[0][0] for s in seqs]  # (T, V) each
    live: list[list[int]] = []  # [row, next position to feed]
    checks = []

    def join(*rows: tuple[int, int]):  # (row, prompt length): several at once test the ragged prefill
        logits, part = adapter.prefill([seqs[row][:length].tolist() for row, length in rows])
        adapter.join(part)
        for i, (row, length) in enumerate(rows):
            live.append([row, length])
            checks.append((row, length - 1, logits[i]))

    def step():
        out = adapter.step(torch.stack([seqs[row][pos] for row, pos in live]))
        for i, entry in enumerate(live):
            checks.append((entry[0], entry[1], out[i]))
            entry[1] += 1

    try:
        join((0, 1))
        step(), step()
        join((1, 6), (2, 1))
        step(), step(), step()
        order = [2, 1]  # row 0 leaves; the last row takes its place (as swap_remove_order does)
        adapter.keep(order)
        live[:] = [live[i] for i in order]
        step()
        adapter.keep([])
    except Exception as e:  # e.g. states whose shapes differ between rows of different lengths
        return f"{adapter.name} batching failed on rows of different lengths: {type(e).__name__}: {e}"
    for row, pos, logits in checks:
        err = (logits.float() - ref[row][pos].float()).abs().max().item()
        if not err <= atol * max(1.0, ref[row][pos].abs().max().item()):
            return f"{adapter.name} batching differs from the model's own forward by {err:.2e} (row {row}, pos {pos})"
    return None
