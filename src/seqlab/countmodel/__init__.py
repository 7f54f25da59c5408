"""A long-range count model mixed with the network's prediction.

Why: a network sees a bounded context (a window, or what fits in its state),
while text repeats itself far beyond it — names, boilerplate, whole lines.
Compressors (xz, PPM) win there by remembering everything. This module keeps
hashed n-gram counts (orders 1..24) of the run's training split plus the text
scored so far, blends the orders by Witten-Bell-style interpolation (short
orders first), and mixes a few of these blends (up to orders 2, 4 and 24 by
default) with the network's distribution geometrically. A match expert adds
what xz's long matches give: the usual continuation of the longest context seen
before among orders 32..1024, which on boilerplate-heavy text (HTML, source) is
right more than 99% of the time once the match is a few hundred tokens long.
One more blend (up to the longest expert order) counts the text scored so far
alone: where a file's style differs from the training split's (its own names,
its indentation), the training split's far larger counts outweigh the file's own
in the other blends (it took 2-3% off eval's mixed bits per byte on the held-out
splits of tinyshakespeare and C headers, 2-19% off single 100 KB texts).
The mixing weights adapt online to the text being scored: one set per
confidence bucket (the longest order that has seen the context), updated after
every chunk of 256 tokens from the chunk's own log loss. One session carries
counts and weights across the texts it scores, so a held-out set of many files
reads as one stream.

Everything is causal: the prediction for a token uses only the training split
and the tokens before it, so bits per byte stay an honest compression measure.
"""

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..config import CountModelConfig
from ..errors import SeqlabError

_MUL = np.uint64(0x9E3779B97F4A7C15)
HISTORY_FILE = "history.npy"
DIRECTORY_FROM = 1 << 20  # contexts: a table this large is searched through a directory (CountTable)


_INV = np.uint64(pow(int(_MUL), -1, 1 << 64))


@functools.lru_cache(maxsize=4)
def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**n modulo 2**64."""
    out = np.full(n + 1, base, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(out, dtype=np.uint64)


def context_hashes(tokens: np.ndarray, orders) -> np.ndarray:
    """(n, len(orders)): column j holds the 48-bit id of tokens[i-k:i], k = orders[j], for every position i
    (short contexts at the start hash what exists).

    The hash of the k tokens before i is sum_j (tokens[i-j] + 1) * MUL**(k-j), j = 1..k, modulo 2**64:
    a difference of prefix sums, so any order costs O(n) however long. The id tags it with k's place
    in `orders` (see _context_id).
    """
    n = len(tokens)
    prefix, mul, inv = _prefix_sums(tokens, max(orders))
    with np.errstate(over="ignore"):
        positions = np.arange(n)
        columns = []
        for index, k in enumerate(orders):
            window = prefix[:n] - prefix[np.maximum(positions - k, 0)]  # sum of t[m] * MUL**m, m in [i-k, i)
            scale = np.where(positions <= k, mul[np.maximum(k - positions, 0)], inv[np.maximum(positions - k, 0)])
            columns.append(_context_id(_finalise(window * scale), index, len(orders)))
    return np.stack(columns, axis=1)


def _prefix_sums(tokens: np.ndarray, longest: int):
    """(prefix, mul, inv): prefix[i] = sum_m (tokens[m] + 1) * MUL**m over m < i, modulo 2**64, and the powers
    of MUL (up to n + longest) and of its inverse that make the difference of two prefixes a context's hash."""
    n = len(tokens)
    mul, inv = _powers(int(_MUL), n + longest), _powers(int(_INV), n)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum((tokens.astype(np.uint64) + np.uint64(1)) * mul[:n], out=prefix[1:])
    return prefix, mul, inv


def context_hashes_at(before: np.ndarray, orders) -> np.ndarray:
    """context_hashes' rows (n, len(orders)) for n positions, from the tokens before each alone.

    before (n, max(orders)): before[:, j] is the token j + 1 places back, -1 where the text has none.
    """
    t = (before.astype(np.int64) + 1).astype(np.uint64)  # -1 (no token) becomes 0, as context_hashes pads
    width = t.shape[1]
    mul, inv = _powers(int(_MUL), width), _powers(int(_INV), width)
    with np.errstate(over="ignore"):
        sums = np.cumsum(t * inv[1:], axis=1, dtype=np.uint64)  # sum_j t[j] * MUL**-j
        lengths = np.asarray(orders)
        return _context_id(_finalise(sums[:, lengths - 1] * mul[lengths]), np.arange(len(orders), dtype=np.uint64),
                           len(orders))


