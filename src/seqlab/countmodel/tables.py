"""The count model's memory: hashed contexts and (context, next token) count tables.

Every context of orders 1..1024 becomes a 48-bit id (context_hashes: prefix sums of a
multiplicative hash, so any order costs O(n)); a CountTable holds the counts of
(context, next token) pairs, grouped by context, for a history or for the text scored
so far (RecentCounts). The blends over these counts are mixer.py's.
"""

import functools

import numpy as np

_MUL = np.uint64(0x9E3779B97F4A7C15)
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
    prefix, mul, inv = _prefix_sums(tokens, max(orders))
    positions = np.arange(len(tokens))
    return np.stack([_window_ids(prefix, positions, k, index, len(orders), mul, inv) for index, k in enumerate(orders)],
                    axis=1)


def context_ids(history: np.ndarray, batch: np.ndarray, orders) -> np.ndarray:
    """(rows, width, len(orders)) context ids of every position of every row of batch (rows, width) read after
    `history`: position j's context is history and the row's first j tokens. context_hashes' values, from prefix
    sums over history and each row: O(orders) a position, where context_hashes_at reads every token of the
    longest order's context at every position."""
    orders = np.asarray(orders)
    n_history, (n_rows, width) = len(history), batch.shape
    mul, inv = _powers(int(_MUL), n_history + width + int(orders.max())), _powers(int(_INV), n_history + width)
    prefix = np.empty((n_rows, n_history + width + 1), dtype=np.uint64)  # prefix[:, i]: sum of t[m] * MUL**m, m < i
    with np.errstate(over="ignore"):
        prefix[:, 0] = 0
        np.cumsum((history.astype(np.uint64) + np.uint64(1)) * mul[:n_history], out=prefix[0, 1 : n_history + 1])
        prefix[1:, : n_history + 1] = prefix[0, : n_history + 1]
        np.cumsum((batch.astype(np.uint64) + np.uint64(1)) * mul[n_history : n_history + width], axis=1,
                  out=prefix[:, n_history + 1 :])
        prefix[:, n_history + 1 :] += prefix[:, n_history : n_history + 1]
    end = n_history + np.arange(width)[:, None]  # (width, 1): position j's context is the tokens before end
    return _window_ids(prefix, end, orders, np.arange(len(orders), dtype=np.uint64), len(orders), mul, inv)


def _window_ids(prefix: np.ndarray, end: np.ndarray, k, index, n_orders: int, mul, inv) -> np.ndarray:
    """Context ids of the k tokens before each `end` (short where the text has fewer), from prefix sums
    (prefix[..., i] = sum of (t[m] + 1) * MUL**m, m < i) and the powers of MUL and its inverse; k and index
    (the order's place in `orders`) broadcast against end."""
    with np.errstate(over="ignore"):
        window = prefix[..., end] - prefix[..., np.maximum(end - k, 0)]  # sum of t[m] * MUL**m, m in [end-k, end)
        scale = np.where(end <= k, mul[np.maximum(k - end, 0)], inv[np.maximum(end - k, 0)])
        return _context_id(_finalise(window * scale), index, n_orders)


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


def index_dtype(n_entries: int):
    return np.int32 if n_entries < 2**30 else np.int64  # half the memory; find's lo + hi fits


def directory_bits(n_contexts: int) -> int:
    return max(n_contexts.bit_length() - 2, 1)  # a bucket per 2 to 4 contexts


def directory_shift(n_contexts: int) -> np.uint64:
    return np.uint64(48 - directory_bits(n_contexts))  # context ids have 48 bits (_context_id)


def directory_of(per_bucket: np.ndarray, index=np.int64) -> tuple[np.ndarray, int]:
    """(where each bucket of contexts begins, binary search steps that settle the fullest bucket)."""
    return np.concatenate([[0], np.cumsum(per_bucket)]).astype(index), int(per_bucket.max()).bit_length()


