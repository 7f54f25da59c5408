"""The count model mixed in when scoring: exact counts, causal, and it catches long repeats."""

import functools
from dataclasses import replace
from collections import Counter

import numpy as np
import pytest
import torch

from seqlab.config import CountModelConfig
from seqlab.countmodel import (CountModel, CountReader, CountTable, Experts, OnlineMixer, RecentCounts,
                              context_hashes, continuations)
from seqlab.countmodel import tables as count_tables
from seqlab.models import build_model
from seqlab.run import Run
from seqlab.scoring import run_token_bits, score_logits

from conftest import TINY


def dense_counts(tables, queries, vocab):
    """(n, V) counts of what followed each query context, summed over the tables."""
    types, tokens, counts = continuations(tables, queries)
    out = np.zeros((len(queries), vocab))
    out[np.repeat(np.arange(len(queries)), types), tokens] = counts
    return out


def test_count_table_matches_brute_force():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, 400)
    k = 3
    h = context_hashes(tokens, [k])[:, 0]
    table = CountTable.build(h[k:], tokens[k:])
    dense = dense_counts([table], h[k:], 5)
    for i in range(k, 400, 37):
        ctx = tuple(tokens[i - k : i])
        expected = Counter(tokens[j] for j in range(k, 400) if tuple(tokens[j - k : j]) == ctx)
        assert [dense[i - k][v] for v in range(5)] == [expected.get(v, 0) for v in range(5)]


def test_the_history_table_counts_every_order_at_once():
    """CountModel builds its table order by order in reused buffers (fast to load); it holds exactly what
    CountTable.build counts over context_hashes' columns, each order from the first position it fits."""
    rng = np.random.default_rng(5)
    config = CountModelConfig(orders=[1, 2, 3, 5], experts=[2, 5], match_orders=[8, 40])
    for n in (0, 3, 7, 500):
        tokens = rng.integers(0, 6, n)
        model = CountModel(tokens, 6, config)
        h = context_hashes(tokens, model.orders)
        expected = CountTable.build(np.concatenate([h[k:, i] for i, k in enumerate(model.orders)]),
                                    np.concatenate([tokens[k:] for k in model.orders]))
        for part in ("contexts", "bounds", "tokens", "counts", "directory"):
            assert np.array_equal(getattr(model.table, part), getattr(expected, part)), (n, part)


def test_distributions_are_normalised_and_causal():
    rng = np.random.default_rng(1)
    history = rng.integers(0, 7, 2000)
    model = CountModel(history, 7, CountModelConfig(chunk=16, experts=[2, 24]))
    text = rng.integers(0, 7, 120)

    def read(tokens):
        reader = model.session("cpu").reader(tokens, 1)
        reader.advance(40)
        return np.exp(reader.distributions(40, 120).dense(7))  # (n, experts, vocab)

    p = read(text)
    assert p.shape == (80, 4, 7)  # the two blends, the match expert, the blend of the text's own counts
    assert np.allclose(p.sum(-1), 1, atol=1e-5) and (p > 0).all()
    changed = text.copy()
    changed[60] = (changed[60] + 1) % 7
    q = read(changed)
    assert np.allclose(p[: 60 - 40 + 1], q[: 60 - 40 + 1])  # predictions up to position 60 saw only the past
    assert not np.allclose(p[21:], q[21:])


def test_match_expert_follows_the_longest_context_seen_before():
    """A 64-token context seen once before predicts its continuation sharply, with a match-order bucket;
    where no match order has seen the context the expert is uniform."""
    rng = np.random.default_rng(2)
    history = rng.integers(0, 50, 3000)
    config = CountModelConfig(match_orders=[32, 64], match_confidence=0.99)
    model = CountModel(history, 50, config)
    text = np.concatenate([rng.integers(0, 50, 100), history[1000:1100]])  # fresh, then a copy
    experts = model.session("cpu").reader(text, 1).distributions(1, len(text))
    match, bucket = np.exp(experts.dense(50)[:, len(config.experts)]), experts.bucket  # (n, V), (n,): after the blends
    copied = np.arange(100 + 64, len(text)) - 1  # rows whose 64 tokens before are all copied
    assert (bucket[copied] == len(config.orders) + 2).all()  # the second match order
    assert np.allclose(match[copied, text[copied + 1]], 0.99)
    fresh = np.arange(40, 99) - 1
    assert (bucket[fresh] <= len(config.orders)).all() and np.allclose(match[fresh], 1 / 50)


