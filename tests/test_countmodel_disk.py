"""The count table read from its files (DiskTable): the mapped table's answers, nothing mapped, reads bounded."""

from pathlib import Path

import numpy as np
import pytest

from seqlab.countmodel import disktable, store
from seqlab.countmodel.tables import context_hashes

ORDERS = [1, 2, 3, 5, 8, 32]


def history(n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 40, n).astype(np.uint16)
    tokens[n // 2 : n // 2 + n // 4] = tokens[: n // 4]  # a long repeat: long contexts seen, counts above 1
    return tokens


def queries(tokens: np.ndarray, seed: int = 6) -> np.ndarray:
    """Contexts of the history (present), of other text (mostly absent), the least and greatest ids, repeated
    ones, unsorted."""
    rng = np.random.default_rng(seed)
    seen = context_hashes(tokens[:400].astype(np.int64), ORDERS).ravel()
    fresh = context_hashes(rng.integers(0, 40, 300), ORDERS).ravel()
    q = np.concatenate([seen, fresh, np.array([0, (1 << 48) - 1], dtype=np.uint64), seen[:50]])
    return q[rng.permutation(len(q))]


@pytest.mark.parametrize("n", [1, 10, 3000, 40000])
@pytest.mark.parametrize("fence, gap, front, cache_bits", [(64, 4096, 0, 22), (4, 0, 3000, 3), (1, 16, 1 << 30, 22),
                                                           (7, 100, 40000, 1)])
def test_disk_lookups_equal_the_mapped_table_s_in_every_array(tmp_path, monkeypatch, n, fence, gap, front, cache_bits):
    """Whatever the fence, the gap between reads merged, the part held in memory (none, some, all) and the cache (its
    slots shared by many contexts, or not): each array of a lookup is the mapped table's, the first time a context
    is asked and again from the cache."""
    for name, value in (("FENCE", fence), ("GAP", gap), ("FRONT", front), ("CACHE_BITS", cache_bits)):
        monkeypatch.setattr(disktable, name, value)
    monkeypatch.setattr(disktable, "CHUNK", fence * 5)  # the fence made a few contexts at a time
    tokens = history(n)
    store.build(tokens, ORDERS, tmp_path / "counts")
    disk, mapped = store.open_table(tmp_path / "counts", ORDERS), store.open_table(tmp_path / "counts", ORDERS,
                                                                                    mapped=True)
    assert isinstance(disk, disktable.DiskTable) and len(disk) == len(mapped.tokens)
    assert np.array_equal(disk.fence, mapped.contexts[::fence])
    held, stored = len(disk.front.contexts), len(mapped.contexts)
    if n > 10000:  # the table in memory: none of it, some, all of it
        assert {0: held == 0, 3000: 0 < held < stored, 40000: 0 < held < stored, 1 << 30: held == stored}[front]
    q = queries(tokens)
    for again in range(3):
        for a, b in zip(disk.lookup(q), mapped.lookup(q)):
            assert a.dtype == b.dtype and np.array_equal(a, b), again
        q = np.concatenate([q[::-3], queries(tokens, seed=again)])  # some asked before, some not
    (start, span), (mapped_start, mapped_span) = disk.find(q), mapped.find(q)
    assert np.array_equal(span, mapped_span) and np.array_equal(start[span > 0], mapped_start[span > 0])
    if n > 1000:
        assert (span > 0).mean() > 0.3 and (span == 0).mean() > 0.1  # both kinds of query were asked
    for a, b in zip(disk.lookup(q[:0]), mapped.lookup(q[:0])):
        assert a.dtype == b.dtype and len(a) == len(b) == 0


def _mapped_paths() -> set[str]:
    return {line.split(maxsplit=5)[-1] for line in Path("/proc/self/maps").read_text().splitlines()
            if len(line.split()) == 6}


def _bytes_read() -> int:
    """What this process read by system calls so far (/proc/self/io's rchar)."""
    return int(next(line.split()[1] for line in Path("/proc/self/io").read_text().splitlines()
                    if line.startswith("rchar:")))


def test_the_reader_maps_nothing_and_reads_no_more_than_its_bound(tmp_path, monkeypatch):
    """A lookup reads (every read call of the process counted, not only the reader's) no more than `bound` for its
    queries and what they find, a small part of a table of 2.4 MB; no table file is ever mapped; what it keeps is
    the fence, one context in FENCE, the cache, and no more than FRONT bytes of the table's first contexts."""
    monkeypatch.setattr(disktable, "GAP", 64)
    monkeypatch.setattr(disktable, "FRONT", 100_000)
    tokens = history(60000)
    store.build(tokens, ORDERS, tmp_path / "counts")
    size = sum(p.stat().st_size for p in (tmp_path / "counts").glob("*.npy"))
    disk = store.open_table(tmp_path / "counts", ORDERS)
    assert disk.fence.nbytes == -(-disk.contexts.n // disktable.FENCE) * 8 < size / 100
    front = disk.front
    assert 0 < sum(a.nbytes for a in (front.contexts, front.bounds, front.tokens, front.counts)) <= 100_000 + 4
    q = queries(tokens)
    for lo in range(0, len(q), 500):
        part = q[lo : lo + 500]
        before = _bytes_read()
        found = len(disk.lookup(part)[0])
        read = _bytes_read() - before
        assert 0 < read <= disk.bound(len(np.unique(part)), found) < size / 4, (read, size)
        assert not any(str(tmp_path) in path for path in _mapped_paths())


def test_a_table_built_before_the_fence_gets_one_at_its_first_load(tmp_path, monkeypatch):
    tokens = history(5000)
    store.build(tokens, ORDERS, tmp_path / "counts")
    fence_file = disktable.fence_file(tmp_path / "counts")
    expected = np.load(fence_file)
    fence_file.unlink()  # as store.build wrote tables before this reader
    q = queries(tokens)
    mapped = store.open_table(tmp_path / "counts", ORDERS, mapped=True).lookup(q)

    def read_only(fence, directory):
        raise PermissionError(13, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(disktable, "write_fence", read_only)
        disk = store.open_table(tmp_path / "counts", ORDERS)  # kept in memory alone
    assert not fence_file.exists() and np.array_equal(disk.fence, expected)
    assert all(np.array_equal(a, b) for a, b in zip(disk.lookup(q), mapped))
    disk = store.open_table(tmp_path / "counts", ORDERS)
    assert np.array_equal(np.load(fence_file), expected)  # kept for the next load
    assert all(np.array_equal(a, b) for a, b in zip(disk.lookup(q), mapped))
    np.save(fence_file, expected[:-1])  # a fence of another table (or stride) is made again
    assert np.array_equal(store.open_table(tmp_path / "counts", ORDERS).fence, expected)
