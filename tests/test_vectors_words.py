"""Word vectors: words in the same contexts are neighbours, a built-in analogy is recovered, exports read back."""

import numpy as np
import pytest
from vectors_data import analogy_text, train_tiny

from seqlab.run import load
from seqlab.similar import similar, word_vectors_of
from seqlab.vectors.words import WordVectors, find_words, occurrence_positions, training_word_vectors


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    corpus = root / "animals.txt"
    corpus.write_text(analogy_text(3000))
    return {"corpus": corpus, "forward": train_tiny(corpus, root / "fwd"),
            "backward": train_tiny(corpus, root / "bwd", backward=True)}


def test_words_are_found_with_byte_offsets_in_any_script():
    data = "Émile's café, 3 cats\n".encode()
    words, starts, ends = find_words(data)
    assert words == ["émile", "s", "café", "cats"]
    assert [data[a:b].decode() for a, b in zip(starts, ends)] == ["Émile", "s", "café", "cats"]


def test_states_are_taken_before_and_after_each_word_in_either_direction(runs):
    data = b"a cat sat"
    words, starts, ends = find_words(data)
    fwd, bwd = load(runs["forward"]), load(runs["backward"])
    tokens, before, after = occurrence_positions(fwd, data, starts, ends)
    # byte tokenizer: token i + 1 is byte i (BOS first); "cat" is bytes 2..4
    assert before[1] == 2 and after[1] == 5 and tokens[before[1]] == ord(" ")
    rtokens, rbefore, rafter = occurrence_positions(bwd, data, starts, ends)
    assert bytes(rtokens[1:].tolist()) == data[::-1]
    assert rtokens[rbefore[1]] == ord(" ") and rtokens[rafter[1]] == ord("c")  # read right to left


@pytest.mark.parametrize("backward", [False, True])
def test_words_always_in_the_same_contexts_are_each_others_nearest(runs, backward):
    wv = word_vectors_of(runs["forward"], min_count=5, backward=runs["backward"] if backward else None,
                         show_progress=False)
    assert wv.most_similar(["cat"], topn=1)[0][0] == "dog"
    assert wv.most_similar(["dog"], topn=1)[0][0] == "cat"


def test_the_analogy_built_into_the_corpus_is_recovered(runs):
    out = similar(runs["forward"], "king", plus=["woman"], minus=["man"], k=3, min_count=5, show_progress=False)
    assert out["neighbours"][0]["word"] == "queen", out
    assert set(out) >= {"word", "neighbours"} and set(out["neighbours"][0]) == {"word", "score"}


def test_vectors_are_cached_per_run_and_min_count_restricts_the_vocabulary(runs):
    run = load(runs["forward"])
    first = training_word_vectors(run, show_progress=False)
    again = training_word_vectors(run, show_progress=False)
    assert first.words == again.words and np.array_equal(first.vectors, again.vectors)
    rare = first.restrict(10**9)
    assert len(rare) == 0 and len(first.restrict(1)) == len(first)


def test_word2vec_and_projector_exports_read_back(runs, tmp_path):
    from gensim.models import KeyedVectors

    wv = word_vectors_of(runs["forward"], min_count=5, show_progress=False)
    wv.save_word2vec_format(tmp_path / "w.txt")
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "w.txt"))
    assert kv.index_to_key == wv.words
    assert kv.most_similar("cat", topn=1)[0][0] == wv.most_similar(["cat"], topn=1)[0][0]
    vec, meta = wv.save_projector(tmp_path / "proj")
    assert np.loadtxt(vec, delimiter="\t").shape == wv.vectors.shape
    assert meta.read_text().splitlines()[1].split("\t")[0] == wv.words[0]