@pytest.mark.parametrize("directory_from", [0, 1 << 20])
def test_lookup_matches_brute_force_for_tables_of_every_size(monkeypatch, directory_from):
    """Directory plus fixed-depth search (large tables) or searchsorted (small ones): present contexts give
    their entries, absent ones (below, between and above the stored ones) none, whatever the table's size."""
    monkeypatch.setattr(count_tables, "DIRECTORY_FROM", directory_from)
    rng = np.random.default_rng(7)
    for size in [0, 1, 2, 37, 5000]:
        ctx = rng.integers(0, 1 << 47, size, dtype=np.int64).astype(np.uint64)
        ctx[size // 2 :] = ctx[: size - size // 2]  # contexts seen twice, with their own next tokens
        nxt = rng.integers(0, 9, size)
        table = CountTable.build(ctx, nxt)
        assert (table.directory is not None) == (size >= directory_from)
        queries = np.unique(np.concatenate([ctx[:50], rng.integers(0, 1 << 47, 50).astype(np.uint64),
                                            np.array([0, (1 << 48) - 1], dtype=np.uint64)]))
        expected, present = np.zeros((len(queries), 9)), set(queries.tolist())
        for c, t in zip(ctx.tolist(), nxt.tolist()):
            if c in present:
                expected[np.searchsorted(queries, c), t] += 1
        assert np.array_equal(dense_counts([table], queries, 9), expected)


def _interpolated(model, counts: np.ndarray, experts: list[int]) -> list[np.ndarray]:
    """The log-probabilities (n, V) of the blends up to each order of `experts`, from dense counts (n, orders, V):
    interpolate the orders shortest first, as the definition reads."""
    c, V = model.config, model.vocab
    total = counts.sum(2)
    escape = c.escape_per_type * (counts > 0).sum(2) + c.escape_base
    p = np.full((len(counts), V), 1.0 / V)
    out = []
    for i, k in enumerate(c.orders):
        p = (counts[:, i] + escape[:, i, None] * p) / (total[:, i, None] + escape[:, i, None])
        if k in experts:
            out.append(np.log(p))
    return out


def _reference_experts(model, counts: np.ndarray, own: np.ndarray) -> np.ndarray:
    """The experts (n, E, V) from dense counts (n, orders, V) of every table and of the text's own alone:
    the blends of c.experts, the match expert, the text's own counts alone blended up to the longest of them."""
    c, V = model.config, model.vocab
    seen = counts.sum(2) > 0
    longest = counts.shape[1] - 1 - seen[:, ::-1].argmax(1)
    match = np.full((len(counts), V), -np.log(V))
    for r in np.flatnonzero(seen.any(1) & (longest >= len(c.orders))):
        match[r] = np.log((1 - c.match_confidence) / (V - 1))
        match[r, counts[r, longest[r]].argmax()] = np.log(c.match_confidence)
    return np.stack(_interpolated(model, counts, c.experts) + [match] + _interpolated(model, own, [max(c.experts)]),
                    axis=1)


def test_sparse_blends_equal_the_dense_interpolation():
    """Counts from the training split and from text already scored (several tables sharing tokens),
    with repeats long enough to reach the match orders."""
    rng = np.random.default_rng(8)
    V = 6
    history = rng.integers(0, V, 3000)
    config = CountModelConfig(chunk=40, orders=[1, 2, 3, 5, 8], experts=[2, 8], match_orders=[12, 20])
    model = CountModel(history, V, config)
    text = np.concatenate([rng.integers(0, V, 150), history[500:650], rng.integers(0, V, 60)])
    session = model.session("cpu")
    reader = session.reader(text, 1)
    buckets = []
    for first in range(1, len(text), config.chunk):
        stop = min(first + config.chunk, len(text))
        experts = reader.distributions(first, stop)
        recent = session.recent.levels
        dense, own = (np.stack([dense_counts(tables, reader.contexts[first:stop, j], V)
                                for j in range(len(model.orders))], axis=1)
                      for tables in ([model.table] + recent, recent))
        np.testing.assert_allclose(experts.dense(V), _reference_experts(model, dense, own), rtol=1e-5, atol=1e-5)
        seen = dense.sum(2) > 0
        assert experts.bucket.tolist() == [max((j + 1 for j in range(seen.shape[1]) if seen[r, j]), default=0)
                                           for r in range(len(seen))]
        buckets += experts.bucket.tolist()
        reader.advance(stop)
    assert len(session.recent.levels) > 1
    assert max(buckets) > len(config.orders)  # the copy reached a match order


def test_sparse_mixing_equals_the_dense_geometric_mix():
    """mix: log_softmax(w_net log p_net + sum_e w_e log p_e); update: the gradient of the log loss,
    as computed over dense experts."""
    rng = np.random.default_rng(9)
    V = 6
    config = CountModelConfig(orders=[1, 2, 3, 5, 8], experts=[2, 8], match_orders=[12, 20],
                              select=[], sse=0.0, words=False)  # the bucket rows alone (the rest: test_mixer_select)
    model = CountModel(rng.integers(0, V, 3000), V, config)
    text = rng.integers(0, V, 200)
    experts = model.session("cpu").reader(text, 1).distributions(1, 200)
    net = torch.log_softmax(torch.randn(199, V), dim=-1)
    targets = torch.from_numpy(text[1:200])
    sparse, dense = OnlineMixer(config, "cpu"), OnlineMixer(config, "cpu")
    sparse.weights += torch.rand_like(sparse.weights)  # every expert weighs in
    dense.weights = sparse.weights.clone()
    feats = torch.cat([net[:, None], torch.from_numpy(experts.dense(V))], dim=1)  # (n, 1 + E, V)
    b = torch.from_numpy(experts.bucket)
    expected = torch.log_softmax(torch.einsum("nev,ne->nv", feats, dense.weights[b]), dim=-1)
    logp = sparse.mix(net, experts)
    torch.testing.assert_close(logp, expected, rtol=1e-5, atol=1e-5)
    sparse.learn(sparse.premix(net, experts), net, experts, targets)
    grad = torch.zeros_like(dense.weights).index_add_(
        0, b, torch.einsum("nv,nev->ne", expected.exp(), feats) - feats[torch.arange(199), :, targets])
    grad /= torch.bincount(b, minlength=len(grad)).clamp_min(1)[:, None]
    torch.testing.assert_close(sparse.weights, dense.weights - dense.lr * grad / (0.1 * grad * grad).sqrt().add(1e-3),
                               rtol=1e-4, atol=1e-5)


def test_recent_counts_levels_equal_one_table():
    rng = np.random.default_rng(5)
    ctx = rng.integers(0, 50, 3000).astype(np.uint64)
    nxt = rng.integers(0, 9, 3000)
    recent = RecentCounts()
    for a in range(0, 3000, 137):
        recent.add(ctx[a : a + 137], nxt[a : a + 137])
    assert len(recent.levels) <= 6  # logarithmic in the number of chunks
    queries = np.arange(50, dtype=np.uint64)
    assert np.array_equal(dense_counts(recent.levels, queries, 9),
                          dense_counts([CountTable.build(ctx, nxt)], queries, 9))


def _run(arch: str, history, counts: CountModelConfig) -> Run:
    from seqlab.config import RunConfig
    from seqlab.data.tokenizer import ByteTokenizer

    torch.manual_seed(0)
    model = build_model(arch, {**TINY[arch], "vocab_size": 257}).eval()
    run = Run(None, RunConfig(arch=arch, counts=counts), ByteTokenizer(), model, torch.device("cpu"))
    run.__dict__["count_model"] = CountModel(history, 257, counts) if counts.enabled else None
    return run


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_mixed_scores_are_causal(arch):
    rng = np.random.default_rng(2)
    text = np.concatenate([[256], rng.integers(97, 123, 300)])
    run = _run(arch, rng.integers(97, 123, 3000), CountModelConfig(chunk=32))
    bits, _ = run_token_bits(run, text, 1)
    changed = text.copy()
    changed[150] = 97 if text[150] != 97 else 98
    bits2, _ = run_token_bits(run, changed, 1)
    assert np.allclose(bits[:149], bits2[:149], atol=1e-5)  # position i's score uses tokens < i only
    assert not np.allclose(bits[149:], bits2[149:])


def test_long_repeat_is_nearly_free_with_the_count_model():
    """A random passage seen earlier in the text: the network (context 32) cannot copy it, the mix can."""
    rng = np.random.default_rng(3)
    passage = rng.integers(97, 123, 400)
    text = np.concatenate([[256], passage, rng.integers(97, 123, 100), passage])
    run = _run("transformer", rng.integers(97, 123, 5000), CountModelConfig(chunk=64))
    bits, network = run_token_bits(run, text, 1)
    second = slice(len(text) - 1 - 400 + 50, None)  # the repeat, after the mixer has had time to adapt
    assert network[second].mean() > 4.0
    assert bits[second].mean() < 1.0, bits[second].mean()


def test_mixing_stream_covers_every_token_once():
    rng = np.random.default_rng(4)
    text = np.concatenate([[256], rng.integers(97, 123, 500)])
    run = _run("lstm", rng.integers(97, 123, 1000), CountModelConfig(chunk=50))
    stream = score_logits(run.model, text, 1, "cpu")
    firsts, total = [], 0
    for first, logp, targets, _ in run.count_model.session(run.device).mix(stream, text, 1):
        firsts.append(first)
        total += len(targets)
        assert torch.allclose(logp.exp().sum(1), torch.ones(len(targets)), atol=1e-4)
    assert total == 500 and firsts == sorted(firsts)


def test_trained_run_keeps_history_and_reports_both_figures(trained_runs):
    from seqlab.evaluate import evaluate
    from seqlab.run import load

    run = load(trained_runs["transformer"])
    assert (trained_runs["transformer"] / "history.npy").exists() and run.count_model is not None
    result = evaluate(run)
    assert result["bpb"] != result["bpb_network"] and "count model" in result["context"]


def test_large_vocabulary_scores_with_the_network_alone(tmp_path):
    from seqlab.countmodel import load_count_model, save_history

    config = CountModelConfig(max_vocab=300)
    save_history(tmp_path, np.arange(100) % 50, config)
    assert load_count_model(tmp_path, 257, config) is not None
    assert load_count_model(tmp_path, 5000, config) is None


def test_a_session_carries_what_it_scored_from_one_text_to_the_next():
    """Held-out files are scored as one stream, as a compressor would: a later file may copy an earlier one."""
    rng = np.random.default_rng(6)
    passage = rng.integers(97, 123, 400)
    first = np.concatenate([[256], passage])
    second = np.concatenate([[256], passage])
    run = _run("transformer", rng.integers(97, 123, 5000), CountModelConfig(chunk=64))
    alone, _ = run_token_bits(run, second, 1)
    session = run.count_model.session(run.device)
    run_token_bits(run, first, 1, session)
    after_first, network = run_token_bits(run, second, 1, session)
    assert network.mean() > 4.0
    assert after_first.mean() < 1.0 < alone.mean(), (after_first.mean(), alone.mean())


@pytest.mark.parametrize("directory_from", [1 << 20, 64])
def test_tables_kept_on_disk_are_mapped_and_equal_rebuilt_ones(tmp_path, monkeypatch, directory_from):
    """save_history builds the table once into counts/; a load maps it (no rebuild) and it is the very table
    CountModel builds in memory, its directory too; a changed history is noticed and rebuilt."""
    from seqlab.countmodel import TABLES_DIR, load_count_model, save_history, store
    from seqlab.countmodel.disktable import DiskTable

    monkeypatch.setattr(count_tables, "DIRECTORY_FROM", directory_from)
    config = CountModelConfig(orders=[1, 2, 3, 8], experts=[2, 8], match_orders=[32])
    history = np.random.default_rng(9).integers(0, 40, 3000).astype(np.uint16)
    save_history(tmp_path, history, config)
    assert (tmp_path / TABLES_DIR / "contexts.npy").exists()
    from seqlab.countmodel import session

    monkeypatch.setattr(session, "_history_table", None)  # a load that rebuilt in memory would fail here
    monkeypatch.setattr(session.store, "build", None)  # ... and one that rebuilt on disk
    mapped = load_count_model(tmp_path, 257, replace(config, map_up_to_gib=0))  # larger than that: read
    monkeypatch.undo()
    monkeypatch.setattr(count_tables, "DIRECTORY_FROM", directory_from)
    rebuilt = CountModel(history, 257, config)
    assert isinstance(mapped.table, DiskTable) and mapped.digest == rebuilt.digest  # read from its files
    arrays = store.open_table(tmp_path / TABLES_DIR, mapped.orders, mapped=True)
    assert isinstance(arrays.contexts.base, np.memmap)
    for part in ("contexts", "bounds", "tokens", "counts"):
        assert np.array_equal(getattr(arrays, part), getattr(rebuilt.table, part)), part
    assert (arrays.directory is None) == (directory_from > 1000)
    if arrays.directory is not None:
        assert np.array_equal(arrays.directory, rebuilt.table.directory)
        assert arrays.depth == rebuilt.table.depth
    queries = context_hashes(history[:500].astype(np.int64), mapped.orders).ravel()
    for a, b in zip(mapped.table.lookup(queries), rebuilt.table.lookup(queries)):
        assert np.array_equal(a, b)
    chosen = load_count_model(tmp_path, 257, config)  # a table under counts.map_up_to_gib: its arrays mapped
    assert type(chosen.table) is CountTable and isinstance(chosen.table.contexts.base, np.memmap)
    for a, b in zip(chosen.table.lookup(queries), rebuilt.table.lookup(queries)):
        assert np.array_equal(a, b)
    np.save(tmp_path / "history.npy", history[::-1].copy())  # another history: the kept table no longer fits it
    again = load_count_model(tmp_path, 257, config)
    again_arrays = store.open_table(tmp_path / TABLES_DIR, again.orders, again.digest, mapped=True)
    assert np.array_equal(again_arrays.counts, CountModel(history[::-1].copy(), 257, config).table.counts)


def test_a_history_too_large_for_memory_or_disk_is_refused_in_one_line(tmp_path, corpus_file, monkeypatch, capsys):
    from seqlab.__main__ import main
    from seqlab.countmodel import check_fits, store
    from seqlab.errors import SeqlabError

    with pytest.raises(SeqlabError, match=r"needs about .* GiB of memory to build.*counts.max_history=") as e:
        check_fits(100_000_000, available=1 << 30)
    assert "\n" not in str(e.value)
    check_fits(100_000_000, available=2 << 30)  # the build's memory hardly grows with the history; its disk does
    with pytest.raises(SeqlabError, match=r"needs about .* GiB of disk in .* to build.*counts.max_history=") as e:
        check_fits(100_000_000, available=2 << 30, directory=tmp_path, disk=10 << 30)
    assert "\n" not in str(e.value)
    check_fits(1000, available=2 << 30, directory=tmp_path, disk=10 << 30)
    monkeypatch.setattr(store, "available_memory", lambda: 1 << 20)  # 1 MiB free: not even the tiny corpus fits
    out = tmp_path / "run"
    assert main(["train", str(corpus_file), "--max-steps", "5", "--arch", "lstm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "counts.max_history" in err
    assert not (out / "checkpoint.safetensors").exists()  # refused before any training


@pytest.mark.parametrize("n_context, chunk, every", [(1, 40, 16), (9, 37, 5), (1, 30, 1)])
def test_reading_a_chunk_at_once_equals_reading_it_piece_by_piece(n_context, chunk, every):
    """read (eval's: the training counts looked up once per chunk, the chunk's own tokens as pending counts)
    gives exactly what distributions then advance give piece by piece, COUNT_EVERY tokens at a time: the same
    floats, so eval's bits and compress's format do not change."""
    rng = np.random.default_rng(12)
    V = 6
    history = rng.integers(0, V, 3000)
    config = CountModelConfig(chunk=chunk, orders=[1, 2, 3, 5, 8], experts=[2, 8], match_orders=[12, 20])
    model = CountModel(history, V, config)
    text = np.concatenate([rng.integers(0, V, 150), history[500:650], np.tile(history[:7], 20)])
    at_once, by_piece = model.session("cpu").reader(text, n_context), model.session("cpu").reader(text, n_context)
    for first in range(n_context, len(text), chunk):
        stop = min(first + chunk, len(text))
        pieces = []
        for start in range(first, stop, every):
            pieces.append(by_piece.distributions(start, min(start + every, stop)))
            by_piece.advance(min(start + every, stop))
        expected, got = Experts.concat(pieces), at_once.read(first, stop, every)
        for part in ("base", "row", "token", "bonus", "bucket", "small"):
            assert np.array_equal(getattr(got, part), getattr(expected, part)), (first, part)
    merged = [functools.reduce(CountTable.merge, r.session.recent.levels) for r in (at_once, by_piece)]
    assert np.array_equal(merged[0].keys(), merged[1].keys()) and np.array_equal(merged[0].counts, merged[1].counts)


def test_mixed_scoring_equals_counting_piece_by_piece(monkeypatch):
    """eval's path (each chunk's experts read at once, in a thread while the chunk before is mixed) gives the
    same bits, to the last one, as blending and counting each COUNT_EVERY-token piece in turn."""
    rng = np.random.default_rng(13)
    passage = rng.integers(97, 123, 150)
    text = np.concatenate([[256], passage, rng.integers(97, 123, 120), passage, passage[:60]])
    run = _run("transformer", rng.integers(97, 123, 3000), CountModelConfig(chunk=48))
    bits, _ = run_token_bits(run, text, 1)

    def piece_by_piece(reader, start, stop, every):
        pieces = []
        for first in range(start, stop, every):
            pieces.append(reader.distributions(first, min(first + every, stop)))
            reader.advance(min(first + every, stop))
        return Experts.concat(pieces)

    monkeypatch.setattr(CountReader, "read", piece_by_piece)
    expected, _ = run_token_bits(run, text, 1)
    assert np.array_equal(bits, expected)
