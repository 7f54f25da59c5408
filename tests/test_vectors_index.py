"""Passage vectors and the index: batching changes nothing, the streamed files read back, index search equals
exact search (all cells read) and reaches its calibrated recall (the stored cells), save -> load -> search keeps
ids, adding files equals building from scratch."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from vectors_data import rare_word_pairs, write_corpus

from seqlab.embed import embed
from seqlab.run import load
from seqlab.vectors.embed import embed_stream, embed_texts, read_vectors
from seqlab.vectors.index import TARGET_RECALL, PassageIndex, new_ivf, recalibrated, structure_of
from seqlab.vectors.passages import count_passages, passages


@pytest.fixture(scope="module")
def setup(tmp_path_factory, trained_runs):
    """The shared tiny runs (trained on another text: any run embeds any text) and a generated corpus."""
    files = write_corpus(tmp_path_factory.mktemp("index") / "corpus", n_files=3, n_lines=400)
    return {"files": files, "lstm": trained_runs["lstm"], "transformer": trained_runs["transformer"]}


def test_passages_know_their_file_line_and_offset(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"one\ntwo\n\n  \nthree\nfour\n")
    data = path.read_bytes()
    paras = list(passages([path], "paragraph"))
    assert [(p.line, p.data) for p in paras] == [(1, b"one\ntwo"), (5, b"three\nfour")]
    assert all(data[p.offset : p.offset + len(p.data)] == p.data for p in paras)
    assert [p.line for p in passages([path], "line")] == [1, 2, 5, 6]
    assert count_passages([path], "document") == 1


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
@pytest.mark.parametrize("pooling", ["mean", "last", "max", "surprisal"])
def test_a_batch_gives_each_passage_the_vector_it_gets_alone(setup, arch, pooling):
    run = load(setup[arch])
    texts = [p.data for p in passages(setup["files"][:1], "paragraph")][:12]
    texts.append(b" ".join(texts))  # longer than the transformer's context: cut into pieces
    together = embed_texts(run, texts, pooling)
    alone = np.concatenate([embed_texts(run, [t], pooling) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    chunks = np.concatenate([v for _, v in embed_stream(run, texts, pooling, text_of=lambda t: t, buffer=5)])
    assert np.allclose(chunks, together, atol=1e-5)


@pytest.mark.parametrize("fmt", ["safetensors", "npy"])
def test_embed_streams_rows_and_metadata_that_read_back(setup, tmp_path, fmt):
    info = embed(setup["lstm"], [str(f) for f in setup["files"]], "line", tmp_path / "out", fmt=fmt,
                 dtype="float16", show_progress=False)
    vectors, metas, saved = read_vectors(tmp_path / "out")
    assert vectors.dtype == np.float16 and vectors.shape == (info["count"], info["dim"]) == (len(metas), saved["dim"])
    if fmt == "safetensors":  # the writer's own header is read by the safetensors library
        assert load_file(str(tmp_path / "out" / "vectors.safetensors"))["vectors"].shape == vectors.shape
    line = metas[7]
    text = open(line["file"], "rb").read()
    assert text.splitlines()[line["line"] - 1].decode() == line["text"]
    expected = embed_texts(load(setup["lstm"]), [line["text"].encode()])
    assert np.allclose(vectors[7].astype(np.float32), expected[0], atol=2e-3)


def test_embedded_words_have_counts_and_first_occurrences(setup, tmp_path):
    embed(setup["lstm"], [str(setup["files"][0])], "word", tmp_path / "w", show_progress=False)
    _, metas, _ = read_vectors(tmp_path / "w")
    data = setup["files"][0].read_bytes()
    for m in metas[:20]:
        assert data[m["offset"] : m["offset"] + len(m["word"])].decode().lower() == m["word"]
        assert data[: m["offset"]].count(b"\n") + 1 == m["line"]
    assert sum(m["count"] for m in metas) == len(data.decode().replace(".", " ").split())


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("exact_below", [10_000, 0])  # a flat index, and an IVF read whole
def test_index_search_equals_exact_search(setup, tmp_path, exact_below):
    run = load(setup["lstm"])
    idx = PassageIndex.build(run, setup["files"], tmp_path / "idx", "paragraph", exact_below=exact_below,
                             show_progress=False)
    assert idx.info["structure"] == "Flat" if exact_below else idx.info["structure"].startswith("IVF")
    if not exact_below:
        idx.read_cells(int(idx.info["structure"][3:].split(",")[0]))  # every cell: exact
    texts = [p.data for p in passages(setup["files"], "paragraph")]
    vectors = embed_texts(run, texts)
    queries = embed_texts(run, [b"the cat sat", b"a royal queen came.", b"we read"])
    scores, ids = idx.search(queries, 10)
    # the same passages by score (ties between identical lines may come in any order)
    exact = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10]
    assert np.allclose(scores, exact, atol=1e-5)
    assert np.allclose(np.take_along_axis(queries @ vectors.T, ids, 1), scores, atol=1e-5)
    assert idx.passage(int(ids[0][0]))["text"].encode() == texts[ids[0][0]]


def test_save_load_search_gives_the_same_ids(setup, tmp_path):
    run = load(setup["lstm"])
    built = PassageIndex.build(run, setup["files"], tmp_path / "idx", "paragraph", exact_below=0, show_progress=False)
    queries = embed_texts(run, [b"my dog eats fish.", b"an old tree fell."])
    before = built.search(queries, 5)
    for mmap in (True, False):
        loaded = PassageIndex.load(tmp_path / "idx", mmap=mmap)
        after = loaded.search(queries, 5)
        assert np.array_equal(before[1], after[1]) and np.allclose(before[0], after[0])
        assert loaded.passage(int(after[1][0][0])) == built.passage(int(before[1][0][0]))


@pytest.mark.parametrize("exact_below", [10_000, 500])  # flat throughout, and flat turned into an IVF by the add
def test_adding_files_equals_building_from_scratch(setup, tmp_path, exact_below):
    run = load(setup["lstm"])
    files = setup["files"]
    scratch = PassageIndex.build(run, files, tmp_path / "all", "line", exact_below=exact_below, show_progress=False)
    grown = PassageIndex.build(run, files[:1], tmp_path / "grown", "line", exact_below=exact_below,
                               show_progress=False)
    assert grown.add(run, files[1:], show_progress=False) == len(scratch) - count_passages(files[:1], "line")
    grown = PassageIndex.load(tmp_path / "grown")
    assert grown.info["structure"] == scratch.info["structure"] and len(grown) == len(scratch)
    assert (tmp_path / "grown" / "passages.jsonl").read_bytes() == (tmp_path / "all" / "passages.jsonl").read_bytes()
    queries = embed_texts(run, [b"the cat sat on the mat.", b"she is a queen."])
    a, b = scratch.search(queries, 8), grown.search(queries, 8)
    assert np.allclose(a[0], b[0], atol=1e-5)
    info = json.loads((tmp_path / "grown" / "index.json").read_text())
    assert [f["passages"] for f in info["files"]] == [count_passages([f], "line") for f in files]


def test_adding_to_an_ivf_puts_the_passages_in_its_cells(setup, tmp_path):
    run = load(setup["lstm"])
    files = setup["files"]
    grown = PassageIndex.build(run, files[:1], tmp_path / "idx", "line", exact_below=0, show_progress=False)
    cells = grown.info["structure"]
    grown.add(run, files[1:], show_progress=False)
    grown = PassageIndex.load(tmp_path / "idx")
    assert grown.info["structure"] == cells and grown.info["probes"] >= 1  # the same cells, calibrated again
    texts = [p.data for p in passages(files, "line")]
    vectors, queries = embed_texts(run, texts), embed_texts(run, [b"the cat sat on the mat.", b"she is a queen."])
    grown.read_cells(int(cells[3:].split(",")[0]))
    scores, ids = grown.search(queries, 10)
    assert len(grown) == len(texts)
    assert np.allclose(scores, np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10], atol=1e-5)


def test_the_stored_probes_are_used_and_probes_override_them(setup, tmp_path):
    from seqlab.search import search

    run = load(setup["lstm"])
    PassageIndex.build(run, setup["files"], tmp_path / "idx", "paragraph", exact_below=0, show_progress=False)
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert PassageIndex.load(tmp_path / "idx").probes == info["probes"]
    (tmp_path / "idx" / "index.json").write_text(json.dumps({**info, "probes": 1}))
    idx = PassageIndex.load(tmp_path / "idx")
    assert idx.probes == 1
    opened = (idx, run)
    narrow = search(tmp_path / "idx", "the cat sat", 10, opened=opened)
    assert idx.probes == 1
    wide = search(tmp_path / "idx", "the cat sat", 10, opened=opened, probes=500)
    assert idx.probes == 500
    exact = PassageIndex.build(run, setup["files"], tmp_path / "flat", "paragraph", show_progress=False)
    truth = search(tmp_path / "flat", "the cat sat", 10, opened=(exact, run))
    assert [r["score"] for r in wide["results"]] == pytest.approx([r["score"] for r in truth["results"]], abs=1e-5)
    assert len(narrow["results"]) == 10


def unit_vectors(n: int, dim: int, spread: float) -> np.ndarray:
    """FAISS's synthetic vectors (spread 0), or unit vectors near 64 centres (the smaller the spread, the tighter
    the neighbourhoods: passage vectors' are tight)."""
    rng = np.random.default_rng(0)
    if spread:
        x = rng.standard_normal((64, dim))[rng.integers(0, 64, n)] + spread * rng.standard_normal((n, dim))
    else:
        from faiss.contrib.datasets import SyntheticDataset

        x = SyntheticDataset(dim, 0, n, 0, metric="IP", seed=1338).get_database()
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("spread, codes", [(0, "PQ16x4fs,"), (0.2, "SQ8,"), (0.01, "IVF128,Flat")])
def test_the_ivf_reaches_its_calibrated_recall_on_new_queries_reading_part_of_its_cells(spread, codes):
    everything = unit_vectors(6_300, 32, spread)
    base, queries = everything[:6_000], everything[6_000:]
    index, probes, recall = new_ivf(base)
    assert codes in structure_of(index) and recall >= TARGET_RECALL
    assert probes < int(structure_of(index)[3:].split(",")[0])  # it prunes
    kth = np.sort(queries @ base.T, axis=1)[:, -10]
    scores, ids = index.search(queries, 10)
    assert ((scores >= kth[:, None] - 1e-5) & (ids >= 0)).sum(1).mean() / 10 >= TARGET_RECALL - 0.03


