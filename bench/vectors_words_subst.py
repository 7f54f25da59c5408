"""Word vectors from what a run predicts in a word's slot (substitute vectors) and other post-processings of
its states, against today's default and gensim Word2Vec, for SimLex-999 (similarity, not relatedness).

    nice python bench/vectors_words_subst.py runs/prose-fwd-512b --backward runs/prose-bwd-512b --sums /tmp/subst

Each run reads its training split once (vectors/words.py occurrence_positions + embed.token_states); at each
occurrence's `before` position (the context up to the word; for the backward run the context after it) it adds,
per word seen >= --min-count times: the state, the next-token distribution p (log-softmax of the output layer on
that state), sqrt p and log p; plus the marginal of p over every word slot and, from the tokens alone, how often
each token begins (forward) or ends (backward) each word. The sums are kept under --sums/<fwd|bwd> (.npy, a plain
array each) and reused when present, so variants are evaluated in seconds. Variants (each direction
post-processed apart as `seqlab similar` does: centred, `c` top components removed, unit length; then joined):

- states c: today's vectors with c components removed (auto = round(dims / 100) = 5: the default);
  conceptor a: soft removal, x - C x with C = R (R + a^-2 I)^-1 (Liu et al. 2019); whiten k: the top k
  principal coordinates scaled to equal variance.
- sub p / sqrt p / hellinger / ppmi / log p: substitute vectors in BPE space (Yuret 2012): the mean
  distribution, the mean of sqrt p, sqrt of the mean, max(log(mean p / marginal), 0), the mean of log p.
- with --word-space: the mean distribution mapped to words through p(word | its first token) (forward; last
  token backward), forward, backward and their product over the word prior (slow: V x V).

Rho on the fixed halves A/B of bench/vectors_words.py (seed 26; choose on A, judge on B) and on all pairs with
a 95% bootstrap interval, and the difference to gensim (retrained here, same words) with a paired interval.
"""

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402
from vectors_words import analogies, gensim_vectors, keyed, rho, test_pairs  # noqa: E402

from seqlab.run import load  # noqa: E402
from seqlab.stats import bootstrap_statistic  # noqa: E402
from seqlab.vectors.embed import token_states, unit_rows  # noqa: E402
from seqlab.vectors.words import (  # noqa: E402
    WordVectors, find_words, occurrence_positions, postprocess, training_texts)

ARRAYS = ("S", "P", "Q", "L", "counts", "marg", "M")


def collect(run, texts, words: list[str], out: Path) -> dict:
    """Each word's sums at its `before` positions (see the module's docstring), saved under out."""
    ids = {w: i for i, w in enumerate(words)}
    head = run.model.output_layer()
    V, C, T = len(words), head.in_features, head.out_features
    a = {k: np.zeros((V, C if k == "S" else T)) for k in "SPQL"}
    a["M"], a["marg"], a["counts"], n_all = np.zeros((T, V)), np.zeros(T), np.zeros(V, np.int64), 0
    for data in texts():
        found, starts, ends = find_words(data)
        if not found:
            continue
        wid = np.array([ids.get(w, -1) for w in found])
        tokens, before, _ = occurrence_positions(run, data, starts, ends)
        known = wid >= 0
        np.add.at(a["M"], (tokens[np.minimum(before + 1, len(tokens) - 1)][known], wid[known]), 1)
        np.add.at(a["counts"], wid[known], 1)
        order = np.argsort(before, kind="stable")
        at = before[order]
        for start, states in token_states(run.model, tokens, run.device):
            k = order[np.searchsorted(at, start): np.searchsorted(at, start + len(states))]
            if not len(k):
                continue
            x = torch.from_numpy(states[before[k] - start]).float()
            with torch.no_grad():
                logp = F.log_softmax(head(x).float(), -1).double()
            p = logp.exp()
            a["marg"] += p.sum(0).numpy()
            n_all += len(k)
            keep = np.flatnonzero(wid[k] >= 0)
            i, kk = torch.from_numpy(wid[k][keep]), torch.from_numpy(keep)
            for name, value in (("S", x.double()), ("P", p), ("Q", p.sqrt()), ("L", logp)):
                torch.from_numpy(a[name]).index_add_(0, i, value[kk])
    a["marg"] /= max(n_all, 1)
    out.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        np.save(out / f"{name}.npy", a[name])
    (out / "words.txt").write_text("\n".join(words))
    return a


def sums_of(run, texts, words, out: Path) -> dict:
    if all((out / f"{k}.npy").exists() for k in ARRAYS) and (out / "words.txt").read_text().split("\n") == words:
        return {k: np.load(out / f"{k}.npy") for k in ARRAYS}
    return collect(run, texts, words, out)


def conceptor(x: np.ndarray, alpha: float) -> np.ndarray:
    x = x - x.mean(0)
    r = x.T @ x / len(x)
    return unit_rows(x - x @ (r @ np.linalg.inv(r + alpha ** -2 * np.eye(len(r)))).T)


def whiten(x: np.ndarray, k: int) -> np.ndarray:
    return unit_rows(np.linalg.svd(x - x.mean(0), full_matrices=False)[0][:, :k])


