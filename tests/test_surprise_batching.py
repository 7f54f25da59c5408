"""surprise judges a span's candidate edits in batches (surprise/tails.py): the greedy steps of every anchor
as one batch, every anchor's tails of a stage as one batch (transformer caches of different lengths side
by side), each distinct tail beginning judged once, the count contexts from prefix sums. Each must give
what judging every candidate alone, from scratch, gives."""

import numpy as np
import pytest
import torch

from seqlab.countmodel.tables import context_hashes, context_hashes_at, context_ids
from seqlab.models.transformer import features_at
from seqlab.run import load
from seqlab.scoring import mixing_session
from seqlab.surprise.fix import MIN_GAIN, Judge, _edit_bits_all, _edits, _greedy_all
from seqlab.surprise.tails import LN2, StepRows
from seqlab.train import train

from conftest import tiny_config

TEXT = "".join(f"call_{i % 7}(x{i % 5}, {i * 37 % 1000});\n" for i in range(300))
ORDERS = [1, 2, 3, 5, 8, 16, 64, 1024]


@pytest.fixture(scope="module")
def judges(tmp_path_factory) -> dict:
    """arch: a judge as surprise's (the network mixed with the count model) of a run trained a few steps."""
    out = {}
    for arch in ("transformer", "lstm"):
        path = tmp_path_factory.mktemp(arch)
        (path / "calls.txt").write_text(TEXT)
        run = load(train(tiny_config(path / "calls.txt", arch, steps=20), path / "run", log=lambda *a: None))
        assert run.count_model.words is not None  # training built its word table: the judge mixes it in
        out[arch] = Judge(run, mixing_session(run))
    return out


def _prefix_state(run, ids: list[int]):
    """(logits of the last token (1, V), state) of the network having read ids."""
    logits, state = run.model(torch.tensor([ids]), run.model.init_state(1, torch.device("cpu")))
    return logits[:, -1], state


def _contexts_alone(judge: Judge, text: np.ndarray) -> np.ndarray:
    """The count contexts (n, orders) of every position of a text read from its start (context_hashes), then
    its word model's (n, WORD_ORDERS) read from its start too (the judge's are read from REACH tokens before)."""
    contexts = context_hashes(text, judge.session.model.orders)
    words = judge.session.model.words
    return contexts if words is None else np.concatenate([contexts, words.contexts(text)], axis=1)


@torch.no_grad()
def _bits_alone(judge: Judge, prefix: list[int], history: np.ndarray, tail: np.ndarray) -> float:
    """A tail's bits judged on its own: the network reads prefix + tail from nothing, the count contexts
    from context_hashes of history + tail."""
    run = judge.run
    logits, _ = run.model(torch.tensor([prefix + [int(t) for t in tail[:-1]]]))
    net = torch.log_softmax(logits[0, len(prefix) - 1 :].float(), dim=-1)
    logp = judge.mixed(net, _contexts_alone(judge, np.concatenate([history, tail]))[len(history) :])
    bits = -logp.gather(1, torch.from_numpy(tail)[:, None])[:, 0] / LN2
    return float(torch.zeros(1).index_add_(0, torch.zeros(len(tail), dtype=torch.long), bits)[0])


@pytest.mark.parametrize("n_history", [0, 1, 7, 40, 1100])
def test_context_ids_are_context_hashes(n_history):
    """The count contexts of every position of every tail from prefix sums are context_hashes' of the whole
    text, and context_hashes_at's of the tokens before each position (short histories: the file's start)."""
    rng = np.random.default_rng(n_history)
    history, batch = rng.integers(0, 257, n_history), rng.integers(0, 257, (3, 9))
    ids = context_ids(history, batch, ORDERS)
    for row, tail in zip(ids, batch):
        np.testing.assert_array_equal(row, context_hashes(np.concatenate([history, tail]), ORDERS)[n_history:])
        seq = np.concatenate([np.full(1024, -1), history, tail])
        before = seq[1024 + n_history - 1 + np.arange(len(tail))[:, None] - np.arange(1024)[None, :]]
        np.testing.assert_array_equal(row, context_hashes_at(before, ORDERS))


