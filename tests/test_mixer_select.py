"""The mixer's additions: weight sets selected by small contexts, and the SSE stage on the top token."""

import numpy as np
import torch

from seqlab.config import CountModelConfig
from seqlab.countmodel import CountModel, Experts, OnlineMixer
from seqlab.countmodel.mixer import SSE, SLOT_BITS
from seqlab.countmodel.session import WordModel

V = 8


def two_context_chunk(rng, n: int = 256):
    """A chunk where the order-1 context (slot 0 or 1) says whom to trust: in context 0 the network puts 0.9 on
    the target and the one expert 0.9 on a wrong token; in context 1 the other way round."""
    targets = rng.integers(0, V, n)
    wrong = (targets + 1 + rng.integers(0, V - 1, n)) % V
    context = rng.integers(0, 2, n)
    net_pick = np.where(context == 0, targets, wrong)
    expert_pick = np.where(context == 0, wrong, targets)
    net = np.full((n, V), np.log(0.1 / (V - 1)))
    net[np.arange(n), net_pick] = np.log(0.9)
    base = np.full((n, 1), np.log(0.1 / (V - 1)), dtype=np.float32)
    bonus = np.full((n, 1), np.log(0.9) - np.log(0.1 / (V - 1)), dtype=np.float32)
    small = np.column_stack([context, np.zeros(n), np.ones(n)]).astype(np.int64)
    experts = Experts(base, np.arange(n), expert_pick, bonus, np.ones(n, dtype=np.int64), small)
    return torch.tensor(net, dtype=torch.float32), experts, torch.from_numpy(targets)


def config(**settings) -> CountModelConfig:
    return CountModelConfig(orders=[1, 2], experts=[2], match_orders=[], recent_expert=False,
                            **{"words": False, **settings})


def last_chunk_bits(mixer: OnlineMixer, chunks: int = 40) -> float:
    rng = np.random.default_rng(0)
    for _ in range(chunks):
        net, experts, targets = two_context_chunk(rng)
        mixer.learn(mixer.premix(net, experts), net, experts, targets)
    net, experts, targets = two_context_chunk(rng)
    return float(-mixer.mix(net, experts).gather(1, targets[:, None]).mean() / np.log(2))


def test_weight_sets_selected_by_the_order1_context_learn_whom_to_trust_there():
    """One weight row per bucket cannot say 'network here, counts there'; a set selected by order-1 can."""
    plain = last_chunk_bits(OnlineMixer(config(select=[]), "cpu"))
    selected = last_chunk_bits(OnlineMixer(config(select=["order1"]), "cpu"))
    assert plain > 1.0  # about a coin toss between the two 0.9 guesses
    assert selected < 0.5 * plain


def test_a_fresh_weight_set_mixes_as_the_buckets_alone():
    rng = np.random.default_rng(1)
    net, experts, _ = two_context_chunk(rng)
    torch.testing.assert_close(OnlineMixer(config(select=["order1", "order2", "seen"]), "cpu").mix(net, experts),
                               OnlineMixer(config(select=[]), "cpu").mix(net, experts))


def test_sse_learns_that_an_overconfident_top_token_is_right_half_the_time():
    rng = np.random.default_rng(2)
    sse = SSE(0.5, 1 << SLOT_BITS, "cpu")
    n, context = 512, torch.zeros(512, dtype=torch.long)
    logp = torch.full((n, V), np.log(0.1 / (V - 1)))
    logp[:, 0] = np.log(0.9)  # token 0 at 0.9, right half the time
    before, raw = [], []
    for _ in range(20):
        targets = torch.from_numpy(np.where(rng.random(n) < 0.5, 0, rng.integers(1, V, n)))
        refined = sse.refine(logp, context)
        before.append(float(-refined.gather(1, targets[:, None]).mean()))
        raw.append(float(-logp.gather(1, targets[:, None]).mean()))
        sse.learn(logp, context, targets)
    torch.testing.assert_close(refined.exp().sum(1), torch.ones(n))
    assert abs(before[0] - raw[0]) < 0.02  # starts near the identity
    assert float(refined[0, 0].exp()) < 0.75  # 0.5 * 0.9 + 0.5 * 0.5 = 0.7 once learnt
    assert before[-1] < raw[-1] - 0.1
    other = sse.refine(logp, torch.ones(n, dtype=torch.long))  # another context's cells learnt nothing
    assert float(other[0, 0].exp()) > 0.85


