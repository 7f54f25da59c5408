"""The count model's numba kernels (countmodel/kernels.py, rowkernels.py) give the numpy path's integers and floats
to the bit, on random inputs: a compressed file decodes only with the very same floats."""

import numpy as np
import pytest

from seqlab.countmodel import tables as count_tables
from seqlab.countmodel.kernels import blend_shares, directory_search, merge_sorted, spread
from seqlab.countmodel.mixer import _blends, _log1p
from seqlab.countmodel.rowkernels import last_word_contexts
from seqlab.countmodel.tables import CountTable, _sum_by_key, search
from seqlab.countmodel.words import word_classes, word_contexts


@pytest.mark.parametrize("width", [0, 1, 5, 57])
def test_last_word_contexts_are_word_contexts_of_the_next_position(width):
    """Texts of letters, spaces and punctuation in runs (words longer than WORD_TOKENS, separators longer than
    SEPARATOR_TOKENS, upper case that folds): the kernel's ids are word_contexts' of the position after each row."""
    token_bytes = [bytes([i]) for i in range(256)] + [b""]
    letter, folded = word_classes(token_bytes)
    rng = np.random.default_rng(width)
    alphabet = np.frombuffer(b"abcXYZ  ;.\n", dtype=np.uint8).astype(np.int64)
    runs = rng.integers(1, 30, (300, width + 1))  # each row a random mix of short and long runs of one kind
    tokens = np.stack([np.repeat(rng.choice(alphabet, len(r)), r)[:width] for r in runs]) if width else \
        np.zeros((300, 0), dtype=np.int64)
    tokens[::7, : width // 2] = rng.choice(alphabet, (len(tokens[::7]), width // 2))  # and some mixed at random
    expected = word_contexts(np.pad(tokens, ((0, 0), (0, 1))), letter, folded)[:, -1]
    assert np.array_equal(last_word_contexts(tokens, letter, folded), expected)
    tail = np.zeros((300, width + 3), dtype=np.int64)  # a view into a wider array (compress's ring of the last tokens)
    tail[:, 3:] = tokens
    assert np.array_equal(last_word_contexts(tail[:, 3:], letter, folded), expected)


def test_the_row_kernels_constants_are_the_count_models():
    """rowkernels.py writes out tables.py's and words.py's constants (numba caches it keyed on its own file alone)."""
    from seqlab.countmodel import rowkernels, words

    assert rowkernels._MUL == count_tables._MUL and rowkernels._PREVIOUS == words._PREVIOUS
    assert (rowkernels.WORD_TOKENS, rowkernels.SEPARATOR_TOKENS, rowkernels.WORD_ORDERS) == \
        (words.WORD_TOKENS, words.SEPARATOR_TOKENS, words.WORD_ORDERS)


def test_directory_search_is_the_tables_search(monkeypatch):
    """Present contexts, absent ones (below, between and above the stored ones) and a bucket of many contexts."""
    monkeypatch.setattr(count_tables, "DIRECTORY_FROM", 0)
    rng = np.random.default_rng(3)
    for size in [1, 2, 37, 5000]:
        ctx = rng.integers(0, 1 << 47, size, dtype=np.int64).astype(np.uint64)
        ctx[: size // 4] = ctx[: size // 4] >> np.uint64(30)  # a crowded bucket: a deep search
        table = CountTable.build(ctx, rng.integers(0, 9, size))
        queries = np.concatenate([ctx[:100], rng.integers(0, 1 << 47, 100).astype(np.uint64),
                                  np.array([0, (1 << 48) - 1], dtype=np.uint64)])
        directory, depth = table.directory, table.depth
        bucket = (queries >> table.shift).astype(np.int64)
        expected = search(table.contexts, queries, directory[bucket], directory[bucket + 1], depth)
        assert np.array_equal(directory_search(table.contexts, directory, table.shift, depth, queries), expected)


@pytest.mark.parametrize("parts", [1, 2, 7])
def test_merge_sorted_sums_the_parts_as_sum_by_key(parts):
    """Lookups of several tables (each sorted and distinct, some empty, their keys overlapping): the merged keys and
    counts are _sum_by_key's of them all."""
    rng = np.random.default_rng(parts)
    pieces = [np.unique(rng.integers(0, 3000 if p % 3 else 1, rng.integers(0, 400))) for p in range(parts)]
    keys = np.concatenate(pieces).astype(np.int64)
    counts = rng.integers(-3, 50, len(keys)).astype(np.float32)
    offsets = np.cumsum([0] + [len(p) for p in pieces])
    got_keys, got_counts = merge_sorted(keys, counts, offsets)
    want_keys, want_counts = _sum_by_key(keys, counts)
    assert np.array_equal(got_keys, want_keys) and np.array_equal(got_counts, want_counts)
    assert got_counts.dtype == want_counts.dtype


def _numpy_blends(orders, experts, vocab, total, escape, erow, row, order, slot, counts):
    """mixer._blends as numpy computed it before kernels.blend_shares: the floats the kernel must give to the bit."""
    n, m = len(total), len(erow)
    a = 1 / (total + escape)
    b = escape * a
    blocks, lo = [], 0
    for k in sorted(experts):
        blocks.append((lo, orders.index(k) + 1))
        lo = blocks[-1][1]
    scales, above = [], np.ones_like(a)
    for lo, hi in blocks:
        scale = np.cumprod(b[:, lo:hi][:, ::-1], axis=1)[:, ::-1]
        above[:, lo : hi - 1] = scale[:, 1:]
        scales.append(scale[:, 0])
    block_of = np.full(a.shape[1], -1)
    for i, (lo, hi) in enumerate(blocks):
        block_of[lo:hi] = i
    blended = block_of[order] >= 0
    row, order, slot, counts = row[blended], order[blended], slot[blended], counts[blended]
    weights = (a * above).ravel()[row * a.shape[1] + order] * counts
    sums = np.bincount(block_of[order] * m + slot, weights=weights, minlength=len(blocks) * m).reshape(len(blocks), m)
    share, extra = np.full(n, 1.0 / vocab), np.zeros(m)
    shares, ratios = [], []
    for i, scale in enumerate(scales):
        share *= scale
        extra *= scale[erow]
        extra += sums[i]
        shares.append(share.copy())
        ratios.append(extra / share[erow])
    bases, bonuses = np.stack([np.log(s) for s in shares], axis=1), np.stack([_log1p(r) for r in ratios], axis=1)
    return (bases, bonuses), (np.array(blocks), np.stack(shares), np.stack(ratios))


@pytest.mark.parametrize("experts", [[2, 4, 24], [24], [1, 3]])
def test_blends_give_numpys_floats_to_the_bit(experts):
    """Random counts over orders 1..24 and three match orders above them, entries repeated in any order: the kernel's
    bases and bonuses equal numpy's bit for bit (a compressed file decodes only with the very same floats)."""
    orders, match, vocab, n = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24], 3, 257, 300
    rng = np.random.default_rng(len(experts))
    k = len(orders) + match
    types = rng.integers(0, 40, (n, k))
    total = (types * rng.integers(1, 1000, (n, k))).astype(np.float64)
    escape = 8.0 * types + 2.0
    m = 5000
    erow = np.sort(rng.integers(0, n, m))
    entries = rng.integers(0, m, 20000)
    row, slot = erow[entries], entries
    order = rng.integers(0, k, len(entries))
    counts = rng.integers(1, 3000, len(entries)).astype(np.float32)
    got = _blends(orders, experts, vocab, total, escape, erow, row, order, slot, counts)
    want, (blocks, shares, ratios) = _numpy_blends(orders, experts, vocab, total, escape, erow, row, order, slot,
                                                   counts)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g.view(np.uint8), w.view(np.uint8))
    # and the float64s before the logs (the float32 bonuses round most of a last bit's difference away)
    block_of = np.full(k, -1)
    for i, (lo, hi) in enumerate(blocks):
        block_of[lo:hi] = i
    got_shares, got_ratios = blend_shares(blocks, 1.0 / vocab, total, escape, erow, row, order, block_of, slot, counts)
    assert np.array_equal(got_shares, shares) and np.array_equal(got_ratios, ratios)


