"""Retrieval: each held-out paragraph's first half must find its own second half among all second halves.

    python bench/vectors_retrieval.py RUN [--tuned TUNED_RUN ...] [--corpus DIR] [--n 1000]
    python bench/vectors_retrieval.py RUN --tuned A B --split validation --holdout 0.05   # choose settings

Paragraphs (blank-line separated, 100-3000 bytes, two sentences or more) come from the held-out part of the
run's own corpus (the last val_fraction of each file, which neither training nor `seqlab tune` saw) and are
split at the sentence boundary nearest their middle. Side by side on the same queries: seqlab's passage
vectors with each pooling (mean, last, max: centred on the run's mean state and raw; surprisal; words), a tuned
run's, BM25 (bm25s, Lucene's formula) and TF-IDF (scikit-learn, cosine). recall@1 and recall@10 carry Wilson
intervals, MRR a bootstrap interval over queries; the last column is each method's recall@1 less BM25's on
the same queries, with a paired bootstrap interval (seqlab.stats.paired_difference).

`--split validation` asks paragraphs of the training part instead: those in the `--holdout` share that
`seqlab tune --holdout` (the same share) left out of tuning (vectors.tune.is_validation). Tuning settings are
compared there, and the held-out benchmark is run once with the settings chosen.
"""

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from seqlab.data.corpus import resolve_paths, split_document  # noqa: E402
from seqlab.run import load, read_config  # noqa: E402
from seqlab.stats import bootstrap_statistic, wilson  # noqa: E402
from seqlab.stats import paired_difference  # noqa: E402
from seqlab.vectors.bag import BagVectors  # noqa: E402
from seqlab.vectors.embed import embed_texts, is_centred  # noqa: E402
from seqlab.vectors.tune import halves, is_validation  # noqa: E402


def held_out_pairs(run_dir, corpus, n: int, seed: int = 0, holdout: float | None = None) -> list[tuple[bytes, bytes]]:
    """Paragraphs' (first half, second half): from the held-out part of each file, or with `holdout` from the
    training part, those of its validation share."""
    config = read_config(run_dir)
    pairs = []
    for path in resolve_paths(corpus or config.data.paths):
        train, held = split_document(path.read_bytes(), config.data.val_fraction)
        for para in re.split(rb"\n\s*\n", held if holdout is None else train):
            para = para.strip()
            if holdout is not None and not is_validation(para, holdout):
                continue
            if 100 <= len(para) <= 3000 and (pair := halves(para)):
                pairs.append(pair)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(pairs), min(n, len(pairs)), replace=False))
    return [pairs[i] for i in keep]


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of the right answer (the diagonal) for each query row; ties count against it."""
    right = np.diag(scores)[:, None]
    return (scores > right).sum(1) + 1


def words(text: bytes) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.decode("utf-8", errors="replace").lower())


def bm25_ranks(queries, docs) -> np.ndarray:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index([words(d) for d in docs], show_progress=False)
    scores = np.stack([retriever.get_scores(words(q)) for q in queries])
    return ranks_from_scores(scores)


def tfidf_ranks(queries, docs) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True).fit([d.decode("utf-8", "replace") for d in docs + queries])
    d = vec.transform([x.decode("utf-8", "replace") for x in docs])
    q = vec.transform([x.decode("utf-8", "replace") for x in queries])
    return ranks_from_scores((q @ d.T).toarray())


def seqlab_ranks(run, queries, docs, pooling: str, centre: bool) -> np.ndarray:
    q = embed_texts(run, queries, pooling, centre=centre)
    d = embed_texts(run, docs, pooling, centre=centre)
    return ranks_from_scores(q.scores(d) if isinstance(q, BagVectors) else q @ d.T)


def row(name: str, ranks: np.ndarray, seconds: float, reference: np.ndarray) -> list:
    n = len(ranks)
    r1, r10 = int((ranks <= 1).sum()), int((ranks <= 10).sum())
    rr = 1.0 / ranks
    lo, hi = bootstrap_statistic(lambda idx: float(rr[idx].mean()), n, block_len=1, n_boot=1000)
    fmt = lambda k: f"{k / n:.3f} [{wilson(k, n)[0]:.3f}, {wilson(k, n)[1]:.3f}]"  # noqa: E731
    d, d_lo, d_hi = paired_difference(ranks <= 1, reference <= 1, np.ones(n))
    return [name, fmt(r1), fmt(r10), f"{rr.mean():.3f} [{lo:.3f}, {hi:.3f}]", f"{d:+.3f} [{d_lo:+.3f}, {d_hi:+.3f}]",
            f"{seconds:.1f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--tuned", nargs="+", default=[], help="runs made by `seqlab tune RUN ...`")
    ap.add_argument("--corpus", nargs="+", help="the run's corpus, if not where it was trained")
    ap.add_argument("--n", type=int, default=1000, help="held-out paragraphs (queries), default 1000")
    ap.add_argument("--poolings", default="mean,last,max,surprisal,words")
    ap.add_argument("--split", choices=("held-out", "validation"), default="held-out",
                    help="the run's held-out part, or the validation share of its training part (--holdout)")
    ap.add_argument("--holdout", type=float, default=0.05, help="the share given to `seqlab tune --holdout`")
    args = ap.parse_args()
    pairs = held_out_pairs(args.run, args.corpus, args.n, holdout=args.holdout if args.split == "validation" else None)
    queries, docs = [p[0] for p in pairs], [p[1] for p in pairs]
    print(f"{len(pairs)} {args.split} paragraphs (query: first half, {np.mean([len(q) for q in queries]):.0f} bytes "
          f"on average; answer: its second half among {len(docs)})", flush=True)
    rows = []
    methods = [("BM25 (bm25s)", lambda: bm25_ranks(queries, docs)),
               ("TF-IDF (scikit-learn)", lambda: tfidf_ranks(queries, docs))]
    run = load(args.run)
    poolings = args.poolings.split(",")
    for pooling in poolings:
        for centre in (True, False) if is_centred(pooling) else (False,):
            name = f"seqlab {pooling}{(', centred' if centre else ', raw') if is_centred(pooling) else ''}"
            methods.append((name, lambda p=pooling, c=centre: seqlab_ranks(run, queries, docs, p, c)))
    for tuned_dir in args.tuned:
        tuned = load(tuned_dir)
        for pooling in poolings:
            name = f"{Path(tuned_dir).name} {pooling}{', centred' if is_centred(pooling) else ''}"
            methods.append((name, lambda p=pooling, t=tuned: seqlab_ranks(t, queries, docs, p, True)))
    reference = None
    for name, fn in methods:
        t0 = time.perf_counter()
        ranks = fn()
        reference = ranks if reference is None else reference  # BM25, the first
        rows.append(row(name, ranks, time.perf_counter() - t0, reference))
        print(f"  {name}: recall@1 {np.mean(ranks <= 1):.3f}", flush=True)
    print()
    print_table(f"retrieval on {len(pairs)} {args.split} paragraphs of {Path(args.run).name}'s corpus "
                f"(95% intervals)", ["method", "recall@1", "recall@10", "MRR", "recall@1 - BM25", "seconds"], rows)


if __name__ == "__main__":
    main()
