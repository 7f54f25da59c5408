"""HNSW parameter sweep: FAISS (M, efConstruction, efSearch) and usearch (connectivity, f32/f16/i8, ef) on
the same vectors, recall@10 against exact search and queries/s on ONE thread, timed as one batch and one
query at a time (min and median of --rounds rounds). The fastest setting with recall@10 >= --target per
library is printed last; `seqlab index` uses the winner (vectors/index.py).

    python bench/vectors_sweep.py [--n 100000] [--queries 2000] [--real XB.npy XQ.npy] [--rounds 3]

Without --real: faiss.contrib.datasets.SyntheticDataset 100,000 x 128 (IP). --real takes saved unit vectors
(the bench/vectors_index.py passage vectors, np.save'd).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402
from vectors_index import K, disk_size, exact_search, interval, recall, synthetic  # noqa: E402

import faiss  # noqa: E402

EFS = (8, 12, 16, 24, 32, 48, 64)
SINGLE = 500  # queries timed one at a time


def rounds(fn, n: int) -> tuple[object, float, float]:
    """(last output, min seconds, median seconds) over n rounds."""
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), float(np.median(times))


def qps(count: int, best: float, median: float) -> str:
    return f"{count / best:,.0f} (median {count / median:,.0f})"


def faiss_rows(xb, xq, kth, m, ef_construction, n_rounds, threads):
    single = min(SINGLE, len(xq))
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(xb.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    t0 = time.perf_counter()
    index.add(xb)
    build = time.perf_counter() - t0
    size = disk_size(lambda p: faiss.write_index(index, p))
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in EFS:
        index.hnsw.efSearch = ef
        (_, ids), b_min, b_med = rounds(lambda: index.search(xq, K), n_rounds)
        _, s_min, s_med = rounds(lambda: [index.search(xq[i : i + 1], K) for i in range(single)], n_rounds)
        r = recall(ids, kth, xb, xq)
        rows.append(["faiss", f"HNSW M={m} efC={ef_construction} efSearch={ef}", f"{build:.1f}", r,
                     qps(len(xq), b_min, b_med), qps(single, s_min, s_med), f"{size / 2**20:.0f}", len(xq) / b_min])
        print("  ", rows[-1][:3], f"{r.mean():.3f}", rows[-1][4:7], flush=True)
    return rows


def usearch_rows(xb, xq, kth, dtype, connectivity, n_rounds, threads):
    from usearch.index import Index

    single = min(SINGLE, len(xq))
    index = Index(ndim=xb.shape[1], metric="ip", dtype=dtype, connectivity=connectivity, expansion_add=128)
    t0 = time.perf_counter()
    index.add(np.arange(len(xb)), xb, threads=threads)
    build = time.perf_counter() - t0
    size = disk_size(index.save)
    rows = []
    for ef in EFS:
        index.expansion_search = ef
        m, b_min, b_med = rounds(lambda: index.search(xq, K, threads=1), n_rounds)
        _, s_min, s_med = rounds(lambda: [index.search(xq[i], K, threads=1) for i in range(single)], n_rounds)
        ids = np.where(m.keys < len(xb), m.keys, -1).astype(np.int64)
        r = recall(ids, kth, xb, xq)
        rows.append(["usearch", f"{dtype} connectivity={connectivity} efC=128 ef={ef}", f"{build:.1f}", r,
                     qps(len(xq), b_min, b_med), qps(single, s_min, s_med), f"{size / 2**20:.0f}", len(xq) / b_min])
        print("  ", rows[-1][:3], f"{r.mean():.3f}", rows[-1][4:7], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--real", nargs=2, metavar=("XB", "XQ"), help="saved base and query unit vectors (.npy)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--faiss", default="16:40,32:80", help="M:efConstruction pairs")
    ap.add_argument("--usearch", default="f32:16,f16:16,i8:16", help="dtype:connectivity pairs")
    args = ap.parse_args()
    if args.real:
        xb, xq = np.load(args.real[0])[: args.n], np.load(args.real[1])[: args.queries]
        name = f"passages {len(xb):,}x{xb.shape[1]}"
    else:
        xb, xq = synthetic(args.n, args.queries)
        name = f"synthetic {len(xb):,}x{xb.shape[1]}"
    threads = len(os.sched_getaffinity(0))
    flat, kth = exact_search(xb, xq)
    (_, _), e_min, e_med = rounds(lambda: flat.search(xq, K), 1)
    rows = [["faiss", "exact (Flat)", "-", np.ones(len(xq)), qps(len(xq), e_min, e_med), "-",
             f"{xb.nbytes / 2**20:.0f}", len(xq) / e_min]]
    for spec in filter(None, args.faiss.split(",")):
        m, efc = map(int, spec.split(":"))
        rows += faiss_rows(xb, xq, kth, m, efc, args.rounds, threads)
    for spec in filter(None, args.usearch.split(",")):
        dtype, conn = spec.split(":")
        rows += usearch_rows(xb, xq, kth, dtype, int(conn), args.rounds, threads)
    header = ["library", "setting", f"build s ({threads} threads)", "recall@10 vs exact",
              "queries/s batch, 1 thread: best (median)", "queries/s one at a time: best (median)", "MiB on disk"]
    print()
    print_table(f"{name}: HNSW sweep ({args.rounds} rounds; recall 95% intervals over queries)", header,
                [r[:3] + [interval(r[3])] + r[4:7] for r in rows])
    best = {}
    for r in rows[1:]:
        if r[3].mean() >= args.target and r[-1] > best.get(r[0], [0] * 8)[-1]:
            best[r[0]] = r
    print()
    print_table(f"{name}: fastest setting per library with recall@10 >= {args.target} (batch, 1 thread)",
                header, [r[:3] + [interval(r[3])] + r[4:7] for r in best.values()])


if __name__ == "__main__":
    main()
