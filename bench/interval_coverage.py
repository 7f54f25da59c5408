"""Do seqlab's 95% intervals cover the truth 95% of the time? Text from a known Markov source, scored exactly.

    python bench/interval_coverage.py                  # 400 repetitions of each case, ~2 minutes on 2 cores
    python bench/interval_coverage.py --reps 200 --docs 40

The source is an order-2 Markov chain over 8 bytes with fixed random transition probabilities, so its true
bits per byte (the entropy rate, from the stationary distribution) is known exactly. An "oracle" scorer
knows those probabilities, as a perfectly trained model would: each byte costs -log2 p(byte | two before).
Each repetition samples fresh text, scores it, and asks seqlab's interval (intervals.bpb_interval: the blocks
and bootstrap `seqlab eval` uses) whether it holds the truth. Cases:

  documents      --docs documents of 500-3000 bytes, blocked by document (auto's choice from 10 up)
  one stream     one text of as many bytes, blocked by auto's stretches (1/100 of the bytes, >= 1024)
  mixed sources  each document from one of three sources of different entropy: by document, and by
                 stretches (which cut documents into dependent pieces: the case blocks by document are for)
  few documents  10 documents: how far the percentile bootstrap falls short on few blocks

Paired comparisons (intervals.paired, as `seqlab eval A --against B`) on the documents case: the oracle
against itself; against a copy made 1% worse (its probabilities mixed with uniform until its expected bits
per byte are exactly 1.01x); and two different models of exactly equal expected bits per byte (the truth:
no difference). Coverage is reported with its own Wilson interval over the repetitions.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from seqlab.intervals import bpb_interval, paired  # noqa: E402
from seqlab.stats import wilson  # noqa: E402

K = 8  # alphabet
STATES = K * K  # order 2


def source(seed: int, concentration: float) -> np.ndarray:
    """Transition probabilities p[state, next] of an order-2 chain (state = 8 * byte[-2] + byte[-1])."""
    return np.random.default_rng(seed).dirichlet(np.full(K, concentration), STATES)


def stationary(p: np.ndarray) -> np.ndarray:
    """The chain's stationary distribution over states (pairs of bytes)."""
    t = np.zeros((STATES, STATES))
    for s in range(STATES):
        t[s, (s % K) * K + np.arange(K)] = p[s]
    pi = np.full(STATES, 1.0 / STATES)
    for _ in range(10_000):
        nxt = pi @ t
        if np.abs(nxt - pi).max() < 1e-15:
            break
        pi = nxt
    return pi


def cross_entropy(p: np.ndarray, q: np.ndarray, pi: np.ndarray) -> float:
    """Expected bits per byte of a model q on text from the chain p (stationary): exact."""
    return float(pi @ (p * -np.log2(q)).sum(axis=1))


def sample(p: np.ndarray, pi: np.ndarray, n_chains: int, length: int, rng, which=None) -> np.ndarray:
    """(n_chains, 2 + length) bytes; each chain starts from the stationary distribution (its first two bytes are
    context, not scored). which: the source of each chain when p holds several (n_sources, STATES, K)."""
    cum = np.cumsum(p, axis=-1)
    first = rng.choice(STATES, n_chains, p=pi) if which is None else \
        np.array([rng.choice(STATES, p=pi[k]) for k in which])
    out = np.empty((n_chains, 2 + length), np.int64)
    out[:, 0], out[:, 1] = first // K, first % K
    for t in range(2, 2 + length):
        state = out[:, t - 2] * K + out[:, t - 1]
        table = cum[state] if which is None else cum[which, state]
        out[:, t] = (table < rng.random((n_chains, 1))).sum(axis=1).clip(max=K - 1)
    return out


