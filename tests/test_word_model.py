"""The word model: contexts of the current partial word and the previous word, case-folded; its table on disk."""

import numpy as np

from seqlab.countmodel import store
from seqlab.countmodel.session import WordModel
from seqlab.countmodel.words import REACH, word_classes, word_contexts

BYTES = [bytes([i]) for i in range(256)] + [b""]  # a byte vocabulary with BOS
LETTER, FOLDED = word_classes(BYTES)


def encode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)


def test_word_contexts_are_case_folded_and_read_the_words_before():
    text = "The cat sat. the CAT ran; a cat sat"
    ids = word_contexts(encode(text), LETTER, FOLDED)
    after = {k: ids[text.index(k) + len(k)] for k in ("The cat", "the CAT", "a cat")}
    assert np.array_equal(after["The cat"], after["the CAT"])  # both words the same, whatever their case
    assert after["The cat"][0] == after["a cat"][0]  # the current word alone: the same
    assert after["The cat"][1] != after["a cat"][1]  # with the previous word: not
    mid = text.index("sat.")  # inside a word: its letters so far
    assert ids[mid + 2][0] == ids[len(text) - 1][0] and ids[mid + 2][0] != ids[mid + 1][0]


def test_word_contexts_depend_on_the_last_reach_tokens_alone():
    """So a history is counted a shard at a time, and compress's lockstep reader keeps only REACH tokens."""
    rng = np.random.default_rng(0)
    pieces = ["a", "bb", "Word", "y" * 24, "x" * 30, " ", "  ", ". ", "\n", "-" * 8, "-" * 12]
    text = encode("".join(rng.choice(pieces, 400)))
    whole = word_contexts(text, LETTER, FOLDED)
    for i in range(len(text)):
        window = text[max(0, i - REACH) : i + 1]
        assert np.array_equal(word_contexts(window, LETTER, FOLDED)[-1], whole[i]), i
    rows = np.stack([text[:300], text[:300]])
    assert np.array_equal(word_contexts(rows, LETTER, FOLDED)[1], whole[:300])


def test_the_word_table_built_in_shards_on_disk_is_the_one_built_in_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    history = rng.choice(encode("abcdefgh ABC.\n"), 30_000).astype(np.uint16)
    monkeypatch.setattr(store, "WORD_SHARD", 4096)
    monkeypatch.setattr(store, "MERGE", 1000)
    store.build(history, store.WORD_TABLE, tmp_path / "words", (LETTER, FOLDED))
    disk = store.open_table(tmp_path / "words", store.WORD_TABLE, store.history_digest(history))
    memory = WordModel.build(history, BYTES).table
    for name in ("contexts", "bounds", "tokens", "counts"):
        assert np.array_equal(np.asarray(getattr(disk, name)), np.asarray(getattr(memory, name))), name
    assert store.open_table(tmp_path / "words", [1, 2]) is None  # not a table of context orders
