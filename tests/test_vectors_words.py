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
    tokens, before = occurrence_positions(fwd, data, starts, ends, "before")
    _, after = occurrence_positions(fwd, data, starts, ends, "after")
    # byte tokenizer: token i + 1 is byte i (BOS first); "cat" is bytes 2..4
    assert before[1] == 2 and after[1] == 5 and tokens[before[1]] == ord(" ")
    rtokens, rbefore = occurrence_positions(bwd, data, starts, ends, "before")
    _, rafter = occurrence_positions(bwd, data, starts, ends, "after")
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
