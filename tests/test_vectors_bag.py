"""The words pooling: a passage's words weighted by what the run paid for them, kept sparse. Each word takes its
tokens' bits by their bytes; a batch gives every passage what it gets alone; a rare word a query shares with its
passage finds it even when other passages hold the same tokens in another order; the vectors written by embed and
kept by an index read back as they were made, and the index searches them exactly (added or built, blocks or not)."""

import numpy as np
import pytest
from vectors_data import rare_word_pairs, write_corpus

from seqlab.embed import embed
from seqlab.run import load
from seqlab.vectors import bag
from seqlab.vectors.bag import BagVectors, word_occurrences
from seqlab.vectors.embed import embed_stream, embed_texts, read_vectors
from seqlab.vectors.index import PassageIndex
from seqlab.vectors.passages import passages


@pytest.fixture(scope="module")
def setup(tmp_path_factory, trained_runs):
    files = write_corpus(tmp_path_factory.mktemp("bag") / "corpus", n_files=2, n_lines=300)
    return {"files": files, "lstm": trained_runs["lstm"], "transformer": trained_runs["transformer"]}


def same(a: BagVectors, b: BagVectors, atol: float = 1e-5) -> bool:
    return (a.words.shape == b.words.shape and abs(a.words - b.words).max() <= atol
            and np.allclose(a.expected, b.expected, atol=atol))


def test_each_word_takes_its_tokens_bits_by_their_bytes():
    token_bytes = [b"The", b" ca", b"t,", b" the", b" CAT9", b" x"]
    token, occurrence, share, columns = word_occurrences(token_bytes, np.arange(6))
    assert list(zip(token, occurrence, np.round(share, 4))) == [
        (0, 0, 1.0), (1, 1, round(2 / 3, 4)), (2, 1, 0.5), (3, 2, 0.75), (4, 3, 0.8), (5, 4, 0.5)]
    assert columns[0] == columns[2] and columns[1] != columns[3]  # "The" is "the"; "cat" is not "cat9"
    assert len(word_occurrences(token_bytes, np.array([1, 1])[:0])[3]) == 0


def test_words_are_letters_of_any_script_and_a_byte_that_is_not_utf8_parts_them():
    data = "Café CAFÉ привет Привет naïve_x".encode() + b" ab\xffcd"
    byte_tokens = [bytes([i]) for i in range(256)]  # a byte run's tokens
    token, occurrence, share, columns = word_occurrences(byte_tokens, np.frombuffer(data, np.uint8))
    assert columns[0] == columns[1] and columns[2] == columns[3] and columns[0] != columns[2]
    assert len(columns) == 8  # café café привет привет naïve x ab cd: the underscore and \xff part words
    assert np.bincount(occurrence)[:4].tolist() == [5, 5, 12, 12]  # bytes, not characters: é is two, и two
    assert np.allclose(share, 1)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_a_batch_gives_each_passage_the_bag_it_gets_alone(setup, arch):
    run = load(setup[arch])
    texts = [p.data for p in passages(setup["files"][:1], "paragraph")][:10]
    texts.append(b" ".join(texts))  # longer than the transformer's context: cut into pieces
    texts.append(b"... !!")  # no word at all: the expected half alone
    together = embed_texts(run, texts, "words")
    alone = BagVectors.concat([embed_texts(run, [t], "words") for t in texts])
    assert same(together, alone)
    assert np.allclose(np.diag(together.scores(together)), [1] * 11 + [0.5], atol=1e-5)
    chunks = BagVectors.concat([v for _, v in embed_stream(run, texts, "words", text_of=lambda t: t, buffer=4)])
    assert same(chunks, together)


def test_a_shared_rare_word_finds_its_passage_where_the_token_bag_cannot_tell_anagrams(setup):
    """Query i shares a made-up word with passage i and its ordinary text with passage i-1; the made-up words are
    anagrams of one another, so a bag of the byte run's tokens holds nearly the same bytes for all of them."""
    run = load(setup["lstm"])  # a byte-level run
    rare = [b"qzxwv", b"vwxzq", b"xqvzw", b"wzqvx", b"zvwqx"]
    n = len(rare)
    queries, passages_ = rare_word_pairs(rare)
    words = embed_texts(run, queries, "words").scores(embed_texts(run, passages_, "words")).argmax(1)
    tokens = (embed_texts(run, queries, "surprisal") @ embed_texts(run, passages_, "surprisal").T).argmax(1)
    assert list(words) == list(range(n))
    assert (tokens == np.arange(n)).sum() < n  # the test asks what a bag of tokens does not answer


def test_embedded_bags_read_back_as_made(setup, tmp_path):
    info = embed(setup["lstm"], [str(f) for f in setup["files"]], "paragraph", tmp_path / "out", pooling="words",
                 dtype="float16", show_progress=False)
    vectors, metas, saved = read_vectors(tmp_path / "out")
    assert saved["sparse"] and len(vectors) == info["count"] == len(metas) and vectors.dim == info["dim"]
    assert vectors.expected.dtype == np.float32  # stored in float16, read back as scipy's sparse rows can hold
    made = embed_texts(load(setup["lstm"]), [m["text"].encode() for m in metas], "words")
    assert same(vectors, made, atol=2e-3) and not same(vectors, made, atol=1e-6)


def exact(index_vectors: BagVectors, queries: BagVectors, k: int):
    scores = queries.scores(index_vectors)
    return np.sort(scores, axis=1)[:, ::-1][:, :k], scores


@pytest.mark.parametrize("scores", [bag.SCORES, 1])  # all queries at once, and one at a time
def test_a_bag_index_searches_exactly_and_adds_as_it_builds(setup, tmp_path, monkeypatch, scores):
    monkeypatch.setattr(bag, "SCORES", scores)
    run = load(setup["lstm"])
    files = setup["files"]
    built = PassageIndex.build(run, files, tmp_path / "all", "line", pooling="words", show_progress=False)
    grown = PassageIndex.build(run, files[:1], tmp_path / "grown", "line", pooling="words", show_progress=False)
    grown.add(run, files[1:], show_progress=False)
    assert built.info["structure"] == "Bag"
    vectors = embed_texts(run, [p.data for p in passages(files, "line")], "words")
    queries = embed_texts(run, [b"the cat sat", b"a royal queen came.", b"we read"], "words")
    best, scores = exact(vectors, queries, 10)
    for idx in (built, PassageIndex.load(tmp_path / "all"), PassageIndex.load(tmp_path / "grown")):
        s, ids = idx.search(queries, 10)
        assert len(idx) == len(vectors) and np.allclose(s, best, atol=1e-5)
        assert np.allclose(np.take_along_axis(scores, ids, 1), s, atol=1e-5)
    assert (tmp_path / "grown" / "passages.jsonl").read_bytes() == (tmp_path / "all" / "passages.jsonl").read_bytes()
    hits = built.search_text(run, "the cat sat", k=2)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"] and hits[0]["text"]
