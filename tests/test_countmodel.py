"""The count model mixed in when scoring: exact counts, causal, and it catches long repeats."""

from collections import Counter

import numpy as np
import pytest
import torch

from seqlab.config import CountModelConfig
from seqlab.countmodel import CountModel, CountTable, RecentCounts, context_hashes, dense_counts
from seqlab.models import build_model
from seqlab.run import Run
from seqlab.scoring import run_token_bits, score_logits

from conftest import TINY


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


def test_distributions_are_normalised_and_causal():
    rng = np.random.default_rng(1)
    history = rng.integers(0, 7, 2000)
    model = CountModel(history, 7, CountModelConfig(chunk=16, experts=[2, 24]))
    text = rng.integers(0, 7, 120)

    def read(tokens):
        reader = model.session("cpu").reader(tokens, 1)
        reader.advance(40)
        return np.exp(reader.distributions(40, 120)[0])  # (n, experts, vocab)

    p = read(text)
    assert p.shape == (80, 3, 7)  # the two blends, then the match expert and np.allclose(p.sum(-1), 1, atol=1e-5) and (p > 0).all()
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
    experts, bucket = model.session("cpu").reader(text, 1).distributions(1, len(text))
    match = np.exp(experts[:, -1])  # (n, V)
    copied = np.arange(100 + 64, len(text)) - 1  # rows whose 64 tokens before are all copied
    assert (bucket[copied] == len(config.orders) + 2).all()  # the second match order
    assert np.allclose(match[copied, text[copied + 1]], 0.99)
    fresh = np.arange(40, 99) - 1
    assert (bucket[fresh] <= len(config.orders)).all() and np.allclose(match[fresh], 1 / 50)


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