class CountTable:
    """(context, next token) counts, n-gram statistics of every order at once, grouped by context.

    Finding a context in a large table is a directory lookup on its leading bits, then a binary search
    of fixed depth within its bucket: for 100 KB of text, 0.2 s against 1.0 s for numpy's searchsorted
    over the ten million keys of a 1M-token history. A small table (the text scored so far) is searched
    by searchsorted, which is faster there (38 against 127 us for 2,500 queries of 3,000 contexts).
    """

    def __init__(self, contexts: np.ndarray, bounds: np.ndarray, tokens: np.ndarray, counts: np.ndarray,
                 directory: tuple[np.ndarray, int] | None = None):
        """contexts: sorted, distinct; context i's entries (next token, count) are tokens[j], counts[j] for
        j in bounds[i] .. bounds[i + 1] - 1. directory: (directory, depth) as `directory_of` makes them, when
        already known (a table memory-mapped from disk: computing it would read every context)."""
        index = index_dtype(len(tokens))
        self.contexts, self.tokens, self.counts = contexts, tokens, counts
        wide_enough = bounds.dtype in (np.int32, np.int64) and np.iinfo(bounds.dtype).max >= len(tokens)
        self.bounds = bounds if wide_enough else bounds.astype(index)  # a mapped table's stays mapped
        self.directory = None
        if directory is None and len(self.contexts) >= DIRECTORY_FROM:
            per_bucket = np.bincount((self.contexts >> directory_shift(len(self.contexts))).astype(np.int64),
                                     minlength=1 << directory_bits(len(self.contexts)))
            directory = directory_of(per_bucket, index)
        if directory is not None:
            self.directory, self.depth = directory
            self.shift = directory_shift(len(self.contexts))

    @classmethod
    def from_keys(cls, keys: np.ndarray, counts: np.ndarray) -> "CountTable":
        """keys: sorted, distinct (context << 16 | next token); counts: theirs."""
        context = keys >> np.uint64(16)
        starts = _run_starts(context)
        return cls(context[starts], np.append(starts, len(keys)).astype(index_dtype(len(keys))),
                   (keys & np.uint64(0xFFFF)).astype(np.uint16), counts)

    @classmethod
    def build(cls, context: np.ndarray, nxt: np.ndarray) -> "CountTable":
        return cls.from_keys(*_count(context, nxt))

    def keys(self) -> np.ndarray:
        return (np.repeat(self.contexts, np.diff(self.bounds)) << np.uint64(16)) | self.tokens.astype(np.uint64)

    @classmethod
    def merge(cls, a: "CountTable", b: "CountTable") -> "CountTable":
        from .kernels import merge_sorted  # both tables' keys are sorted: merged in one pass, not sorted again

        keys, counts = np.concatenate([a.keys(), b.keys()]), np.concatenate([a.counts, b.counts])
        return cls.from_keys(*merge_sorted(keys, counts, np.array([0, len(a.counts), len(keys)])))

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
        from .kernels import directory_search  # one compiled loop: numpy's search took a dozen calls a step of it

        return directory_search(np.asarray(self.contexts), np.asarray(self.directory), self.shift, self.depth, context)

    def lookup(self, context: np.ndarray):
        """(rows, next tokens, counts) of every entry whose context is one of the queries, by row."""
        if not len(self.contexts):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), self.counts[:0]
        from .kernels import entries_of  # one compiled pass where numpy took ten calls (a step looks up ~25 tables)

        return entries_of(*map(np.asarray, (self.contexts, self.bounds, self.tokens, self.counts)),
                          self._candidate(context), context)


def search(contexts: np.ndarray, context: np.ndarray, lo: np.ndarray, hi: np.ndarray, depth: int) -> np.ndarray:
    """Per query, the first of the sorted contexts >= it within lo..hi - 1 (hi where none is; at most the last), by
    `depth` steps of binary search, every query at once (2**depth >= the widest range)."""
    last = len(contexts) - 1
    for _ in range(depth):
        mid = (lo + hi) >> 1
        searching = lo < hi
        less = contexts[np.minimum(mid, last)] < context
        lo = np.where(searching & less, mid + 1, lo)
        hi = np.where(searching & ~less, mid, hi)
    return np.minimum(lo, last)


def _history_table(history: np.ndarray, orders: list[int]) -> CountTable:
    """The counts of every order over the training history, as one table in memory (store.py builds the
    same table on disk, a run's for good).

    An order's index tops its keys, so the orders' tables laid end to end are one sorted table: a query
    of every order then costs one lookup.
    """
    parts = [_runs(np.zeros(0, dtype=np.uint64))]  # an empty history makes an empty table
    parts += list(history_parts(history, orders))
    return CountTable.from_keys(np.concatenate([keys for keys, _ in parts]), np.concatenate([c for _, c in parts]))


def history_parts(history: np.ndarray, orders: list[int]):
    """Yield (sorted distinct keys, their counts) of each order over the history, in order of `orders`.

    The same counts as CountTable.build over context_hashes' columns, order by order in two reused
    buffers: building from fresh arrays spent most of its time in page faults (12 s for 8M tokens).
    """
    n = len(history)
    prefix, _, inv = _prefix_sums(history, max(orders))
    buffer, scratch = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    for index, k in enumerate(orders):
        if k >= n:
            continue
        keys = _order_keys(history, prefix, inv, k, index, len(orders), buffer[: n - k], scratch[: n - k])
        keys.sort()
        yield _runs(keys)