@torch.no_grad()
def test_features_at_rows_of_different_lengths_equal_each_row_alone(judges):
    """A transformer's caches of different lengths side by side, read a few tokens on, twice: each row has
    the logits its own cache gives."""
    run = judges["transformer"].run
    tokens = run.tokenizer.encode(TEXT.encode()[:200])
    states = [_prefix_state(run, tokens[: n])[1] for n in (3, 11, 6)]
    cache = run.model.init_state(3, torch.device("cpu"))
    cache.k = [torch.cat([s.k[layer] for s in states]) for layer in range(len(cache.k))]
    cache.v = [torch.cat([s.v[layer] for s in states]) for layer in range(len(cache.v))]
    lengths = torch.tensor([3, 11, 6])
    for step in (4, 1):
        nxt = torch.tensor([tokens[n : n + step] for n in lengths.tolist()])
        together = run.model.output_layer()(features_at(run.model, nxt, cache, lengths))
        for row, state in enumerate(states):
            alone, _ = run.model(nxt[row : row + 1], state)
            torch.testing.assert_close(together[row], alone[0], rtol=1e-5, atol=1e-5)
        lengths = lengths + step


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@torch.no_grad()
def test_step_rows_equal_each_state_stepped_alone(judges, arch):
    """States of texts of different lengths stepped as one batch (a transformer's cache that the steps
    would overflow on its own): each has the logits it has stepped alone, and the states given are kept."""
    run = judges[arch].run
    tokens = run.tokenizer.encode(TEXT.encode()[:200])
    context = run.model.max_context or 64
    lengths = [3, 9, context - 2]
    states = [_prefix_state(run, tokens[:n])[1] for n in lengths]
    kept = [_prefix_state(run, tokens[:n])[1] for n in lengths]
    rows = StepRows(run.model, states, steps=3)
    if arch == "transformer":
        assert rows.batched == [0, 1]  # the third would overflow: stepped alone
    for step in range(3):
        nxt = torch.tensor([tokens[n + step] for n in lengths])
        together = rows.step(nxt)
        for row, state in enumerate(kept):
            alone, kept[row] = run.model.step(nxt[row : row + 1], state)
            torch.testing.assert_close(together[row], alone[0], rtol=1e-5, atol=1e-5)
    again, _ = run.model(torch.tensor([tokens[3:5]]), states[0])  # the first state given was not stepped
    reference, _ = _prefix_state(run, tokens[:5])
    torch.testing.assert_close(again[:, -1], reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@torch.no_grad()
def test_batched_greedy_equals_each_anchor_alone(judges, arch, mixed):
    """Every anchor's greedy continuation stepped side by side is what each gets stepped alone (the
    network step by step from its own state, the judge's counts from context_hashes); the network
    alone too, where a row's logits mixed up with another's would show."""
    judge = judges[arch] if mixed else Judge(judges[arch].run)
    run, data = judge.run, TEXT.encode()[:300]
    starts = []
    for anchor, n in ((190, 6), (194, 6), (199, 1), (230, 6)):
        logits, state = _prefix_state(run, run.tokenizer.encode(data[:anchor])[-(anchor % 9 + 6) :])
        starts.append((state, logits, judge.history(data, anchor), n))
    together = _greedy_all(judge, starts)
    for (state, logits, history, n), (expected, guesses) in zip(starts, together):
        out = []
        for i in range(n):
            contexts = _contexts_alone(judge, np.append(history, 0))[-1:] if mixed else None
            logp = judge.mixed(torch.log_softmax(logits.float(), dim=-1), contexts)
            if i == 0:
                assert guesses == logp.topk(len(guesses), dim=-1).indices[0].tolist()
            nxt = int(logp.argmax())
            out.append(run.tokenizer.token_bytes[nxt])
            history = np.append(history, nxt)
            logits, state = run.model.step(torch.tensor([nxt]), state)
        assert expected == b"".join(out)
    assert len({e for e, _ in together}) > 1 and sum(len(e) for e, _ in together) > 6


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@torch.no_grad()
def test_batched_tails_equal_each_tail_alone(judges, arch):
    """Four anchors' candidate edits (prefixes of different lengths; one near the end of its text, whose
    short tails join the others' first stage padded) judged as surprise judges them, in stages, every
    anchor's tails of a stage in one batch, each distinct tail beginning once: every tail read to its
    end has the bits it gets read alone from scratch, every one cut short could not have been
    suggested, and the best edit is the same."""
    judge = judges[arch]
    run, tok, text = judge.run, judge.run.tokenizer, TEXT.encode()[:400]
    text = text[:200] + text[201:]  # a byte lost
    groups, costs, prefixes = [], [], []
    for anchor, prefix, data in ((196, 5, text), (199, 8, text), (201, 6, text), (204, 7, text[:209])):
        ids = tok.encode(data[:anchor])[-prefix:]
        logits, state = _prefix_state(run, ids)
        edits = _edits(data, anchor, b"x1, 2", [b"(", b";", b"\n"])
        tails = [np.asarray(tok.encode(ins + data[anchor + m : anchor + 2 + 16])) for m, ins, _ in edits]
        groups.append((state, logits[0], judge.history(data, anchor), tails))
        costs.append(np.array([0.0] + [(-100.0, 1000.0, 3.0)[i % 3] for i in range(len(tails) - 1)]))
        prefixes.append([int(i) for i in ids])
    assert len({tuple(t[:2]) for t in groups[0][3]}) < len(groups[0][3])  # tails that begin alike
    batched = _edit_bits_all(judge, groups, costs)
    cut = 0
    for (_, _, history, tails), cost, ids, bits in zip(groups, costs, prefixes, batched):
        alone = np.array([_bits_alone(judge, ids, history, t) for t in tails])
        read = np.isfinite(bits)
        np.testing.assert_allclose(bits[read], alone[read], rtol=1e-4, atol=1e-3)
        gains, gains_alone = bits[0] - bits[1:] - cost[1:], alone[0] - alone[1:] - cost[1:]
        assert (gains_alone[~read[1:]] < MIN_GAIN).all()
        assert np.argmax(gains) == np.argmax(gains_alone)
        cut += int((~read).sum())
    assert cut  # the 1000-bit edits at least were cut short


def _scored(judge: Judge, data: bytes):
    """(a fresh mixing session having scored data as surprise scores it, the file's counts FileCounts)."""
    from seqlab.surprise.anomalies import score_bytes
    from seqlab.surprise.fix import FileCounts

    run = judge.run
    session = mixing_session(run)
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
    token_of_byte = score_bytes(run, tokens, True, session)[2]
    return session, FileCounts(tokens, token_of_byte + 1, run.count_model.orders, session.recent.levels)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@torch.no_grad()
def test_a_judge_of_several_spans_blends_each_row_as_its_own_spans_judge(judges, arch):
    """Judge(..., less=tables).mixed with an owner per row (blend_counts' less) gives each row what the
    judge of its own span alone gives it (the file's counts less that span's table); rows of no span
    (owner -1) get the file's counts whole."""
    run, data = judges[arch].run, TEXT.encode()[:600]
    session, counts = _scored(judges[arch], data)
    windows = [(100, 140), (130, 170), (300, 340), (520, 560)]  # the first two overlap
    tables = [counts.overlapping(lo, hi) for lo, hi in windows]
    together = Judge(run, session, counts.counted, tables)
    alone = [Judge(run, session, counts.around(lo, hi)) for lo, hi in windows] + [Judge(run, session, counts.counted)]
    rows, owner = [], []
    for k, (lo, _) in enumerate(windows + [(200, 240)]):
        history = together.history(data, lo + 5)
        batch = np.asarray(run.tokenizer.encode(data[lo + 5 : lo + 17]))[None]
        rows.append(together.contexts(history, batch)[0])
        owner += [k if k < len(windows) else -1] * batch.shape[1]
    contexts, owner = np.concatenate(rows), np.array(owner)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(owner))  # the spans' rows mixed together
    contexts, owner = contexts[order], owner[order]
    net = torch.log_softmax(torch.from_numpy(rng.normal(size=(len(owner), run.tokenizer.vocab_size))).float(), -1)
    joint = together.mixed(net, contexts, owner)
    for i, k in enumerate(owner):
        assert torch.equal(joint[i], alone[k].mixed(net[i : i + 1], contexts[i : i + 1])[0]), (i, k)
    # the tables matter here: a row judged with another span's table would differ
    differs = [i for i, k in enumerate(owner) if k >= 0 and not torch.equal(
        joint[i], alone[(k + 1) % len(windows)].mixed(net[i : i + 1], contexts[i : i + 1])[0])]
    assert len(differs) > 5


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@torch.no_grad()
def test_spans_judged_together_get_the_fixes_each_gets_alone(judges, arch):
    """suggest_fixes (several spans' greedy continuations stepped and judged as one batch, by one judge of
    all of them) gives every span the expected text and fix, gain to the last bit, that suggest_fix gives
    it alone."""
    from seqlab.surprise.fix import suggest_fix, suggest_fixes

    run, text = judges[arch].run, TEXT.encode()[:700]
    data = text[:200] + text[201:400] + text[400:402][::-1] + text[402:520] + text[521:]  # two lost, two swapped
    session, counts = _scored(judges[arch], data)
    spans = [(196, [199, 200]), (205, []), (396, [399]), (515, [518]), (40, [])]
    together = suggest_fixes(run, data, spans, session, counts)
    alone = [suggest_fix(run, data, start, session, counts, spikes) for start, spikes in spans]
    assert together == alone
    assert sum(fix is not None for _, fix in alone) >= 2 and len({e for e, _ in alone}) > 2