def test_the_map_is_a_png_and_a_page_with_every_word_on_hover(runs, tmp_path):
    from seqlab.vectors.maps import draw_map

    wv = word_vectors_of(runs["forward"], min_count=5, show_progress=False)
    png, page = draw_map(wv, tmp_path / "map.png", top=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert html.count("<circle") == 2 * min(50, len(wv))  # PCA and t-SNE
    assert all(f"<title>{w} (" in html for w in wv.words[:10])


def test_save_and_load_keep_words_counts_and_vectors(tmp_path):
    wv = WordVectors(["a", "b"], np.array([3, 1]), np.eye(2, dtype=np.float32))
    wv.save(tmp_path)
    back = WordVectors.load(tmp_path)
    assert back.words == ["a", "b"] and back.counts.tolist() == [3, 1] and np.array_equal(back.vectors, wv.vectors)


def test_all_but_the_top_removes_what_frequency_adds_and_keeps_synonyms_nearest():
    from seqlab.vectors.words import postprocess

    rng = np.random.default_rng(0)
    meaning = np.repeat(rng.normal(size=(20, 64)), 2, axis=0)  # words 2i and 2i+1 are synonyms
    frequency = rng.uniform(0, 30, size=(40, 1)) * rng.normal(size=(1, 64))  # a common direction, scaled per word
    means = 50 + frequency + meaning + 0.1 * rng.normal(size=(40, 64))

    def synonyms_nearest(vectors):
        sims = vectors @ vectors.T - 2 * np.eye(40)
        return np.mean(sims.argmax(1) == np.arange(40) ^ 1)

    assert synonyms_nearest(postprocess(means, components=0)) < 0.5  # centred only: frequency decides
    kept = postprocess(means, components=1)
    assert synonyms_nearest(kept) == 1.0
    assert np.allclose(np.linalg.norm(kept, axis=1), 1, atol=1e-5)
    assert postprocess(means, components=None).shape == (40, 64)  # None: round(64 / 100) = 1 removed
    assert np.allclose(postprocess(means, components=None), kept)
    # learnt on some rows only (embed's frequent words), applied to all: the learnt rows get what they alone give
    rare = np.vstack([means, 500 * rng.normal(size=(10, 64))])
    fit = np.arange(50) < 40
    assert np.allclose(postprocess(rare, 1, fit)[:40], kept, atol=1e-5)
    assert not np.allclose(postprocess(rare, 1)[:40], kept, atol=1e-2)


def test_inside_states_are_the_mean_over_each_words_own_tokens(runs):
    from seqlab.vectors.embed import states_at
    from seqlab.vectors.words import word_state_sums

    run = load(runs["forward"])
    data = b"the cat sat on the mat. a dog ran."
    words, starts, ends = find_words(data)
    ids = np.array([sorted(set(words)).index(w) for w in words])
    inside, before = word_state_sums(run, data, starts, ends, ids, len(set(words)), ["inside", "before"])
    tokens, at_before, at_after = occurrence_positions(run, data, starts, ends)
    expected = np.zeros_like(inside)
    for i, b, a in zip(ids, at_before, at_after):
        expected[i] += states_at(run.model, tokens, np.arange(b + 1, a + 1), run.device).mean(0)
    assert np.allclose(inside, expected, atol=1e-5)
    assert np.allclose(before[ids[1]], states_at(run.model, tokens, at_before[[1]], run.device)[0], atol=1e-5)


def test_the_cache_keeps_raw_sums_and_every_load_post_processes_them_the_same(runs, tmp_path):
    from seqlab.vectors.words import Accumulator, postprocess, training_texts, word_sums

    run = load(runs["forward"])
    first = training_word_vectors(run, show_progress=False, components=2)  # computed (or loaded) ...
    again = training_word_vectors(run, show_progress=False, components=2)  # ... then loaded from the cache
    other = training_word_vectors(run, show_progress=False, components=0)
    assert np.array_equal(first.vectors, again.vectors) and not np.allclose(first.vectors, other.vectors)
    acc = word_sums(run, training_texts(run.config)[1]())
    acc.save(tmp_path)
    back = Accumulator.load(tmp_path)
    means = acc.sums[0][: len(acc.ids)] / acc.counts[:, None]
    assert np.allclose(back.vectors(2).vectors, postprocess(means, 2), atol=1e-6)
    assert np.allclose(first.vectors, back.vectors(2).vectors, atol=1e-6)
    m = int(np.median(acc.counts)) + 1
    frequent = acc.counts >= m  # the vocabulary's own centre and directions, not the rarer words'
    assert 0 < frequent.sum() < len(frequent)
    assert np.allclose(back.vectors(2, min_count=m).vectors, postprocess(means[frequent], 2), atol=1e-6)
    assert np.allclose(training_word_vectors(run, show_progress=False, components=2, min_count=m).vectors,
                       postprocess(means[frequent], 2), atol=1e-6)