def order_keys(history: np.ndarray, index: int, k: int, n_orders: int, start: int, stop: int,
               span: int) -> np.ndarray:
    """history_parts' keys of order k (the index-th of n_orders) at positions start..stop-1 (start >= k), unsorted,
    from the tokens history[start - k : stop] alone: a window's hash does not depend on where the text began, so a
    history can be hashed a shard at a time. span (>= stop - start + k): the length of the cached hash powers."""
    window = history[start - k : stop]
    m = len(window)
    mul, inv = _powers(int(_MUL), span), _powers(int(_INV), span)
    prefix = np.zeros(m + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum((window.astype(np.uint64) + np.uint64(1)) * mul[:m], out=prefix[1:])
    # as history_parts, the text's start moved to start - k
    return _order_keys(window, prefix, inv, k, index, n_orders, np.empty(m - k, dtype=np.uint64))


def _order_keys(tokens: np.ndarray, prefix: np.ndarray, inv: np.ndarray, k: int, index: int, n_orders: int,
                out: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """Into out (len(tokens) - k,): the keys (context id << 16 | next token) of order k (the index-th of n_orders)
    at positions k.. of tokens, from their prefix sums (_prefix_sums') and the inverse powers of MUL."""
    n = len(tokens)
    with np.errstate(over="ignore"):
        np.subtract(prefix[k:n], prefix[: n - k], out=out)  # the k tokens before position i >= k: as context_hashes
        out *= inv[: n - k]
        _context_id(_finalise(out, scratch), index, n_orders)
    out <<= np.uint64(16)
    out |= tokens[k:].astype(np.uint64)
    return out


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
    if len(found) > 1:
        return _kept(_merged(found), n)
    rows, tokens, counts = found[0]
    return np.bincount(rows, minlength=n), tokens, counts


def _kept(merged: tuple, n: int) -> tuple:
    """_summed's answer from the merged lookups of several tables: the entries of positive count, per query."""
    rows, tokens, counts = merged
    kept = counts > 0  # a table of negative counts takes some away
    return np.bincount(rows[kept], minlength=n), tokens[kept], counts[kept]


def _merged(found: list[tuple]) -> tuple:
    """Lookups (rows, tokens, counts) of the same queries as one: a token seen in several is one entry, its
    counts summed (whole numbers: exact in any order), by row then token."""
    rows, tokens, counts = (np.concatenate(part) for part in zip(*found))
    if len(found) > 1:  # each lookup is sorted by row then token: merged, not sorted again
        from .kernels import merge_sorted

        key, counts = merge_sorted((rows << 16) | tokens, counts, np.cumsum([0] + [len(f[0]) for f in found]))
        rows, tokens = key >> 16, key & 0xFFFF
    return rows, tokens, counts


class PendingCounts:
    """The text's own tokens read within one chunk, not yet in RecentCounts: each query sees those read before
    its own limit. So a chunk counted every few tokens is blended in one pass, its training counts looked up once.

    contexts (p, orders) and tokens (p,) of the chunk's positions in order; keep (p, orders) marks the
    (position, order) pairs that count (as CountSession.count keeps them).
    """

    def __init__(self, contexts: np.ndarray, tokens: np.ndarray, keep: np.ndarray):
        index, _ = np.nonzero(keep)  # each entry's position in the chunk, in order
        self.contexts, rank = np.unique(contexts[keep], return_inverse=True)
        token = tokens[index].astype(np.int64)
        # entries sorted by (context, token, position); a group is one (context, token), its positions in order
        self.span = np.int64(len(tokens) + 1)
        keys = (rank * 65536 + token) * self.span + index
        keys.sort()
        self.keys = keys
        starts = _run_starts(keys // self.span)
        self.group_key, self.group_start = keys[starts] // self.span * self.span, starts
        self.group_token = self.group_key // self.span % 65536
        # each context's groups: first and how many
        per_context = np.bincount(self.group_key // self.span // 65536, minlength=len(self.contexts))
        self.first_group, self.groups = np.cumsum(per_context) - per_context, per_context

    def table(self) -> CountTable:
        """All of these counts as a table (what RecentCounts.add would build from them)."""
        sizes = np.diff(self.group_start, append=len(self.keys)).astype(np.float32)
        bounds = np.append(self.first_group, len(self.group_start))
        return CountTable(self.contexts, bounds, self.group_token.astype(np.uint16), sizes)

    def lookup(self, context: np.ndarray, limit: np.ndarray):
        """(query, next token, count) of what followed each query context (n,) among the positions before its
        limit (n,), one per (query, token) seen, sorted by query then token."""
        if not len(self.keys):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rank = np.minimum(np.searchsorted(self.contexts, context), len(self.contexts) - 1)
        groups = np.where(self.contexts[rank] == context, self.groups[rank], 0)
        query = np.repeat(np.arange(len(context)), groups)
        group = _ranges(self.first_group[rank], groups)
        counts = np.searchsorted(self.keys, self.group_key[group] + limit[query]) - self.group_start[group]
        seen = counts > 0
        return query[seen], self.group_token[group[seen]], counts[seen].astype(np.float32)


class RecentCounts:
    """Counts of the text scored so far, as log-structured levels: adding a chunk costs O(log n) merges."""

    def __init__(self):
        self.levels: list[CountTable] = []
        self.sizes: list[int] = []

    def add(self, context: np.ndarray, nxt: np.ndarray) -> None:
        self.add_table(CountTable.build(context, nxt), len(nxt))

    def add_table(self, table: CountTable, size: int) -> None:
        """Add counts already made a table (of `size` tokens counted)."""
        self.levels.append(table)
        self.sizes.append(size)
        while len(self.sizes) > 1 and self.sizes[-2] <= self.sizes[-1]:
            top, size = self.levels.pop(), self.sizes.pop()
            self.levels[-1] = CountTable.merge(self.levels[-1], top)
            self.sizes[-1] += size
