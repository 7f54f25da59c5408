"""The word objective (`seqlab tune --objective words`): skip-gram word rows started from a run's word states, or a
head on them, make words that share their contexts nearest, are deterministic with a seed, and `similar` and
`embed --unit word` use them; with --max-steps the network's weights move with the objective first
(vectors/joint.py)."""

import json
import os
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from vectors_data import analogy_text, train_tiny

from seqlab.__main__ import main
from seqlab.errors import SeqlabError
from seqlab.run import load
from seqlab.similar import word_vectors_of
from seqlab.vectors.joint import Occurrences, Streams, move_network, occurrence_features, window_pairs
from seqlab.vectors.skipgram import (HEAD_FILE, ROWS_FILE, StateEncoder, WordHead, WordRows, WordsConfig, epoch_pairs,
                                     fitted_map, keep_probabilities, optimizers_for, principal_coordinates, set_rates,
                                     skipgram_pairs, standardised, start_rows, train_rows, train_skipgram, train_step,
                                     word_sequences)
from seqlab.vectors.embed import read_vectors
from seqlab.vectors.words import Accumulator, accumulate_text
from seqlab.vectors.words import (cached_sums, find_words, occurrence_positions, training_texts, word_state_sums,
                                  word_sums)

PAIRS = [("cat", "dog"), ("red", "blue"), ("run", "walk"), ("king", "queen"), ("salt", "sand")]