def variants(dirs: list[dict], word_space: bool):
    """(name, function of one direction's sums -> its vectors), and the word-space joins."""
    def mean(a, k):
        return a[k] / np.maximum(a["counts"][:, None], 1)

    def ppmi(a):
        return np.maximum(np.log(mean(a, "P") / a["marg"] + 1e-30), 0)

    out = [(f"states, {c} removed" + (" (default)" if c == 5 else ""), lambda a, c=c: postprocess(mean(a, "S"), c))
           for c in (0, 2, 5, 10, 20, 40, 80)]
    out += [(f"states, conceptor a={al}", lambda a, al=al: conceptor(mean(a, "S"), al)) for al in (0.5, 1, 2, 4)]
    out += [(f"states, whitened top {k}", lambda a, k=k: whiten(mean(a, "S"), k)) for k in (50, 100, 200, 512)]
    for c in (0, None):
        tag = f", {'auto' if c is None else c} removed"
        out += [("sub p" + tag, lambda a, c=c: postprocess(mean(a, "P"), c)),
                ("sub sqrt p" + tag, lambda a, c=c: postprocess(mean(a, "Q"), c)),
                ("sub hellinger" + tag, lambda a, c=c: postprocess(np.sqrt(mean(a, "P")), c)),
                ("sub ppmi" + tag, lambda a, c=c: postprocess(ppmi(a), c)),
                ("sub log p" + tag, lambda a, c=c: postprocess(mean(a, "L"), c))]
    rows = [(name, [fn(a) for a in dirs]) for name, fn in out]
    if word_space and len(dirs) == 2:
        f, b = [mean(a, "P") @ (a["M"] / np.maximum(a["M"].sum(1, keepdims=True), 1)) for a in dirs]
        prior = dirs[0]["counts"] / dirs[0]["counts"].sum()
        rows += [("words-sub fwd, sqrt", [postprocess(np.sqrt(f), 0)]),
                 ("words-sub bwd, sqrt", [postprocess(np.sqrt(b), 0)]),
                 ("words-sub fwd*bwd/prior, sqrt", [postprocess(np.sqrt(f * b / prior), 0)])]
    return rows


def pairs_of(name: str, ids: dict):
    pairs, halves = test_pairs(name)
    keep = [i for i, (a, b, _) in enumerate(pairs) if a in ids and b in ids]
    return (np.array([ids[pairs[i][0]] for i in keep]), np.array([ids[pairs[i][1]] for i in keep]),
            np.array([pairs[i][2] for i in keep]), halves[keep])


def scores(v: np.ndarray, ref: np.ndarray, tests) -> list[str]:
    out = []
    for a, b, human, half in tests:
        c, r = (v[a] * v[b]).sum(1), (ref[a] * ref[b]).sum(1)
        (lo, dlo), (hi, dhi) = bootstrap_statistic(
            lambda i, h=human, c=c, r=r: np.array([rho(h[i], c[i]), rho(h[i], c[i]) - rho(h[i], r[i])]),
            len(c), 1, n_boot=500)
        out += [f"{rho(human[half == 0], c[half == 0]):.3f} / {rho(human[half == 1], c[half == 1]):.3f}",
                f"{rho(human, c):.3f} [{lo:.3f}, {hi:.3f}]",
                f"{rho(human, c) - rho(human, r):+.3f} [{dlo:+.3f}, {dhi:+.3f}]"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--backward")
    ap.add_argument("--sums", default="/tmp/subst", help="where the per-word sums are kept and reused")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--word-space", action="store_true", help="also the V x V word-space substitutes (slow)")
    ap.add_argument("--analogies", action="store_true", help="also analogy accuracy (slow on 2,048-dim rows)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = load(args.run)
    _, texts = training_texts(run.config)
    counts = Counter(w for data in texts() for w in find_words(data)[0])
    words = sorted((w for w, c in counts.items() if c >= args.min_count), key=lambda w: -counts[w])
    t0 = time.perf_counter()
    gensim = gensim_vectors(texts(), args.min_count, 100)
    assert set(gensim.words) == set(words), "the same words are counted by both"
    ref = gensim.vectors[[gensim.ids[w] for w in words]]
    gensim_seconds = time.perf_counter() - t0
    runs = [("fwd", run)] + ([("bwd", load(args.backward))] if args.backward else [])
    dirs = [sums_of(r, texts, words, Path(args.sums) / name) for name, r in runs]
    ids = {w: i for i, w in enumerate(words)}
    tests = [pairs_of(t, ids) for t in ("wordsim353.tsv", "simlex999.txt")]

    def row(name, v):
        wv = WordVectors(words, dirs[0]["counts"], v)
        cells = scores(v, ref, tests)
        if v is ref:  # no difference to itself
            cells[2] = cells[5] = ""
        return [name, v.shape[1], *cells, analogies(keyed(wv)) if args.analogies else ""]

    rows = [row(f"gensim Word2Vec skip-gram (100d, {gensim_seconds:.0f} s)", ref)]
    print(rows[-1], flush=True)
    for name, parts in variants(dirs, args.word_space):
        rows.append(row(name, unit_rows(np.concatenate(parts, axis=1))))
        print(rows[-1], flush=True)
    print()
    print_table(f"word vectors on {Path(args.run).name}'s training split ({'fwd+bwd' if args.backward else 'fwd'}), "
                f"{len(words):,} words seen >= {args.min_count} times (95% intervals)",
                ["vectors", "dims", "WordSim A / B", "WordSim-353 rho", "- gensim", "SimLex A / B",
                 "SimLex-999 rho", "- gensim", "analogies"], rows)


if __name__ == "__main__":
    main()
