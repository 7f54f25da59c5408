"""The count table's build on disk: a shard of the history at a time, sorted runs merged, the same table exactly."""

import errno

import numpy as np
import pytest

from seqlab.countmodel import store
from seqlab.countmodel import tables as count_tables
from seqlab.errors import SeqlabError

ORDERS = [1, 2, 3, 8, 32, 600]  # 600: longer than the shortest history below (no entries of it)


def history(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 30, n).astype(np.uint16)
    tokens[n // 2 : n // 2 + n // 4] = tokens[: n // 4]  # a long repeat: counts above 1 in every order
    return tokens


def small_pieces(monkeypatch, shard: int, merge: int, chunk: int) -> None:
    monkeypatch.setattr(store, "SHARD", shard)
    monkeypatch.setattr(store, "MERGE", merge)
    monkeypatch.setattr(store, "CHUNK", chunk)
    monkeypatch.setattr(count_tables, "DIRECTORY_FROM", 64)


@pytest.mark.parametrize("n, shard, merge, chunk", [(5000, 1 << 22, 1 << 22, 1 << 22), (5000, 700, 900, 333),
                                                    (5000, 999, 100, 4096), (500, 64, 64, 7), (1, 64, 64, 7)])
def test_a_sharded_build_equals_the_one_shot_table_exactly(tmp_path, monkeypatch, n, shard, merge, chunk):
    """Every array, its dtype, the directory and its depth are the in-memory table's, however small the shards,
    the merge's blocks and the directory's chunks."""
    small_pieces(monkeypatch, shard, merge, chunk)
    tokens = history(n)
    store.build(tokens, ORDERS, tmp_path / "counts")
    mapped = store.open_table(tmp_path / "counts", ORDERS, store.history_digest(tokens), mapped=True)
    one_shot = count_tables._history_table(tokens, ORDERS)
    for part in ("contexts", "bounds", "tokens", "counts"):
        a, b = getattr(mapped, part), getattr(one_shot, part)
        assert a.dtype == b.dtype and np.array_equal(a, b), part
        assert isinstance(a.base, np.memmap), part  # mapped, not copied at load
    assert (mapped.directory is None) == (one_shot.directory is None) == (len(one_shot.contexts) < 64)
    if one_shot.directory is not None:
        assert mapped.directory.dtype == one_shot.directory.dtype
        assert np.array_equal(mapped.directory, one_shot.directory) and mapped.depth == one_shot.depth
    assert sorted(p.name for p in (tmp_path / "counts").iterdir() if "run" in p.name) == []  # the runs are gone


def test_merged_runs_sum_the_counts_of_equal_keys(monkeypatch):
    rng = np.random.default_rng(1)
    runs, all_keys, all_counts = [], [], []
    monkeypatch.setattr(store, "MERGE", 50)
    for size in (300, 1, 77, 5):
        keys = np.unique(rng.integers(0, 400, size).astype(np.uint64))
        counts = rng.integers(1, 9, len(keys)).astype(np.uint32)
        all_keys.append(keys)
        all_counts.append(counts)
        runs.append((keys, counts))
    expected_keys, inverse = np.unique(np.concatenate(all_keys), return_inverse=True)
    expected_counts = np.bincount(inverse, weights=np.concatenate(all_counts))
    monkeypatch.setattr(store, "_read", lambda path, dtype, start, count: path[start : start + count])
    pieces = list(store._merged([(len(k), k, c) for k, c in runs]))
    assert len(pieces) > 3  # merged a block at a time
    keys = np.concatenate([k for k, _ in pieces])
    assert np.array_equal(keys, expected_keys)
    assert np.array_equal(np.concatenate([c for _, c in pieces]), expected_counts)


def test_bounds_too_many_for_int32_are_stored_int64_and_stay_mapped(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "INT32_ENTRIES", 100)
    tokens = history(3000)
    store.build(tokens, ORDERS, tmp_path / "counts")
    mapped = store.open_table(tmp_path / "counts", ORDERS, mapped=True)
    one_shot = count_tables._history_table(tokens, ORDERS)
    assert mapped.bounds.dtype == np.int64 and isinstance(mapped.bounds.base, np.memmap)
    assert np.array_equal(mapped.bounds, one_shot.bounds)
    queries = count_tables.context_hashes(tokens[:300].astype(np.int64), ORDERS).ravel()
    for a, b, c in zip(mapped.lookup(queries), one_shot.lookup(queries), store.open_table(tmp_path / "counts",
                                                                                          ORDERS).lookup(queries)):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    store.build(history(2000), ORDERS, tmp_path / "counts")  # a table kept before is replaced only when complete
    before = sorted(p.name for p in (tmp_path / "counts").iterdir())

    def full(self, array):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store._NpyWriter, "write", full)
    with pytest.raises(SeqlabError, match="filled up.*counts.max_history") as e:
        store.build(history(3000), ORDERS, tmp_path / "counts")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts"]  # no half-built table beside it
    assert sorted(p.name for p in (tmp_path / "counts").iterdir()) == before


def test_a_build_that_would_not_fit_the_disk_is_refused_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "free_disk", lambda directory: 1000)
    with pytest.raises(SeqlabError, match=r"of disk in .* to build") as e:
        store.build(history(3000), ORDERS, tmp_path / "counts")
    assert "\n" not in str(e.value) and not (tmp_path / "counts").exists()


def test_train_refuses_a_history_whose_table_would_not_fit_the_disk(tmp_path, corpus_file, monkeypatch, capsys):
    from seqlab.__main__ import main

    monkeypatch.setattr(store, "free_disk", lambda directory: 1000)
    out = tmp_path / "run"
    assert main(["train", str(corpus_file), "--max-steps", "5", "--arch", "lstm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "of disk in" in err and "counts.max_history" in err
    assert not (out / "checkpoint.safetensors").exists()  # refused before any training


def test_a_long_history_s_blends_stay_finite_where_the_share_of_every_token_is_tiny():
    """Ten orders that each saw their context 1e8 times leave every token a share of ~1e-52 of the blend: the
    bonus of the token seen at the longest order is then past float32's range, and must not become inf (it did at
    96M history tokens: eval's mix turned to NaN)."""
    from seqlab.countmodel import mixer

    orders = list(range(1, 11))
    n_orders = len(orders)
    total = np.full((1, n_orders), 1e8)
    escape = np.full((1, n_orders), 1000.0)
    row, order = np.array([0]), np.array([n_orders - 1])  # one entry, at the longest order
    base, bonus = mixer._blends(orders, [10], 256, total, escape, np.array([0]), row, order, np.array([0]),
                                np.array([1e8]))
    share = np.exp(base[0, 0])
    assert share < 1e-40
    assert np.isfinite(bonus).all()
    a = 1 / (1e8 + 1000)
    assert bonus[0, 0] == pytest.approx(np.log1p(a * 1e8 / share), rel=1e-6)