def _context_id(z: np.ndarray, index, n_orders: int) -> np.ndarray:
    """48 bits (the low 16 of a key hold the next token): the order's index on top, so the orders can share
    one table and no two orders' contexts ever meet, then as many high bits of the hash as fit. In place."""
    bits = np.uint64(max(n_orders - 1, 1).bit_length())
    z >>= np.uint64(16) + bits
    z |= np.asarray(index, dtype=np.uint64) << (np.uint64(48) - bits)
    return z


def _finalise(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches the high bits we keep. In place; scratch has z's shape."""
    scratch = np.empty_like(z) if scratch is None else scratch
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(z, np.uint64(shift), out=scratch)
        z ^= scratch
        z *= np.uint64(multiplier)
    np.right_shift(z, np.uint64(31), out=scratch)
    z ^= scratch
    return z


class CountTable:
    """(context, next token) counts, n-gram statistics of every order at once, grouped by context.

    Finding a context in a large table is a directory lookup on its leading bits, then a binary search
    of fixed depth within its bucket: for 100 KB of text, 0.2 s against 1.0 s for numpy's searchsorted
    over the ten million keys of a 1M-token history. A small table (the text scored so far) is searched
    by searchsorted, which is faster there (38 against 127 us for 2,500 queries of 3,000 contexts).
    """

    def __init__(self, contexts: np.ndarray, bounds: np.ndarray, tokens: np.ndarray, counts: np.ndarray):
        """contexts: sorted, distinct; context i's entries (next token, count) are tokens[j], counts[j] for
        j in bounds[i] .. bounds[i + 1] - 1."""
        index = np.int32 if len(tokens) < 2**30 else np.int64  # half the memory; find's lo + hi fits
        self.contexts, self.bounds, self.tokens, self.counts = contexts, bounds.astype(index), tokens, counts
        self.directory = None
        if len(self.contexts) >= DIRECTORY_FROM:
            bits = max(len(self.contexts).bit_length() - 2, 1)  # a bucket per 2 to 4 contexts
            self.shift = np.uint64(48 - bits)  # context ids have 48 bits (_context_id)
            per_bucket = np.bincount((self.contexts >> self.shift).astype(np.int64), minlength=1 << bits)
            self.directory = np.concatenate([[0], np.cumsum(per_bucket)]).astype(index)
            self.depth = int(per_bucket.max()).bit_length()  # binary search steps that settle the fullest bucket

    @classmethod
    def from_keys(cls, keys: np.ndarray, counts: np.ndarray) -> "CountTable":
        """keys: sorted, distinct (context << 16 | next token); counts: theirs."""
        context = keys >> np.uint64(16)
        starts = _run_starts(context)
        return cls(context[starts], np.append(starts, len(keys)), (keys & np.uint64(0xFFFF)).astype(np.uint16),
                   counts)

    @classmethod
    def build(cls, context: np.ndarray, nxt: np.ndarray) -> "CountTable":
        return cls.from_keys(*_count(context, nxt))

    def keys(self) -> np.ndarray:
        return (np.repeat(self.contexts, np.diff(self.bounds)) << np.uint64(16)) | self.tokens.astype(np.uint64)

    @classmethod
    def merge(cls, a: "CountTable", b: "CountTable") -> "CountTable":
        return cls.from_keys(*_sum_by_key(np.concatenate([a.keys(), b.keys()]), np.concatenate([a.counts, b.counts])))

    def find(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first entry, number of entries) of each query context; 0 entries where it was never seen."""
        if not len(self.contexts):
            return np.zeros(len(context), dtype=np.int64), np.zeros(len(context), dtype=np.int64)
        at = self._candidate(context)
        found = self.contexts[at] == context
        return self.bounds[at], np.where(found, self.bounds[at + 1] - self.bounds[at], 0)

    def _candidate(self, context: np.ndarray) -> np.ndarray:
        """Per query, the only stored context that can equal it: the first >= it (the last, past the end)."""
        last = len(self.contexts) - 1
        if self.directory is None:
            return np.minimum(np.searchsorted(self.contexts, context), last)
        bucket = (context >> self.shift).astype(np.int64)
        lo, hi = self.directory[bucket], self.directory[bucket + 1]
        for _ in range(self.depth):
            mid = (lo + hi) >> 1
            searching = lo < hi
            less = self.contexts[np.minimum(mid, last)] < context
            lo = np.where(searching & less, mid + 1, lo)
            hi = np.where(searching & ~less, mid, hi)
        return np.minimum(lo, last)

    def lookup(self, context: np.ndarray):
        """(rows, next tokens, counts) of every entry whose context is one of the queries, by row."""
        start, span = self.find(context)
        idx = _ranges(start, span)
        return np.repeat(np.arange(len(context)), span), self.tokens[idx].astype(np.int64), self.counts[idx]


def _history_table(history: np.ndarray, orders: list[int]) -> CountTable:
    """The counts of every order over the training history, as one table.

    The same counts as CountTable.build over context_hashes' columns, order by order in two reused
    buffers: building from fresh arrays spent most of its time in page faults (12 s for 8M tokens).
    An order's index tops its keys, so the orders' tables laid end to end are one sorted table: a query
    of every order then costs one lookup.
    """
    n = len(history)
    prefix, _, inv = _prefix_sums(history, max(orders))
    nxt = history.astype(np.uint64)
    buffer, scratch = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    parts = [_runs(buffer[:0])]  # (distinct keys, counts) of each order; an empty history makes an empty table
    for index, k in enumerate(orders):
        if k >= n:
            continue
        keys, tmp = buffer[: n - k], scratch[: n - k]
        np.subtract(prefix[k:n], prefix[: n - k], out=keys)  # the k tokens before position i >= k: as context_hashes
        keys *= inv[: n - k]
        _context_id(_finalise(keys, tmp), index, len(orders))
        keys <<= np.uint64(16)
        keys |= nxt[k:]
        keys.sort()
        parts.append(_runs(keys))
    return CountTable.from_keys(np.concatenate([keys for keys, _ in parts]), np.concatenate([c for _, c in parts]))


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values, how often each occurs) of a sorted array."""
    starts = _run_starts(keys)
    return keys[starts], np.diff(starts, append=len(keys)).astype(np.float32)


def _count(context: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys context << 16 | next token, their counts) of (context, next token) pairs."""
    keys = (context << np.uint64(16)) | nxt.astype(np.uint64)
    keys.sort()
    return _runs(keys)


def _sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted distinct keys, each one's counts summed)."""
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = _run_starts(keys)
    return keys[starts], np.add.reduceat(counts, starts)


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in a sorted array."""
    return np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]])) if len(values) else np.zeros(0, int)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """starts[0] .. starts[0] + lengths[0] - 1, then the same for each of the others, end to end."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)


def continuations(tables: list[CountTable], context: np.ndarray):
    """What followed each query context, summed over the tables: (number of distinct next tokens per
    query, those tokens, their counts), each query's laid end to end in query order."""
    return _summed([t.lookup(context) for t in tables], len(context))


def _summed(found: list[tuple], n: int):
    """continuations from each table's lookup (rows, tokens, counts) of the same n queries."""
    if not found:  # the text's own counts before any of it was scored
        return np.zeros(n, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    rows, tokens, counts = (np.concatenate(part) for part in zip(*found))
    if len(found) > 1:  # a token seen in several tables is one continuation
        key, counts = _sum_by_key((rows << 16) | tokens, counts)
        rows, tokens = key >> 16, key & 0xFFFF
        kept = counts > 0  # a table of negative counts takes some away
        rows, tokens, counts = rows[kept], tokens[kept], counts[kept]
    return np.bincount(rows, minlength=n), tokens, counts


class RecentCounts:
    """Counts of the text scored so far, as log-structured levels: adding a chunk costs O(log n) merges."""

    def __init__(self):
        self.levels: list[CountTable] = []
        self.sizes: list[int] = []

    def add(self, context: np.ndarray, nxt: np.ndarray) -> None:
        self.levels.append(CountTable.build(context, nxt))
        self.sizes.append(len(nxt))
        while len(self.sizes) > 1 and self.sizes[-2] <= self.sizes[-1]:
            top, size = self.levels.pop(), self.sizes.pop()
            self.levels[-1] = CountTable.merge(self.levels[-1], top)
            self.sizes[-1] += size


def check(config: CountModelConfig) -> None:
    """Refuse a count-model config the blend and buckets cannot work with, in one line."""
    orders, match = list(config.orders), list(config.match_orders)
    if not orders or orders != sorted(set(orders)) or orders[0] < 1:
        raise SeqlabError(f"counts.orders must be distinct positive numbers in increasing order, got {orders}")
    if not config.experts or not set(config.experts) <= set(orders):
        raise SeqlabError(f"counts.experts must be some of counts.orders {orders}, got {config.experts}")
    if match != sorted(set(match)) or (match and match[0] <= orders[-1]):
        raise SeqlabError(f"counts.match_orders must increase and exceed the longest order {orders[-1]}, got {match}")
    if not 0 < config.match_confidence < 1:
        raise SeqlabError(f"counts.match_confidence must lie strictly between 0 and 1, got {config.match_confidence}")


class CountModel:
    def __init__(self, history: np.ndarray, vocab_size: int, config: CountModelConfig):
        check(config)
        self.config = config
        self.vocab = vocab_size
        self.orders = list(config.orders) + list(config.match_orders)  # every order that keeps counts
        self.table = _history_table(np.asarray(history)[-self.config.max_history :], self.orders)

    def session(self, device) -> "CountSession":
        return CountSession(self, device)


class CountSession:
    """One scoring pass over a sequence of texts, in order.

    What was scored (its counts) and the mixing weights carry from one text to the next, as a
    compressor's state carries through a file: a corpus of many small files is scored as one stream.
    """

    def __init__(self, model: CountModel, device):
        self.model = model
        self.recent = RecentCounts()  # every order's, as the model's table
        self.mixer = OnlineMixer(model.config, device)

    def count(self, positions: np.ndarray, contexts: np.ndarray, tokens: np.ndarray) -> None:
        """Count tokens at `positions` of a text after their contexts (n, orders) as seen text."""
        keep = positions[:, None] >= np.asarray(self.model.orders)  # contexts that run off the text's start don't count
        if keep.any():
            self.recent.add(contexts[keep], np.broadcast_to(tokens[:, None], keep.shape)[keep])

    def reader(self, tokens: np.ndarray, n_context: int) -> "CountReader":
        return CountReader(self, tokens, n_context)

    def mix(self, scored, tokens: np.ndarray, n_context: int):
        """Wrap scoring.score_logits' stream for one text: yield (first, mixed log_probs, targets, network log_probs).

        The network's windows are regrouped into chunks of `config.chunk` tokens: counts and mixing
        weights are updated after each chunk, whatever the architecture's window size.
        """
        chunk = self.model.config.chunk
        reader = self.reader(tokens, n_context)
        pending: list = []
        for first, net_logp, targets in scored:
            for offset in range(0, len(targets), chunk):
                pending.append((first + offset, net_logp[offset : offset + chunk], targets[offset : offset + chunk]))
                if sum(len(t) for _, _, t in pending) >= chunk:
                    yield self._mix_chunk(reader, pending)
                    pending = []
        if pending:
            yield self._mix_chunk(reader, pending)

    def _mix_chunk(self, reader: "CountReader", pending: list):
        first = pending[0][0]
        net_logp = torch.cat([p[1] for p in pending])
        targets = torch.cat([p[2] for p in pending])
        stop = first + len(targets)
        experts = reader.distributions(first, stop)
        logp = self.mixer.mix(net_logp, experts)
        self.mixer.update(logp, net_logp, experts, targets)
        reader.advance(stop)
        return first, logp, targets, net_logp


class CountReader:
    """Reads one text left to right: distributions for the next chunk, then `advance` past it."""

    def __init__(self, session: CountSession, tokens: np.ndarray, n_context: int):
        self.session, self.tokens = session, tokens
        self.contexts = context_hashes(tokens, session.model.orders)  # (n, orders)
        self.seen = n_context  # tokens before this are context only (already in the training counts)

    def distributions(self, start: int, stop: int) -> "Experts":
        """The count experts for positions start..stop-1.

        The orders are blended by interpolation, shortest first; expert e is the blend up to
        order `config.experts[e]`. The bucket is how many orders had seen the context.
        """
        return blend_counts(self.session.model, self.session.recent.levels, self.contexts[start:stop])

    def advance(self, stop: int) -> None:
        """Count tokens up to `stop` as seen text."""
        if stop > self.seen:
            new = slice(self.seen, stop)
            self.session.count(np.arange(self.seen, stop), self.contexts[new], self.tokens[new])
        self.seen = max(self.seen, stop)


@dataclass
class Experts:
    """The count experts' log-probabilities for n positions, kept sparse: a long context has seen one or
    two next tokens, so each expert's distribution is a share every token gets plus a few seen tokens'
    counts. log p_e(v) = base[:, e] + the bonus of entry (row, v) where there is one, base[:, e] elsewhere.
    """

    base: np.ndarray  # (n, E): log-probability of a token with no entry
    row: np.ndarray  # (m,) entries, each (row, token) once
    token: np.ndarray  # (m,)
    bonus: np.ndarray  # (m, E): log p_e(token) - base[row, e]
    bucket: np.ndarray  # (n,): the longest order that had seen the context, the mixer's weight row

    def dense(self, vocab: int) -> np.ndarray:
        """The log-probabilities (n, E, V) in full."""
        out = np.repeat(self.base[:, :, None], vocab, axis=2)
        out[self.row, :, self.token] += self.bonus
        return out

    @staticmethod
    def concat(parts: list["Experts"]) -> "Experts":
        offsets = np.cumsum([0] + [len(p.base) for p in parts[:-1]])
        return Experts(np.concatenate([p.base for p in parts]),
                       np.concatenate([p.row + o for p, o in zip(parts, offsets)]),
                       np.concatenate([p.token for p in parts]), np.concatenate([p.bonus for p in parts]),
                       np.concatenate([p.bucket for p in parts]))


def blend_counts(model: CountModel, recent: list[CountTable], contexts: np.ndarray) -> Experts:
    """The count experts for n positions, from their context ids (n, orders): the blends of the training
    counts and `recent` (the text's own counts, a list of tables) together, the match expert, then the
    blends of `recent` alone. The bucket is the longest order whose counts, training or recent, had
    seen the context (0 for none, counting the blended orders, then the match orders).
    """
    c, vocab = model.config, model.vocab
    n, n_orders = contexts.shape
    n_blended = len(c.orders)
    # the text's own counts alone, as well: its own style, which the training split's many more counts outweigh
    own_experts, tables = _own_experts(c), [model.table] + recent
    (types, total, row, order, tokens, counts), *own = _slots(contexts[:, :n_blended], tables,
                                                              *([recent] if own_experts else []))
    types, total = (np.concatenate([a, np.zeros((n, n_orders - n_blended), a.dtype)], axis=1) for a in (types, total))
    # a context never seen at the longest blended order was never seen at a longer one either (it ends
    # every longer one): the match orders are looked up only where it was (rarely, in fresh text)
    rows = np.flatnonzero(total[:, n_blended - 1] > 0) if c.match_orders else []
    if len(rows):
        (m_types, m_total, m_row, m_order, m_tokens, m_counts), = _slots(contexts[rows, n_blended:], tables)
        types[rows, n_blended:], total[rows, n_blended:] = m_types, m_total
        row, order = np.concatenate([row, rows[m_row]]), np.concatenate([order, m_order + n_blended])
        tokens, counts = np.concatenate([tokens, m_tokens]), np.concatenate([counts, m_counts])
    seen = total > 0
    longest = n_orders - 1 - seen[:, ::-1].argmax(1)  # the longest order that saw the context
    bucket = np.where(seen.any(1), longest + 1, 0)
    # the experts' entries: each (position, token) that any order saw, once
    key = row * vocab + tokens
    own_keys = [o_row * vocab + o_tokens for _, _, o_row, _, o_tokens, _ in own]
    mark = np.zeros(n * vocab, dtype=bool)
    for k in [key] + own_keys:
        mark[k] = True
    distinct = np.flatnonzero(mark)
    slot_of = np.empty(n * vocab, dtype=np.int64)
    slot_of[distinct] = np.arange(len(distinct))
    erow, etoken = np.divmod(distinct, vocab)
    base, bonus = _blends(c.orders, c.experts, vocab, total, _escape(c, types), erow, row, order, slot_of[key], counts)
    if c.match_orders:
        usual = (order == longest[row]) & (bucket[row] > len(c.orders))
        predicted = _most_counted(n, row[usual], tokens[usual], counts[usual])
        mbase, mbonus = _match_expert(predicted, slot_of, vocab, c.match_confidence, len(distinct))
        base, bonus = np.column_stack([base, mbase]), np.column_stack([bonus, mbonus])
    for (o_types, o_total, o_row, o_order, _, o_counts), o_key in zip(own, own_keys):
        obase, obonus = _blends(c.orders, own_experts, vocab, o_total, _escape(c, o_types), erow, o_row, o_order,
                                slot_of[o_key], o_counts)
        base, bonus = np.column_stack([base, obase]), np.column_stack([bonus, obonus])
    return Experts(base.astype(np.float32), erow, etoken, bonus.astype(np.float32), bucket)


def _own_experts(c: CountModelConfig) -> list[int]:
    """The orders of the blends of the text's own counts alone."""
    return [max(c.experts)] if c.recent_expert else []


def _escape(c: CountModelConfig, types: np.ndarray) -> np.ndarray:
    return c.escape_per_type * types + c.escape_base


def _slots(contexts: np.ndarray, *groups: list[CountTable]) -> list[tuple]:
    """What followed each context of contexts (n, k), summed over each group of tables: distinct next
    tokens (n, k), total counts (n, k), and the entries (row, column, token, count) of every (row, column).
    A table in several groups is looked up once."""
    n, k = contexts.shape
    unique, inverse = np.unique(contexts.ravel(), return_inverse=True)  # short contexts recur: look each up once
    tables = {id(t): t for group in groups for t in group}
    found = {key: t.lookup(unique) for key, t in tables.items()}
    out = []
    for group in groups:
        types, tokens, counts = _summed([found[id(t)] for t in group], len(unique))
        total = np.bincount(np.repeat(np.arange(len(unique)), types), weights=counts, minlength=len(unique))
        row, column = np.divmod(np.repeat(np.arange(n * k), types[inverse]), k)
        entry = _ranges((np.cumsum(types) - types)[inverse], types[inverse])
        out.append((types[inverse].reshape(n, k), total[inverse].reshape(n, k), row, column, tokens[entry],
                    counts[entry]))
    return out


def _blends(orders: list[int], experts: list[int], vocab: int, total, escape, erow, row, order, slot, counts):
    """(base (n, E), bonus (m, E)) of the Witten-Bell blends up to each order in `experts`:
    blend_k = (counts_k + escape_k blend_{k-1}) / (total_k + escape_k), from the uniform distribution up.

    Written blend_k = a_k counts_k + b_k blend_{k-1}, a blend is a share for every token (the uniform
    distribution scaled by the b's) plus each (row, order, token, count) entry scaled by its order's a
    and the b's of the orders above it: each entry is added once, to its experts' entry `slot`.
    """
    n = len(total)
    a = 1 / (total + escape)
    b = escape * a
    share = np.full(n, 1.0 / vocab)  # what every token gets
    extra = np.zeros(len(erow))  # what each entry's token gets on top
    bases, bonuses, lo = [], [], 0
    for k in sorted(experts):
        hi = orders.index(k) + 1  # orders lo..hi-1 go on top of the blend so far
        scale = np.cumprod(b[:, lo:hi][:, ::-1], axis=1)[:, ::-1]  # scale[:, i - lo] = b_i ... b_{hi-1}
        above = np.concatenate([scale[:, 1:], np.ones((n, 1))], axis=1)
        share *= scale[:, 0]
        extra *= scale[erow, 0]
        new = (order >= lo) & (order < hi)
        r, o = row[new], order[new]
        extra += np.bincount(slot[new], weights=a[r, o] * above[r, o - lo] * counts[new], minlength=len(erow))
        bases.append(np.log(share))
        bonuses.append(np.log1p((extra / share[erow]).astype(np.float32)))  # float32 logs are twice as fast
        lo = hi
    return np.stack(bases, axis=1), np.stack(bonuses, axis=1)


def _most_counted(n: int, row: np.ndarray, tokens: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row 0..n-1, the token with the highest count among its entries (the lowest such token on a
    tie, as argmax), -1 where the row has none."""
    order = np.lexsort((tokens, -counts, row))
    row, tokens = row[order], tokens[order]
    first = _run_starts(row)
    out = np.full(n, -1, dtype=np.int64)
    out[row[first]] = tokens[first]
    return out


def _match_expert(predicted: np.ndarray, slot_of: np.ndarray, vocab: int, confidence: float, m: int):
    """(base (n,), bonus (m,)): `confidence` on the predicted token, the rest spread evenly; uniform
    where nothing is predicted (-1). Under geometric mixing a uniform expert changes nothing."""
    rows = np.flatnonzero(predicted >= 0)
    base = np.where(predicted >= 0, np.log((1 - confidence) / (vocab - 1)), -np.log(vocab))
    bonus = np.zeros(m)
    bonus[slot_of[rows * vocab + predicted[rows]]] = np.log(confidence) - base[rows]
    return base, bonus


class StepReader:
    """CountReader's incremental twin: n texts learnt one token at a time (a decoder's view of them).

    Each text starts from `context` (tokens already in the training counts, as CountReader's
    n_context). `distributions(rows)` blends the counts for the next position of the given texts,
    hashing its contexts from the last max(orders) tokens (context_hashes' very values, so the counts
    are eval's); `append(tokens)` learns those positions' tokens; `advance(row)` counts what a text
    appended since its last advance as seen text, as CountReader.advance does.
    """

    def __init__(self, session: CountSession, n_texts: int, context: np.ndarray):
        self.session, orders = session, session.model.orders
        self.before = np.full((n_texts, max(orders)), -1, dtype=np.int64)  # (n, K): most recent token first
        for token in context:
            self._shift_in(np.arange(n_texts), np.full(n_texts, token))
        self.position = np.full(n_texts, len(context))  # index of each text's next token
        self.rows = np.zeros(0, dtype=np.int64)  # the texts last given to `distributions`
        self.contexts = np.zeros((0, len(orders)), dtype=np.uint64)  # and their next positions' context ids
        self.unseen = [[] for _ in range(n_texts)]  # per text: (position, context ids (orders,), token) not yet counted

    def _shift_in(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        self.before[rows, 1:] = self.before[rows, :-1]
        self.before[rows, 0] = tokens

    def distributions(self, rows: np.ndarray) -> "Experts":
        """The count experts for the next token of texts `rows`."""
        model = self.session.model
        self.contexts = context_hashes_at(self.before[rows], model.orders)
        self.rows = rows
        return blend_counts(model, self.session.recent.levels, self.contexts)

    def append(self, tokens: np.ndarray) -> None:
        """Learn the next token of the texts last given to `distributions`."""
        for i, row in enumerate(self.rows):
            self.unseen[row].append((int(self.position[row]), self.contexts[i], int(tokens[i])))
        self._shift_in(self.rows, tokens)
        self.position[self.rows] += 1

    def advance(self, row: int) -> None:
        """Count the tokens text `row` appended since its last advance as seen text."""
        if not self.unseen[row]:
            return
        positions, contexts, tokens = zip(*self.unseen[row])
        self.session.count(np.array(positions), np.stack(contexts), np.array(tokens, dtype=np.int64))
        self.unseen[row] = []


class OnlineMixer:
    """Geometric mixing: log p = w_0 * log p_net + sum_e w_e * log p_expert_e - log Z, one weight row per bucket.

    The weights start at priors (the network at w_network, the longest-order expert rising from
    w_counts to w_counts_longest with the bucket, the shorter experts at 0, the match expert at
    w_match where a match order was seen, the text's own blends at w_recent) and follow the
    gradient of the log loss of each chunk once it has been scored.
    """

    def __init__(self, config: CountModelConfig, device):
        n_blended, n_match = len(config.orders) + 1, len(config.match_orders)
        longest, match = len(config.experts), len(config.experts) + 1  # their columns (the network's is 0)
        n_own = len(_own_experts(config))
        n_experts = len(config.experts) + (1 if n_match else 0) + n_own
        weights = torch.zeros(n_blended + n_match, 1 + n_experts)
        weights[:, 0] = config.w_network
        weights[:n_blended, longest] = torch.linspace(config.w_counts, config.w_counts_longest, n_blended)
        weights[n_blended:, longest] = config.w_counts_longest
        if n_match:
            weights[n_blended:, match] = config.w_match
        weights[:, 1 + n_experts - n_own :] = config.w_recent
        self.weights = weights.to(device)
        self.lr = config.learning_rate
        # RMSprop: the experts' log-probabilities differ in scale (a sharp match expert's by ~10 nats),
        # so each weight's step is scaled by its own recent gradient size
        self.mean_square = torch.zeros_like(self.weights)

    def mix(self, net_logp: torch.Tensor, experts: Experts) -> torch.Tensor:
        """Mixed log-probabilities (n, V). The experts' bases are constant along each row, which the
        softmax takes out: only the network and the entries' bonuses are weighed."""
        w = self.weights[torch.from_numpy(experts.bucket).to(net_logp.device)]  # (n, 1 + E)
        row, flat, bonus = self._entries(experts, net_logp)
        logits = net_logp * w[:, :1]
        logits.view(-1)[flat] += (bonus * w[row, 1:]).sum(1)  # each (row, token) is one entry
        return torch.log_softmax(logits, dim=-1)

    def update(self, logp: torch.Tensor, net_logp: torch.Tensor, experts: Experts, targets: torch.Tensor):
        """One gradient step on the chunk's log loss (the chunk is already scored: causal).

        The gradient of a weight is its feature's expected value under the mix less its value at the
        target; an expert's base cancels out of that, leaving the bonuses.
        """
        n, V = logp.shape
        row, flat, bonus = self._entries(experts, logp)
        bucket = torch.from_numpy(experts.bucket).to(logp.device)
        p = logp.exp()
        grad = torch.zeros_like(self.weights)
        grad[:, 0].index_add_(0, bucket, (p * net_logp).sum(1) - net_logp.gather(1, targets[:, None])[:, 0])
        at_target = (flat == row * V + targets[row]).to(p.dtype)
        grad[:, 1:].index_add_(0, bucket[row], (p.view(-1)[flat] - at_target)[:, None] * bonus)
        count = torch.bincount(bucket, minlength=len(self.weights)).clamp_min(1).to(grad.dtype)
        grad /= count[:, None]
        self.mean_square.mul_(0.9).add_(0.1 * grad * grad)
        self.weights -= self.lr * grad / (self.mean_square.sqrt() + 1e-3)

    @staticmethod
    def _entries(experts: Experts, like: torch.Tensor):
        """The experts' entries as tensors beside `like` (n, V): rows, flat indices into it, bonuses (m, E)."""
        row = torch.from_numpy(experts.row).to(like.device)
        flat = row * like.shape[1] + torch.from_numpy(experts.token).to(like.device)
        return row, flat, torch.from_numpy(experts.bonus).to(like.device)


def describe(config: CountModelConfig) -> str:
    match = f", matches of {config.match_orders[0]}-{config.match_orders[-1]}" if config.match_orders else ""
    own = ", and over that text alone" if config.recent_expert else ""
    return (f"mixed with a count model (orders {','.join(map(str, config.orders))}{match}) over the training split "
            f"and the text before each token{own}, weights adapted online")


def usable(config: CountModelConfig, vocab_size: int) -> bool:
    return config.enabled and vocab_size <= config.max_vocab


def save_history(run_dir, train_tokens: np.ndarray, config: CountModelConfig) -> None:
    """Keep the training tokens the count model needs, so the run stands alone."""
    from ..checkpoint import atomic_write_bytes
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(train_tokens[-config.max_history :]), allow_pickle=False)
    atomic_write_bytes(run_dir / HISTORY_FILE, buf.getvalue())


def load_count_model(run_dir, vocab_size: int, config: CountModelConfig) -> "CountModel | None":
    path = run_dir / HISTORY_FILE
    if not usable(config, vocab_size) or not path.exists():
        return None
    return CountModel(np.load(path, allow_pickle=False), vocab_size, config)