def test_the_mix_and_its_small_contexts_are_causal():
    """A token's mixed probability is the same whether or not later tokens exist: scoring a text and its first
    half give the same log-probabilities over the half (the count model's own chunks, small contexts, SSE, the
    word model)."""
    rng = np.random.default_rng(3)
    history = rng.integers(0, V, 4000)
    words = WordModel.build(history, [b"a", b"B", b"b", b" ", b".", b"c", b"C", b"\n"])  # case-folded words too
    model = CountModel(history, V, config(select=["order1", "order2", "seen"], sse=0.5, sse_context="order1",
                                          chunk=32, words=True), words=words)
    text = rng.integers(0, V, 400)
    net = torch.log_softmax(torch.randn(len(text) - 1, V), dim=-1)
    stream = [(1, net, torch.from_numpy(text[1:]))]
    whole = torch.cat([lp for _, lp, _, _ in model.session("cpu").mix(iter(stream), text, 1)])
    half = [(1, net[:199], torch.from_numpy(text[1:200]))]
    first = torch.cat([lp for _, lp, _, _ in model.session("cpu").mix(iter(half), text[:200], 1)])
    torch.testing.assert_close(whole[:199], first)


def test_a_run_config_from_before_the_weight_sets_loads_with_them(tmp_path):
    """A run whose config.json predates counts.select / sse / sse_context loads, and mixes with today's defaults."""
    import dataclasses

    from seqlab.config import RunConfig, from_dict

    data = dataclasses.asdict(RunConfig())
    for key in ("select", "sse", "sse_context"):
        del data["counts"][key]
    counts = from_dict(RunConfig, data).counts
    assert (counts.select, counts.sse, counts.sse_context) == (["order1", "warmth"], 0.25, "seen")
    mixer = OnlineMixer(counts, "cpu")
    assert [column for column, _, _ in mixer.sets] == [0, 3] and mixer.sse is not None


def test_warmth_leaves_warm_positions_alone_and_flattens_a_texts_first_token():
    """The warmth sets: a position with 64+ tokens of its text read mixes exactly as without them, and stays so
    after learning (its bucket has no row); the first token after BOS is mixed with the network's weight at
    WARMTH_PRIOR[1] of its prior and the experts' lowered by as much of their average prior: flatter."""
    from seqlab.countmodel.selectors import WARMTH_COLUMN, WARMTH_LEVELS, WARMTH_PRIOR, warmth

    assert list(warmth(np.array([1, 2, 3, 4, 63, 64, 10_000]), 7)) == [1, 2, 2, 3, 6, 7, 7]
    assert list(warmth(None, 2)) == [WARMTH_LEVELS - 1] * 2  # no positions (surprise's judge): warm
    rng = np.random.default_rng(5)
    net, experts, targets = two_context_chunk(rng)
    experts.small = np.column_stack([experts.small, np.zeros(len(net), dtype=np.int64)])  # + the warmth column
    plain, warm = OnlineMixer(config(select=[], sse=0), "cpu"), OnlineMixer(config(select=["warmth"], sse=0), "cpu")
    for level in (1, 3, WARMTH_LEVELS - 1):
        experts.small[:, WARMTH_COLUMN] = level
        before, after = plain.mix(net, experts), warm.mix(net, experts)
        if level == WARMTH_LEVELS - 1:
            torch.testing.assert_close(after, before)
        else:
            scale = WARMTH_PRIOR[min(level, len(WARMTH_PRIOR) - 1)]
            w = plain.weights[experts.bucket] + (scale - 1) * plain.weights.mean(0)  # the network's weight x scale
            logits = net * w[:, :1]
            logits[np.arange(len(net)), experts.token] += torch.from_numpy(experts.bonus[:, 0]) * w[:, 1]
            torch.testing.assert_close(after, torch.log_softmax(logits, dim=-1))
    experts.small[:, WARMTH_COLUMN] = rng.integers(1, WARMTH_LEVELS, len(net))
    warm.learn(warm.premix(net, experts), net, experts, targets)
    assert not warm.sets[0][1][WARMTH_LEVELS - 1].any()  # the warm bucket's row: still none
    assert warm.sets[0][1][1:WARMTH_LEVELS - 1].ne(warm._set_prior("warmth", WARMTH_LEVELS, warm.weights)[1:-1]).any()
