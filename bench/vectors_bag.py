"""What the words pooling's exact search costs: a Bag index (vectors/bag.py) against FAISS's exact flat index over
the surprisal pooling's dense vectors, by index size, one thread.

    python bench/vectors_bag.py RUN [--corpus DIR] [--passages 5000] [--sizes 10000,50000,100000] [--queries 200]

The passages are the run's corpus's paragraphs (the first --passages), embedded with both poolings; an index of
each size repeats them (a search reads every passage whatever its values, so repeats cost what new ones would).
Queries are other paragraphs' first halves. For each size: milliseconds per query asked one at a time (median over
--queries, with a bootstrap interval) and per query in one batch of them, and the index's bytes in memory; the ratio
column is the Bag's time over FAISS flat's at the same size, one at a time.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from seqlab.data.corpus import resolve_paths  # noqa: E402
from seqlab.run import load, read_config  # noqa: E402
from seqlab.stats import bootstrap_statistic  # noqa: E402
from seqlab.vectors.bag import BagVectors  # noqa: E402
from seqlab.vectors.embed import embed_texts  # noqa: E402
from seqlab.vectors.passages import passages  # noqa: E402


def median_ms(times: list[float]) -> str:
    t = np.array(times) * 1000
    lo, hi = bootstrap_statistic(lambda idx: float(np.median(t[idx])), len(t), block_len=1, n_boot=1000)
    return f"{np.median(t):.2f} [{lo:.2f}, {hi:.2f}]"


def timed(search, queries) -> tuple[list[float], float]:
    """(seconds per query asked alone, seconds per query in one batch)."""
    alone = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        search(queries[i : i + 1])
        alone.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    search(queries)
    return alone, (time.perf_counter() - t0) / len(queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--corpus", nargs="+")
    ap.add_argument("--passages", type=int, default=5000)
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    run = load(args.run)
    paths = resolve_paths(args.corpus or read_config(args.run).data.paths)
    texts = [p.data for p in passages(paths, "paragraph") if len(p.data) >= 100][: args.passages + args.queries]
    docs, asked = texts[: args.passages], [t[: len(t) // 2] for t in texts[args.passages :]]
    bag, bag_q = embed_texts(run, docs, "words"), embed_texts(run, asked, "words")
    dense, dense_q = embed_texts(run, docs, "surprisal"), embed_texts(run, asked, "surprisal")
    print(f"{len(docs)} paragraphs, {len(asked)} queries; words per paragraph: "
          f"{bag.words.getnnz(axis=1).mean():.0f}; dense widths: Bag {bag.expected.shape[1]}, surprisal "
          f"{dense.shape[1]}", flush=True)
    rows = []
    with threadpool_limits(1):  # numpy's BLAS on one thread, as FAISS's OpenMP
        for size in map(int, args.sizes.split(",")):
            reps = -(-size // len(docs))
            index_bag = BagVectors.concat([bag] * reps)[:size]
            flat = faiss.IndexFlatIP(dense.shape[1])
            flat.add(np.tile(dense, (reps, 1))[:size])
            bag_alone, bag_batch = timed(lambda q, x=index_bag: q.top(x, 10), bag_q)
            flat_alone, flat_batch = timed(lambda q, x=flat: x.search(q, 10), dense_q)
            w = index_bag.words
            bag_bytes = w.data.nbytes + w.indices.nbytes + w.indptr.nbytes + index_bag.expected.nbytes
            ratio = np.median(bag_alone) / np.median(flat_alone)
            rows.append([f"{size:,}", "Bag (words, exact)", median_ms(bag_alone), f"{bag_batch * 1000:.2f}",
                         f"{bag_bytes / 2**20:.0f}", f"{ratio:.2f}x"])
            rows.append([f"{size:,}", f"FAISS flat ({dense.shape[1]} dims, surprisal)", median_ms(flat_alone),
                         f"{flat_batch * 1000:.2f}", f"{flat.ntotal * flat.d * 4 / 2**20:.0f}", "1"])
            print(f"  {size:,}: Bag {np.median(bag_alone) * 1000:.2f} ms, flat {np.median(flat_alone) * 1000:.2f} ms",
                  flush=True)
    print()
    print_table(f"exact search, one thread, k = 10 ({len(asked)} queries)",
                ["passages", "index", "ms a query alone: median [95%]", "ms a query in a batch", "MiB in memory",
                 "alone / flat's"], rows)


if __name__ == "__main__":
    main()