def bits(q: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """What model q pays for each scored byte of one chain."""
    state = chain[:-2] * K + chain[1:-1]
    return -np.log2(q[state, chain[2:]])


def mix_to(p: np.ndarray, other: np.ndarray, pi: np.ndarray, target: float) -> np.ndarray:
    """(1 - e) p + e other with e chosen (bisection) so its expected bits per byte equal `target`."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        e = (lo + hi) / 2
        lo, hi = (e, hi) if cross_entropy(p, (1 - e) * p + e * other, pi) < target else (lo, e)
    return (1 - e) * p + e * other


def coverage_line(name: str, hits: list[bool], widths: list[float], n_bytes: float, method: str) -> str:
    k, n = sum(hits), len(hits)
    low, high = wilson(k, n)
    return (f"| {name} | {n} | {n_bytes:,.0f} | {method} | {k / n:.1%} ({low:.1%}-{high:.1%}) | "
            f"{np.mean(widths):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=400, help="repetitions of each case (>= 200 for the figure)")
    ap.add_argument("--docs", type=int, default=60, help="documents per repetition")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    p = source(args.seed, 0.5)
    pi = stationary(p)
    truth = cross_entropy(p, p, pi)
    lengths = rng.integers(500, 3001, (args.reps, args.docs))
    print(f"order-2 Markov source over {K} bytes, true bits per byte {truth:.4f}; {args.reps} repetitions; "
          f"documents of 500-3000 bytes, {args.docs} per repetition")
    print("\n| case | reps | bytes per rep | blocks (last rep) | covers the truth (Wilson 95%) | mean width |")
    print("| --- | ---: | ---: | --- | :---: | ---: |")

    def run_case(name, per_rep_docs, block, truth_of=lambda r: truth):
        hits, widths, method, n_bytes = [], [], "", []
        for r, docs in enumerate(per_rep_docs):
            got = bpb_interval(docs, block)
            hits.append(got["bpb_low"] <= truth_of(r) <= got["bpb_high"])
            widths.append(got["bpb_high"] - got["bpb_low"])
            method, _ = got["interval_method"].split(", ")[1], n_bytes.append(sum(map(len, docs)))
        print(coverage_line(name, hits, widths, np.mean(n_bytes), method), flush=True)

    chains = sample(p, pi, args.reps * args.docs, lengths.max(), rng).reshape(args.reps, args.docs, -1)
    docs = [[bits(p, c[: 2 + n]) for c, n in zip(chains[r], lengths[r])] for r in range(args.reps)]
    run_case("documents", docs, "auto")

    stream = sample(p, pi, args.reps, int(lengths.sum(axis=1).mean()), rng)
    run_case("one stream", ([bits(p, c)] for c in stream), "auto")

    sources = np.stack([p, source(args.seed + 1, 0.2), source(args.seed + 2, 1.5)])
    pis = np.stack([stationary(s) for s in sources])
    truth_mixed = float(np.mean([cross_entropy(s, s, q) for s, q in zip(sources, pis)]))
    which = rng.integers(0, 3, (args.reps, args.docs))
    mixed_chains = sample(sources, pis, args.reps * args.docs, lengths.max(), rng, which.ravel())
    mixed_chains = mixed_chains.reshape(args.reps, args.docs, -1)
    mixed = [[bits(sources[k], c[: 2 + n]) for c, n, k in zip(mixed_chains[r], lengths[r], which[r])]
             for r in range(args.reps)]
    run_case(f"mixed sources (truth {truth_mixed:.4f}), by document", mixed, "document", lambda r: truth_mixed)
    run_case("mixed sources, stretches of 1024 bytes", mixed, 1024, lambda r: truth_mixed)
    run_case("few documents (10)", [d[:10] for d in docs], "auto")

    worse = mix_to(p, np.full_like(p, 1.0 / K), pi, 1.01 * truth)
    rival = mix_to(p, np.tile(pi.reshape(K, K).sum(axis=0), (STATES, 1)), pi, cross_entropy(p, worse, pi))
    planted = cross_entropy(p, p, pi) - cross_entropy(p, worse, pi)
    print(f"\npaired A - B on the documents case (true bits per byte: oracle {truth:.4f}, 1% worse "
          f"{cross_entropy(p, worse, pi):.4f}, rival {cross_entropy(p, rival, pi):.4f})")
    print("| A vs B | true A - B | verdicts better / tied / worse | covers the true difference (Wilson 95%) |")
    print("| --- | ---: | :---: | :---: |")
    cases = [("oracle vs itself", lambda c: (p, p), 0.0),
             ("oracle vs a copy 1% worse", lambda c: (p, worse), planted),
             ("1% worse vs a rival equally good", lambda c: (worse, rival), 0.0)]
    for name, models, true_d in cases:
        verdicts, hits = {"better": 0, "tied": 0, "worse": 0}, []
        for r in range(args.reps):
            qa, qb = models(None)
            out = paired([bits(qa, c[: 2 + n]) for c, n in zip(chains[r], lengths[r])],
                         [bits(qb, c[: 2 + n]) for c, n in zip(chains[r], lengths[r])])
            verdicts[out["verdict"]] += 1
            hits.append(out["low"] <= true_d <= out["high"])
        k, n = sum(hits), len(hits)
        low, high = wilson(k, n)
        print(f"| {name} | {true_d:+.4f} | {verdicts['better']} / {verdicts['tied']} / {verdicts['worse']} | "
              f"{k / n:.1%} ({low:.1%}-{high:.1%}) |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f}s in all")


if __name__ == "__main__":
    main()