def paired_corpus(n_sentences: int = 2000, seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    """(words, documents of word ids): the two words of each pair always stand between the same words, which
    no other word does; filler words sit anywhere."""
    rng = random.Random(seed)
    words = [w for pair in PAIRS for w in pair] + [f"{side}{k}" for k in range(len(PAIRS)) for side in "abcd"]
    words += ["the", "of", "and"]
    ids = {w: i for i, w in enumerate(words)}
    documents = []
    for _ in range(10):
        doc = []
        for _ in range(n_sentences // 10):
            k = rng.randrange(len(PAIRS))
            doc += [f"a{k}", f"b{k}", rng.choice(PAIRS[k]), f"c{k}", f"d{k}", rng.choice(["the", "of", "and"])]
        documents.append(np.array([ids[w] for w in doc], np.int64))
    return words, documents


def nearest(vectors: np.ndarray) -> np.ndarray:
    sims = vectors @ vectors.T - 3 * np.eye(len(vectors))
    return sims.argmax(1)


def trained_head(seed: int = 0, epochs: int = 4) -> tuple[np.ndarray, np.ndarray, StateEncoder]:
    words, documents = paired_corpus()
    counts = np.bincount(np.concatenate(documents), minlength=len(words))
    # features with nothing of the pairs in them: the objective alone must bring each pair together
    features = np.random.default_rng(1).normal(size=(len(words), 64))
    cfg = WordsConfig(form="head", dim=16, window=2, epochs=epochs, batch_size=256, lr=1e-2, sample=0, min_count=1,
                      seed=seed)
    encoder = StateEncoder(features, cfg.dim, seed)
    before = encoder.head("before").vectors(features)
    train_skipgram(encoder, counts, documents, cfg)
    return before, encoder.head("before").vectors(features), encoder


def test_pairs_stay_in_the_window_and_nearer_words_count_more():
    seq = np.arange(2000)
    centre, context = skipgram_pairs(seq, 3, np.random.default_rng(0))
    distance = np.abs(centre - context)
    assert distance.min() == 1 and distance.max() == 3
    share = np.bincount(distance)[1:] / len(distance)
    assert share[0] > share[1] > share[2] > 0  # word2vec's reduced window: reach b drawn in 1..window
    signed = np.bincount(context - centre + 3)  # distances -3..3 at 0..6
    assert signed[3] == 0 and all(abs(signed[3 - d] - signed[3 + d]) < 0.05 * signed[3 + d] for d in (1, 2, 3))
    again = skipgram_pairs(seq, 3, np.random.default_rng(0))
    assert np.array_equal(again[0], centre) and np.array_equal(again[1], context)


def test_pairs_in_the_texts_order_are_the_shuffled_ones_centre_by_centre():
    words, sentence = np.arange(600), np.arange(600) // 40  # a word's id is its position
    keep = np.ones(600)
    shuffled = epoch_pairs(words, sentence, keep, 3, np.random.default_rng(0))
    ordered = epoch_pairs(words, sentence, keep, 3, np.random.default_rng(0), shuffle=False)
    assert sorted(zip(*shuffled)) == sorted(zip(*ordered))
    assert np.all(np.diff(ordered[0]) >= 0) and not np.all(np.diff(shuffled[0]) >= 0)


def test_pairs_stay_inside_their_sentence():
    seq = np.arange(600)
    sentence = np.arange(600) // 7  # sentences of 7 words
    centre, context = skipgram_pairs(seq, 3, np.random.default_rng(0), sentence)
    assert len(centre) and np.array_equal(sentence[centre], sentence[context])
    across = skipgram_pairs(seq, 3, np.random.default_rng(0))  # without sentences the windows run on
    assert np.any(sentence[across[0]] != sentence[across[1]])


def test_each_line_is_a_sentence_of_the_vocabulary_words():
    acc = Accumulator()
    acc.word_ids(["the", "cat", "sat", "rare", "dog"])
    keep = np.array([0, 1, 2, 4])  # "rare" is left out, as below min_count
    texts = [b"The cat sat.\nrare dog\n\ncat", b"dog the"]
    got = word_sequences(acc, keep, texts)
    assert [list(s) for s in got] == [[0, 1, 2], [3], [1], [3, 0]]


def one_step(pairs: int, rate: float = 0.1, negatives: int = 2):
    """Free input rows and zero output rows (as word2vec starts) after one step on `pairs` copies of the pair
    (word 0, context 1), the noise drawing only word 2."""
    inputs = torch.nn.Embedding(5, 4, sparse=True)
    torch.nn.init.uniform_(inputs.weight, -1, 1, generator=torch.Generator().manual_seed(0))
    outputs = torch.nn.Embedding(5, 4, sparse=True)
    torch.nn.init.zeros_(outputs.weight)
    start = inputs.weight.detach().clone()
    optimizers = optimizers_for([inputs, outputs], WordsConfig(lr=rate))
    assert [type(o) for o, _, _ in optimizers] == [torch.optim.SGD]  # rows only: no dense map, no Adam
    noise = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    train_step(inputs(torch.zeros(pairs, dtype=torch.long)), outputs, torch.ones(pairs, dtype=torch.long), noise,
               torch.Generator().manual_seed(0), negatives, optimizers)
    return start, inputs.weight.detach(), outputs.weight.detach()


def test_a_step_moves_only_its_own_rows_by_word2vecs_update():
    start, inputs, outputs = one_step(pairs=1)
    v = start[0]
    # word2vec: the output row of a target moves by rate (label - sigmoid(0)) v; the input's by sum g u = 0 here
    assert torch.allclose(outputs[1], 0.1 * 0.5 * v) and torch.allclose(outputs[2], -2 * 0.1 * 0.5 * v)
    assert torch.equal(outputs[[0, 3, 4]], torch.zeros(3, 4)) and torch.equal(inputs, start)
    _, _, twice = one_step(pairs=2)  # the loss is summed over pairs: two pairs move a row twice as far
    assert torch.allclose(twice[1], 2 * outputs[1])


def test_the_compiled_step_of_the_rows_is_torchs_sparse_step():
    from seqlab.vectors.sgns import train_steps

    rng = np.random.default_rng(5)
    start, outputs = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32)
    centres, contexts = np.array([0, 0, 3, 4, 0, 1]), np.array([1, 2, 4, 3, 5, 0])  # a row twice, an output twice
    noise = np.array([0, 0, 0, 0, 0, 1.0])  # every negative is word 5, in both
    rows, outs = start.copy(), outputs.copy()
    losses = train_steps(rows, outs, centres, contexts, np.cumsum(noise), 2, 6, 0.1, 0.1, 0.0, 1.0, 0)
    inputs = torch.nn.Embedding.from_pretrained(torch.from_numpy(start.copy()), freeze=False, sparse=True)
    out = torch.nn.Embedding.from_pretrained(torch.from_numpy(outputs.copy()), freeze=False, sparse=True)
    expected = train_step(inputs(torch.from_numpy(centres)), out, torch.from_numpy(contexts),
                          torch.from_numpy(noise), torch.Generator().manual_seed(0), 2,
                          optimizers_for([inputs, out], WordsConfig(lr=0.1)))
    assert np.allclose(rows, inputs.weight.detach().numpy(), atol=1e-5)
    assert np.allclose(outs, out.weight.detach().numpy(), atol=1e-5)
    assert len(losses) == 1 and np.isclose(losses[0], expected, atol=1e-5)


def test_a_dense_map_gets_adam_and_the_rates_fall_linearly():
    encoder = StateEncoder(np.random.default_rng(0).normal(size=(6, 8)), 3)
    cfg = WordsConfig(lr=0.025, min_lr=1e-4, map_lr=2e-3)
    optimizers = optimizers_for([encoder, torch.nn.Embedding(6, 3, sparse=True)], cfg)
    assert [type(o) for o, _, _ in optimizers] == [torch.optim.SGD, torch.optim.Adam]
    assert optimizers[1][0].param_groups[0]["params"][0] is encoder.proj.weight
    for done, rows, dense in [(0, 0.025, 2e-3), (0.5, (0.025 + 1e-4) / 2, (2e-3 + 2e-5) / 2), (1, 1e-4, 2e-5)]:
        set_rates(optimizers, done)
        assert [o.param_groups[0]["lr"] for o, _, _ in optimizers] == pytest.approx([rows, dense])


def test_frequent_words_are_down_sampled_and_rare_ones_kept():
    counts = np.array([100_000, 10_000, 100, 1])
    keep = keep_probabilities(counts, 1e-3)
    assert keep[0] < keep[1] < keep[2] == keep[3] == 1.0
    assert np.all(keep_probabilities(counts, 0) == 1.0)


def test_the_objective_makes_words_that_share_their_contexts_nearest():
    before, after, _ = trained_head()
    partner = np.arange(2 * len(PAIRS)) ^ 1
    assert np.mean(nearest(before)[: 2 * len(PAIRS)] == partner) < 0.5  # random features: pairs not nearest
    assert np.array_equal(nearest(after)[: 2 * len(PAIRS)], partner)
    assert np.allclose(np.linalg.norm(after, axis=1), 1, atol=1e-5)


def test_training_is_deterministic_with_a_seed():
    _, first, _ = trained_head(seed=3, epochs=1)
    _, again, _ = trained_head(seed=3, epochs=1)
    _, other, _ = trained_head(seed=4, epochs=1)
    assert np.array_equal(first, again) and not np.allclose(first, other)


def test_the_head_saves_and_loads_as_it_was(tmp_path):
    _, vectors, encoder = trained_head(epochs=1)
    encoder.head("before+inside").save(tmp_path, {"dim": 16})
    back = WordHead.of(tmp_path)
    assert back.states == "before+inside" and (tmp_path / HEAD_FILE).exists()
    features = np.random.default_rng(1).normal(size=(len(vectors), 64))
    assert np.allclose(back.vectors(features), vectors, atol=1e-5)
    assert WordHead.of(tmp_path / "nothing") is None


def trained_rows(seed: int = 0, epochs: int = 3, start: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(the rows' start, the trained rows) on the paired corpus, started from features that hold nothing of the
    pairs."""
    words, documents = paired_corpus()
    counts = np.bincount(np.concatenate(documents), minlength=len(words))
    features = np.random.default_rng(1).normal(size=(len(words), 64))
    cfg = WordsConfig(dim=16, epochs=epochs, sample=0, min_count=1, seed=seed, start=start)
    return start_rows(features, cfg.dim, cfg.start, seed), train_rows(features, counts, documents, cfg)[0]


def test_word_rows_default_to_word2vecs_window_and_order_and_the_head_to_its_own():
    assert (WordsConfig().form, WordsConfig().window, WordsConfig().shuffle) == ("rows", 5, False)
    assert (WordsConfig(form="head").window, WordsConfig(form="head").shuffle) == (2, True)
    assert WordsConfig(window=3, shuffle=True).window == 3
    with pytest.raises(SeqlabError, match="form"):
        WordsConfig(form="table")


def test_the_rows_start_along_the_states_principal_coordinates():
    features = np.random.default_rng(2).normal(size=(40, 8)) @ np.diag([5, 4, 3, 2, 1, 1, 1, 1.0])
    start = start_rows(standardised(features)[0], 12, 0.3, seed=0)
    assert np.allclose(np.linalg.norm(start[:, :8], axis=1), 0.3)
    coords = principal_coordinates(standardised(features)[0], 8)
    assert np.allclose(start[:, :8] * np.linalg.norm(coords, axis=1, keepdims=True), 0.3 * coords)
    assert np.all(start[:, 8:] != 0) and np.all(np.abs(start[:, 8:]) <= 0.5 / 12)  # beyond the rank: noise
    noise = start_rows(features, 12, 0.0, seed=0)  # length 0: word2vec's start
    assert np.all(np.abs(noise) <= 0.5 / 12) and np.array_equal(noise[:, 8:], start[:, 8:])


def test_word_rows_make_words_that_share_their_contexts_nearest_deterministically():
    start, rows = trained_rows()
    partner = np.arange(2 * len(PAIRS)) ^ 1
    assert np.mean(nearest(start)[: 2 * len(PAIRS)] == partner) < 0.5  # features without the pairs
    assert np.array_equal(nearest(rows)[: 2 * len(PAIRS)], partner)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    assert np.array_equal(rows, trained_rows()[1]) and not np.allclose(rows, trained_rows(seed=1)[1])


def test_the_map_gives_the_rows_of_words_it_can_and_other_words_their_mapped_states(tmp_path):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 10))
    rows = features @ rng.normal(size=(10, 4))  # rows the features determine: the map finds them
    proj = fitted_map(features, rows)
    assert proj.shape == (4, 10) and np.allclose(features @ proj.T, rows, atol=1e-2 * np.abs(rows).max())
    fit = WordHead(proj, np.zeros(10), np.ones(10), "before")
    table = WordRows(["a", "b"], np.eye(4, dtype=np.float32)[:2], np.array([7, 5]), fit)
    table.save(tmp_path, {"dim": 4})
    back = WordRows.of(tmp_path)
    assert back.words == ["a", "b"] and back.states == "before" and (tmp_path / ROWS_FILE).exists()
    got = back.vectors(features[:3], ["b", "zebra", "a"])
    assert np.array_equal(got[0], [0, 1, 0, 0]) and np.array_equal(got[2], [1, 0, 0, 0])
    assert np.allclose(got[1], fit.vectors(features[1:2])[0], atol=1e-6)  # not a row: the map of its states
    assert WordRows.of(tmp_path / "nothing") is None


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    # the tests' private cache (conftest's _private_cache) is set per test, after a module's fixtures
    os.environ.setdefault("SEQLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    root = tmp_path_factory.mktemp("skipgram")
    corpus = root / "animals.txt"
    corpus.write_text(analogy_text(3000))
    run = train_tiny(corpus, root / "fwd")
    out = root / "words"
    flags = ["--dim", "16", "--epochs", "1", "--batch-size", "64", "--lr", "1e-2", "--seed", "0"]
    assert main(["tune", str(run), str(corpus), "--objective", "words", "--out", str(out), *flags]) == 0
    head = root / "head"
    assert main(["tune", str(run), str(corpus), "--objective", "words", "--form", "head", "--out", str(head),
                 *flags]) == 0
    return {"corpus": corpus, "run": run, "out": out, "head": head}


def test_tune_words_writes_a_run_whose_rows_similar_info_and_embed_use(tuned, tmp_path, capsys):
    record = json.loads((tuned["out"] / "tune.json").read_text())
    assert (record["form"], record["window"], record["shuffle"], record["start"]) == ("rows", 5, False, 0.3)
    rows = WordRows.of(tuned["out"])
    wv = word_vectors_of(tuned["out"], min_count=5, show_progress=False)
    assert wv.words == rows.words and np.array_equal(wv.vectors, rows.rows)
    assert main(["similar", str(tuned["out"]), rows.words[0], "--json"]) == 0
    assert main(["info", str(tuned["out"])]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"tuned:      from {tuned['run'].resolve()}: word rows ({len(rows.words):,} words x 16, before+inside states, "
        f"{record['steps']:,} steps)")
    text = tmp_path / "zoo.txt"
    text.write_text(f"the zebra and the {rows.words[0]} sat by the okapi.\n")
    assert main(["embed", str(tuned["out"]), str(text), "--unit", "word", "--out", str(tmp_path / "e"),
                 "--json"]) == 0
    vectors, meta, info = read_vectors(tmp_path / "e")
    assert info["dim"] == 16 and info["tuned_words"] == "rows" and info["states"] == WordsConfig.states
    at = {m["word"]: i for i, m in enumerate(meta)}
    assert np.array_equal(vectors[at[rows.words[0]]], rows.rows[0])  # a word of the rows: its row
    run = load(tuned["out"])
    acc = Accumulator()
    accumulate_text(acc, [run], text.read_bytes(), rows.states)
    zebra = acc.ids["zebra"]
    means = np.concatenate([s[zebra : zebra + 1] / acc.counts[zebra] for s in acc.sums], axis=1)
    assert np.allclose(vectors[at["zebra"]], rows.fit.vectors(means)[0], atol=1e-5)  # a new word: the map


def test_tune_words_with_a_head_writes_a_run_whose_head_similar_and_embed_use(tuned, tmp_path):
    record = json.loads((tuned["head"] / "tune.json").read_text())
    assert record["objective"] == "words" and record["dim"] == 16 and record["states"] == WordsConfig.states
    assert (record["form"], record["window"], record["shuffle"]) == ("head", 2, True)
    tuned = tuned | {"out": tuned["head"]}
    wv = word_vectors_of(tuned["out"], min_count=5, show_progress=False)
    plain = word_vectors_of(tuned["run"], min_count=5, show_progress=False)
    assert wv.vectors.shape == (len(plain), 16) and wv.words == plain.words
    run, head = load(tuned["out"]), WordHead.of(tuned["out"])
    acc = word_sums(run, training_texts(run.config)[1](), states=head.states)  # the head reads these averages
    keep = np.flatnonzero(acc.counts >= 5)
    means = np.concatenate([s[keep] / acc.counts[keep, None] for s in acc.sums], axis=1)
    assert [list(acc.ids)[i] for i in keep] == wv.words
    assert np.allclose(wv.vectors, head.vectors(means), atol=1e-5)
    assert main(["embed", str(tuned["out"]), str(tuned["corpus"]), "--unit", "word", "--out", str(tmp_path / "e"),
                 "--json"]) == 0
    info = json.loads((tmp_path / "e" / "info.json").read_text())
    assert info["dim"] == 16 and info["tuned_words"] == "head" and info["states"] == WordsConfig.states


def test_a_second_tune_of_a_run_reuses_its_reading_of_the_split(tuned, tmp_path, monkeypatch):
    assert cached_sums(tuned["run"], WordsConfig.states) is not None  # the fixture's first tune left it

    def read(*args, **kwargs):
        raise AssertionError("the split was read again")

    monkeypatch.setattr("seqlab.vectors.joint.word_sums", read)
    assert main(["tune", str(tuned["run"]), str(tuned["corpus"]), "--objective", "words", "--out",
                 str(tmp_path / "again"), "--dim", "8", "--epochs", "1", "--seed", "1"]) == 0
    assert WordRows.of(tmp_path / "again").rows.shape[1] == 8


@pytest.mark.parametrize("form", ["out", "head"])
@pytest.mark.parametrize("extra", [["--backward", "RUN"], ["--states", "after"]])
def test_options_the_tuned_words_replace_are_refused(tuned, form, extra, capsys):
    extra = [str(tuned["run"]) if e == "RUN" else e for e in extra]
    assert main(["similar", str(tuned[form]), "cat", *extra]) == 2
    assert "word vectors" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--states", "inside"], ["--form", "head"], ["--window", "3"], ["--start", "1"]])
def test_the_other_objectives_flags_are_refused(tuned, tmp_path, flags, capsys):
    assert main(["tune", str(tuned["run"]), str(tuned["corpus"]), "--out", str(tmp_path / "x"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flags[0] in err


def test_a_start_for_a_head_is_refused(tuned, tmp_path, capsys):
    assert main(["tune", str(tuned["run"]), str(tuned["corpus"]), "--objective", "words", "--form", "head",
                 "--start", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--form rows" in capsys.readouterr().err


# ---- the network moves with the objective (vectors/joint.py) ----------------------------------------------

def test_streams_read_their_shares_in_order_and_start_again_at_the_end():
    streams = Streams(1000, 4, 64)
    assert (streams.rows, streams.length, streams.share) == (4, 64, 249)
    seen = [streams.next() for _ in range(8)]
    assert [fresh for _, fresh in seen] == [True, False, False, True, False, False, True, False]
    assert np.array_equal(seen[1][0] - seen[0][0], [64] * 4)
    assert all(starts.max() + 64 + 1 <= 1000 for starts, _ in seen)  # the targets stay inside the stream
    tight = Streams(128, 1, 64)  # room for one window and its targets only: every window starts afresh
    assert tight.share == 127 and [(int(s[0]), f) for s, f in (tight.next() for _ in range(3))] == [(0, True)] * 3
    small = Streams(20, 32, 64)  # a stream shorter than one window: one row, as long as the stream allows
    assert (small.rows, small.length) == (1, 19) and small.next()[1]


def test_pairs_join_occurrences_inside_one_window_and_within_reach():
    n = 400
    before = np.arange(0, n, 4)  # a word every 4 tokens, 2 tokens long
    occ = Occurrences(np.zeros(n + 4, np.int64), before, before + 2, np.arange(len(before)) % 7, np.full(7, 100))
    starts = np.array([0, 130, 250])
    centres, rows, contexts = window_pairs(occ, starts, 64, 2, np.ones(7), np.random.default_rng(0))
    assert len(centres) and set(rows) == {0, 1, 2}
    for index in (centres, contexts):
        assert np.all(occ.before[index] >= starts[rows]) and np.all(occ.after[index] <= starts[rows] + 63)
    assert set(np.abs(centres - contexts)) == {1, 2}


def test_occurrence_features_are_the_states_the_word_averages_read(tuned):
    run = load(tuned["run"])
    data = b"the cat sat on the mat. my dog eats fish. a royal queen came."
    words, starts, ends = find_words(data)
    tokens, before, after = occurrence_positions(run, data, starts, ends)
    each = np.arange(len(words))  # every occurrence its own word: the sums are its states
    expected = np.concatenate(word_state_sums(run, data, starts, ends, each, len(words), ["before", "inside"]), 1)
    with torch.no_grad():
        feats = run.model.features(torch.from_numpy(tokens)[None])[0]  # (1, T, C): from BOS, as the text is read
    got = occurrence_features(feats, before, after, np.zeros(len(words), np.int64), "before+inside")
    assert got.shape == expected.shape and np.allclose(got.numpy(), expected, atol=1e-4)


def moved_weights(run_dir, **cfg) -> tuple[dict, dict]:
    run = load(run_dir)
    record = move_network(run, training_texts(run.config)[1](), WordsConfig(dim=8, min_count=5, **cfg))
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}, record


def test_the_skipgram_loss_reaches_the_networks_weights_deterministically(tuned):
    start = {k: v.clone() for k, v in load(tuned["run"]).model.state_dict().items()}
    moved, record = moved_weights(tuned["run"], network_steps=3, lm_weight=0.0)  # the word objective alone
    again, _ = moved_weights(tuned["run"], network_steps=3, lm_weight=0.0)
    assert record["network_steps_done"] == 3 and record["skipgram_first"] > 0
    trunk = [k for k in start if "embed" in k or "layers" in k]  # below the states: only skip-gram moves them
    assert trunk and all(not torch.equal(start[k], moved[k]) for k in trunk)
    assert all(torch.equal(moved[k], again[k]) for k in moved)


def test_tune_words_with_steps_saves_the_moved_network_and_what_it_did(tuned, tmp_path):
    out = tmp_path / "moved"
    assert main(["tune", str(tuned["run"]), str(tuned["corpus"]), "--objective", "words", "--out", str(out),
                 "--dim", "8", "--epochs", "1", "--max-steps", "4", "--seed", "0"]) == 0
    record = json.loads((out / "tune.json").read_text())
    assert record["network_steps_done"] == 4 and record["lm_weight"] == WordsConfig.lm_weight
    assert record["next_token_last"] > 0 and (out / ROWS_FILE).exists()
    before = load_file(str(tuned["run"] / "checkpoint.safetensors"))
    after = load_file(str(out / "checkpoint.safetensors"))
    weights = before.keys() & after.keys()  # the run's own checkpoint also holds its optimiser's state
    assert weights and any(not torch.equal(before[k], after[k]) for k in weights)
    assert load(out).model is not None  # an ordinary run
    kept = cached_sums(out, WordsConfig.states)  # the tune's reading is what `similar` uses: no second reading
    assert kept is not None and len(kept.sums) == 2  # before and inside
