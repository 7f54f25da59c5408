"""Numba kernels of the count tables' lookups (tables.py): one compiled loop where numpy took a dozen calls.

Compress's lockstep rows look up a few thousand contexts a step in every table; numpy's binary search over all of
them at once costs a dozen calls a step of the search, and merging the tables' entries cost a sort of them all.
These loops give the very same integers and sums, so every figure and every compressed file stays what it was
(tests/test_rowkernels.py holds each to its numpy twin). Imported by tables.py where used, not at its import:
importing numba costs every verb's start ~0.3 s. They release the GIL (nogil), as numpy's loops do: compress's
network worker runs its Python between torch's kernels beside them.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def directory_search(contexts, directory, shift, depth, query):
    """CountTable._candidate for a table with a directory: per query, the only stored context that can equal it (the
    first >= it within its bucket of the directory; the last, past the end), by `depth` steps of binary search in
    the bucket: tables.search's answer, a query at a time, without its arrays."""
    last = len(contexts) - 1
    out = np.empty(len(query), dtype=np.int64)
    for q in range(len(query)):
        context = query[q]
        bucket = np.int64(context >> shift)
        lo, hi = np.int64(directory[bucket]), np.int64(directory[bucket + 1])
        for _ in range(depth):
            if lo >= hi:  # settled: the rest of tables.search's steps change nothing
                break
            mid = (lo + hi) >> 1
            if contexts[min(mid, last)] < context:
                lo = mid + 1
            else:
                hi = mid
        out[q] = min(lo, last)
    return out


@njit(cache=True, nogil=True)
def merge_sorted(keys, counts, offsets):
    """tables._sum_by_key of parts laid end to end (keys[offsets[p]:offsets[p + 1]]), each sorted and distinct (a
    table's lookup, row << 16 | token; a table's keys): (the sorted distinct keys, their counts summed in part
    order, as _sum_by_key's stable sort sums them), by merging the parts instead of sorting them all again."""
    parts = len(offsets) - 1
    head = offsets[:-1].copy()
    out_keys, out_counts = np.empty_like(keys), np.empty_like(counts)
    n = 0
    while True:
        best = -1  # the first part whose head holds the smallest key
        for p in range(parts):
            if head[p] < offsets[p + 1] and (best < 0 or keys[head[p]] < keys[head[best]]):
                best = p
        if best < 0:
            return out_keys[:n], out_counts[:n]
        smallest, total = keys[head[best]], counts[head[best]]
        head[best] += 1
        for p in range(best + 1, parts):  # the parts before `best` hold larger keys
            if head[p] < offsets[p + 1] and keys[head[p]] == smallest:
                total += counts[head[p]]
                head[p] += 1
        out_keys[n], out_counts[n] = smallest, total
        n += 1


@njit(cache=True, nogil=True)
def blend_shares(blocks, share0, total, escape, erow, row, order, block_of, slot, counts):
    """mixer._blends' floats before its logs, computed as it computes them (the same operations in the same order,
    so the same floats): per block i of orders, the share every token gets (shares[i], (n,)) and each entry's extra
    over it as a ratio (ratios[i], (m,)) = extra / share[erow]. blocks (B, 2): each expert's orders lo..hi-1 on
    top of the blend so far; block_of (orders,): each order's block, -1 for one not blended (a match order)."""
    n, k = total.shape
    n_blocks, m = len(blocks), len(erow)
    a, b = np.empty((n, k)), np.empty((n, k))
    for r in range(n):
        for o in range(k):
            a[r, o] = 1 / (total[r, o] + escape[r, o])
            b[r, o] = escape[r, o] * a[r, o]
    scales, above = np.empty((n_blocks, n)), np.ones((n, k))
    for i in range(n_blocks):
        lo, hi = blocks[i, 0], blocks[i, 1]
        for r in range(n):
            scale = b[r, hi - 1]  # numpy's cumprod of the block's b's, from its last order down
            for o in range(hi - 2, lo - 1, -1):
                above[r, o] = scale
                scale = scale * b[r, o]
            scales[i, r] = scale
    sums = np.zeros((n_blocks, m))
    for e in range(len(row)):  # bincount's order: every entry's weight added in entry order
        i = block_of[order[e]]
        if i >= 0:
            sums[i, slot[e]] += a[row[e], order[e]] * above[row[e], order[e]] * np.float64(counts[e])
    shares, ratios = np.empty((n_blocks, n)), np.empty((n_blocks, m))
    share, extra = np.full(n, share0), np.zeros(m)
    for i in range(n_blocks):
        for r in range(n):
            share[r] *= scales[i, r]
            shares[i, r] = share[r]
        for e in range(m):
            extra[e] = extra[e] * scales[i, erow[e]] + sums[i, e]
            ratios[i, e] = extra[e] / share[erow[e]]
    return shares, ratios


@njit(cache=True, nogil=True)
def spread(types, tokens, counts, inverse):
    """mixer._spread's first part: each unique context's continuations (types (u,), its entries' tokens and counts
    laid end to end) given to every query that has it (inverse (queries,)): the queries' types and totals, and their
    entries (query, token, count), by query. One pass where numpy took a dozen calls."""
    starts = np.zeros(len(types) + 1, dtype=np.int64)
    for u in range(len(types)):
        starts[u + 1] = starts[u] + types[u]
    unique_total = np.zeros(len(types))
    for u in range(len(types)):  # bincount's order: each context's counts added in entry order
        for e in range(starts[u], starts[u + 1]):
            unique_total[u] += counts[e]
    n_entries = 0
    for q in range(len(inverse)):
        n_entries += types[inverse[q]]
    q_types, q_total = np.empty(len(inverse), dtype=types.dtype), np.empty(len(inverse))
    query = np.empty(n_entries, dtype=np.int64)
    q_tokens, q_counts = np.empty(n_entries, dtype=tokens.dtype), np.empty(n_entries, dtype=counts.dtype)
    at = 0
    for q in range(len(inverse)):
        u = inverse[q]
        q_types[q], q_total[q] = types[u], unique_total[u]
        for e in range(starts[u], starts[u + 1]):
            query[at], q_tokens[at], q_counts[at] = q, tokens[e], counts[e]
            at += 1
    return q_types, q_total, query, q_tokens, q_counts


@njit(cache=True, nogil=True)
def entries_of(contexts, bounds, tokens, counts, at, query):
    """CountTable.lookup's answer from each query's candidate `at` (the only stored context that can equal it):
    (rows, next tokens as int64, counts) of every entry of the queries found, by query."""
    n_entries = 0
    for q in range(len(query)):
        if contexts[at[q]] == query[q]:
            n_entries += bounds[at[q] + 1] - bounds[at[q]]
    rows, out_tokens = np.empty(n_entries, dtype=np.int64), np.empty(n_entries, dtype=np.int64)
    out_counts = np.empty(n_entries, dtype=counts.dtype)
    e = 0
    for q in range(len(query)):
        if contexts[at[q]] == query[q]:
            for j in range(bounds[at[q]], bounds[at[q] + 1]):
                rows[e], out_tokens[e], out_counts[e] = q, tokens[j], counts[j]
                e += 1
    return rows, out_tokens, out_counts