def test_every_passage_is_read_back_by_its_offset(setup, tmp_path):
    run = load(setup["lstm"])
    PassageIndex.build(run, setup["files"], tmp_path / "idx", "line", show_progress=False)
    idx = PassageIndex.load(tmp_path / "idx")  # offsets memory-mapped
    assert isinstance(idx.offsets, np.memmap)
    lines = list(passages(setup["files"], "line"))
    order = np.random.default_rng(0).permutation(len(lines))  # random access, not a scan
    for i in order[:200]:
        row = idx.passage(int(i))
        assert (row["file"], row["line"], row["text"].encode()) == (lines[i].file, lines[i].line, lines[i].data)


def test_surprisal_pooling_finds_the_passage_that_shares_a_rare_word(setup):
    """Each query shares an unexpected word with its own passage and all its ordinary text with another
    passage: the surprisal pooling (the bits the run pays for each token) finds the right one, where mean-pooled
    states follow the ordinary text."""
    run = load(setup["lstm"])
    rare = [b"fjfjf", b"mpmpm", b"quqvq", b"wywyw", b"zgzgz"]
    n = len(rare)
    queries, passages_ = rare_word_pairs(rare)
    found = {pooling: (embed_texts(run, queries, pooling) @ embed_texts(run, passages_, pooling).T).argmax(1)
             for pooling in ("surprisal", "mean")}
    assert list(found["surprisal"]) == list(range(n))
    assert (found["mean"] == np.arange(n)).sum() < n  # the test asks something the states do not answer


def test_vectors_added_where_the_cells_were_not_learnt_make_the_ivf_learn_again():
    near, far = unit_vectors(4_000, 32, 0.2), unit_vectors(8_000, 32, 0.2)[4_000:] * -1  # centres mirrored
    index, _, _ = new_ivf(near)
    index.add(near[:500] + 0.0)  # more of the same: kept, calibrated again
    assert recalibrated(index)[0] is index
    index.add(far)
    grown, probes, recall = recalibrated(index)
    assert grown is not index and grown.ntotal == 4_500 + len(far) and recall >= TARGET_RECALL
