"""The word model: contexts of the current partial word and the previous word, case-folded; its table on disk."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from seqlab.config import CountModelConfig
from seqlab.countmodel import CountModel, CountTable, Experts, disktable, load_count_model, save_history, store
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
    mapped = store.open_table(tmp_path / "words", store.WORD_TABLE, store.history_digest(history), mapped=True)
    memory = WordModel.build(history, BYTES).table
    for name in ("contexts", "bounds", "tokens", "counts"):
        assert np.array_equal(getattr(mapped, name), getattr(memory, name)), name
    assert store.open_table(tmp_path / "words", [1, 2]) is None  # not a table of context orders


def _scored(model: CountModel, text: np.ndarray) -> tuple[torch.Tensor, Experts]:
    """(the mixed log-probabilities of a text scored as eval scores it, after a fixed network's; the experts of its
    last chunk read again) of a count model."""
    torch.manual_seed(0)
    net = torch.log_softmax(torch.randn(len(text) - 1, len(BYTES)), dim=-1)
    targets = torch.from_numpy(text[1:])
    session = model.session("cpu")
    logp = torch.cat([out[1] for out in session.mix([(1, net, targets)], text, 1)])
    return logp, session.reader(text, 1).distributions(len(text) - 100, len(text))


@pytest.mark.parametrize("front, cache_bits", [(0, 22), (2000, 3)])
def test_the_word_table_scores_alike_mapped_or_read_through_disktable(tmp_path, monkeypatch, front, cache_bits):
    """save_history builds the word table with the count table; a load reads both mapped (up to
    counts.map_up_to_gib) or through DiskTable (beyond it: the threshold set to 0 here), and the bits are the same
    to the last one, as are the experts; without the word model they differ (the test can tell)."""
    monkeypatch.setattr(disktable, "FRONT", front)  # none of the table held in memory, or a part of it
    monkeypatch.setattr(disktable, "CACHE_BITS", cache_bits)  # a cache whose slots many contexts share
    rng = np.random.default_rng(2)
    words = ["the ", "The ", "cat ", "CAT ", "sat", ". ", "on ", "a ", "mat", "\n", "dog ", "ran"]
    history = encode("".join(rng.choice(words, 4000))).astype(np.uint16)
    text = np.concatenate([[256], encode("".join(rng.choice(words, 150)))])
    config = CountModelConfig(orders=[1, 2, 3, 5], experts=[2, 5], match_orders=[12])
    save_history(tmp_path, history, config, BYTES)
    mapped = load_count_model(tmp_path, len(BYTES), config, BYTES)
    disk = load_count_model(tmp_path, len(BYTES), replace(config, map_up_to_gib=0), BYTES)
    assert isinstance(mapped.words.table, CountTable) and isinstance(disk.words.table, disktable.DiskTable)
    assert isinstance(disk.table, disktable.DiskTable)
    (a, a_experts), (b, b_experts) = _scored(mapped, text), _scored(disk, text)
    assert torch.equal(a, b)
    for name in ("base", "row", "token", "bonus", "bucket", "small"):
        assert np.array_equal(getattr(a_experts, name), getattr(b_experts, name)), name
    without, _ = _scored(mapped.without_words(), text)
    assert not torch.equal(a, without)


def test_a_run_without_a_word_table_has_no_word_model_and_scores_as_before(tmp_path):
    """A run trained before the word model (counts/ without words/) loads without one, whatever counts.words says
    (its mixer sized for the experts it has), and scores exactly as the same count model with counts.words=false;
    add_word_table gives it one."""
    from seqlab.countmodel import add_word_table

    rng = np.random.default_rng(3)
    history = rng.choice(encode("ab cd. Ef gh\n"), 5000).astype(np.uint16)
    text = np.concatenate([[256], rng.choice(encode("ab cd. Ef gh\n"), 400)])
    config = CountModelConfig(orders=[1, 2, 3], experts=[3], match_orders=[])
    save_history(tmp_path, history, config)  # as training did before: no tokens' bytes, no word table
    assert not (tmp_path / "counts" / store.WORDS_DIR).exists()
    old = load_count_model(tmp_path, len(BYTES), config, BYTES)
    assert old.words is None and not old.config.words and config.words
    assert old.session("cpu").mixer.weights.shape[1] == 1 + len(config.experts) + 1  # + the text's own blend
    plain = load_count_model(tmp_path, len(BYTES), replace(config, words=False), BYTES)
    assert torch.equal(_scored(old, text)[0], _scored(plain, text)[0])

    add_word_table(SimpleNamespace(path=tmp_path, config=SimpleNamespace(counts=config),  # a seqlab.run.Run's parts
                                   tokenizer=SimpleNamespace(vocab_size=len(BYTES), token_bytes=BYTES)))
    new = load_count_model(tmp_path, len(BYTES), config, BYTES)
    assert new.words is not None and new.config.words
    assert not torch.equal(_scored(new, text)[0], _scored(old, text)[0])
    save_history(tmp_path, history, config)  # the count table built again keeps the word table beside it
    assert load_count_model(tmp_path, len(BYTES), config, BYTES).words is not None