def test_spread_gives_each_query_its_contexts_entries():
    """Unique contexts with none, one or many entries, each given to several queries in any order: types, totals
    (summed in numpy's order) and entries are numpy's (_spread before the kernel)."""
    rng = np.random.default_rng(5)
    types = rng.integers(0, 6, 200)
    types[::9] = 300
    tokens = rng.integers(0, 257, int(types.sum()))
    counts = (rng.integers(1, 1 << 20, len(tokens)) * rng.random(len(tokens))).astype(np.float32)
    inverse = rng.integers(0, len(types), 1500)
    total = np.bincount(np.repeat(np.arange(len(types)), types), weights=counts, minlength=len(types))[inverse]
    entry = count_tables._ranges((np.cumsum(types) - types)[inverse], types[inverse])
    query = np.repeat(np.arange(len(inverse)), types[inverse])
    want = types[inverse], total, query, tokens[entry], counts[entry]
    for g, w in zip(spread(types, tokens, counts, inverse), want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


@pytest.mark.parametrize("directory_from", [0, 1 << 20])
def test_lookup_gives_finds_entries(monkeypatch, directory_from):
    """CountTable.lookup (kernels.entries_of) gives the entries find's (start, span) name, by query, dtypes kept."""
    monkeypatch.setattr(count_tables, "DIRECTORY_FROM", directory_from)
    rng = np.random.default_rng(11)
    ctx = rng.integers(0, 1 << 47, 3000, dtype=np.int64).astype(np.uint64)
    ctx[1500:] = ctx[:1500]
    table = CountTable.build(ctx, rng.integers(0, 300, 3000))
    queries = np.concatenate([ctx[::7], rng.integers(0, 1 << 47, 300).astype(np.uint64)])
    start, span = table.find(queries)
    idx = count_tables._ranges(start, span)
    want = np.repeat(np.arange(len(queries)), span), table.tokens[idx].astype(np.int64), table.counts[idx]
    for g, w in zip(table.lookup(queries), want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
