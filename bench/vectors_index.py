"""Nearest-neighbour indexes: seqlab's calibrated IVF (what `seqlab index` builds) against exact search, FAISS's
HNSW graph and Annoy, on synthetic and on real passage vectors, and `seqlab search` on a 1M-passage index.

    python bench/vectors_index.py RUN [--corpus DIR] [--n 100000] [--queries 2000] [--big 1000000]

Datasets: 100,000 x 128 unit vectors from faiss.contrib.datasets.SyntheticDataset, and the line vectors of
the run's corpus (seqlab embed --unit line, up to --n of them; queries are other lines). Ground truth is
exact inner-product search. seqlab's index is built as `seqlab index` builds it (vectors/index.py new_ivf:
an IVF whose codes and probes are chosen by calibrating on its own vectors), then read with the stored probes,
half and twice as many: recall@10 against exact on the held-out queries, queries per second on ONE thread
(FAISS's OpenMP set to 1, queries in one batch), build time (all cores), size on disk. The other codings
(the IVF's cells with 4-bit product codes, 8-bit scalar codes, exact vectors) and FAISS's HNSW graph (seqlab's
structure before) are timed beside it, and Annoy (angular = cosine on unit vectors) is built with growing
forests until it reaches the recall of seqlab's index, timed the same way. The crossover table times one
query at a time, flat vs seqlab's IVF, by index size (where exact search stops being the faster:
EXACT_BELOW). Last, an index of --big passages
(real vectors, each repeated with small noise, pointing at its line) is saved, loaded memory-mapped, and
`PassageIndex.search_text` (embed the query, search, read the rows' metadata) is timed per query.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from seqlab.run import load  # noqa: E402
from seqlab.stats import bootstrap_statistic  # noqa: E402
from seqlab.vectors.embed import embed_texts, unit_rows  # noqa: E402
from seqlab.vectors.index import (  # noqa: E402
    PassageIndex,
    _ivf,
    _trained_cells,
    calibrate,
    calibration_rows,
    new_ivf,
    set_probes,
    structure_of,
)
from seqlab.vectors.passages import corpus_files, passages  # noqa: E402

import faiss  # noqa: E402

EF_VALUES = (16, 32, 64)
HNSW = "HNSW16,Flat"
K = 10


def synthetic(n: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    from faiss.contrib.datasets import SyntheticDataset

    ds = SyntheticDataset(128, 0, n, queries, metric="IP", seed=1338)
    return unit_rows(ds.get_database()), unit_rows(ds.get_queries())


def real(run, corpus, n: int, queries: int) -> tuple[np.ndarray, np.ndarray, list]:
    lines = []
    for p in passages(corpus_files(corpus), "line"):
        lines.append(p)
        if len(lines) >= n + queries:
            break
    rng = np.random.default_rng(0)
    order = rng.permutation(len(lines))
    base, held = [lines[i] for i in np.sort(order[queries:])], [lines[i] for i in order[:queries]]
    t0 = time.perf_counter()
    xb = embed_texts(run, [p.data for p in base])
    print(f"  embedded {len(base):,} lines in {time.perf_counter() - t0:.0f}s", flush=True)
    return xb, embed_texts(run, [p.data for p in held]), base


class Line:
    """A corpus line read back from the cache: what big_index uses of a Passage."""

    def __init__(self, meta: dict):
        self._meta, self.data = meta, meta["text"].encode()

    def meta(self) -> dict:
        return self._meta


def cached(folder) -> tuple[np.ndarray, np.ndarray, list]:
    with open(Path(folder, "base.jsonl")) as f:
        base = [Line(json.loads(line)) for line in f]
    return np.load(Path(folder, "xb.npy")), np.load(Path(folder, "xq.npy")), base


def save_cache(folder, xb: np.ndarray, xq: np.ndarray, base: list) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    if not Path(folder, "xb.npy").exists():
        np.save(Path(folder, "xb.npy"), xb)
        np.save(Path(folder, "xq.npy"), xq)
        Path(folder, "base.jsonl").write_text("".join(json.dumps(p.meta()) + "\n" for p in base))


def recall(found: np.ndarray, kth: np.ndarray, xb: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Per query: the share of the K results that belong to the exact top K, where any vector scoring at least
    the exact K-th score counts (a corpus holds duplicate lines: ties are not misses)."""
    found = np.asarray(found)
    scores = np.einsum("qd,qkd->qk", xq, xb[np.maximum(found, 0)])
    return ((scores >= kth[:, None] - 1e-5) & (found >= 0)).sum(1) / K


def interval(values: np.ndarray) -> str:
    lo, hi = bootstrap_statistic(lambda i: float(values[i].mean()), len(values), 1, n_boot=300)
    return f"{values.mean():.3f} [{lo:.3f}, {hi:.3f}]"


def timed(fn, repeats: int = 3) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def disk_size(write) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        write(path)
        return os.path.getsize(path)


def exact_search(xb: np.ndarray, xq: np.ndarray):
    """(a flat index of xb, each query's exact K-th score); FAISS left on one thread for the timings."""
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(xb)
    exact, _ = flat.search(xq, K)
    faiss.omp_set_num_threads(1)
    return flat, exact[:, -1]


def measure(name: str, label: str, index, xb, xq, kth, build: float, size: int, rows: list) -> float:
    (_, ids), secs = timed(lambda: index.search(xq, K))
    r = recall(ids, kth, xb, xq)
    rows.append([name, label, f"{build:.1f}", interval(r), f"{len(xq) / secs:,.0f}", f"{size / 2**20:.0f}", ""])
    print("  ", rows[-1], flush=True)
    return float(r.mean())


def built(make) -> tuple[object, float]:
    """(make(), its build seconds on every core); FAISS left on one thread."""
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    t0 = time.perf_counter()
    result = make()
    build = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    return result, build


def index_bytes(index) -> int:
    return disk_size(lambda p: faiss.write_index(index, p))


def compare(name: str, xb: np.ndarray, xq: np.ndarray) -> list[list]:
    from annoy import AnnoyIndex

    threads = len(os.sched_getaffinity(0))
    flat, kth = exact_search(xb, xq)
    (_, _), flat_s = timed(lambda: flat.search(xq, K), 1)
    rows = [[name, "exact (faiss Flat)", "-", "1.000", f"{len(xq) / flat_s:,.0f}", "-",
             f"{xb.nbytes / 2**20:.0f}"]]
    (index, probes, calibrated), build = built(lambda: new_ivf(xb))
    size = index_bytes(index)
    structure, target = structure_of(index), None
    cells = faiss.extract_index_ivf(index).nlist
    for p in sorted({max(1, probes // 2), probes, min(cells, probes * 2)}):
        set_probes(index, p)
        stored = f" (seqlab: stored, calibrated {calibrated:.3f})" if p == probes else ""
        r = measure(name, f"seqlab {structure} probes={p}{stored}", index, xb, xq, kth, build, size, rows)
        target = r if p == probes else target
    quantizer = _trained_cells(xb, cells)
    for codes in ("pq4", "sq8", "flat"):
        other, build = built(lambda c=codes: _ivf(xb, quantizer, c))
        if structure_of(other) == structure:
            continue
        p, _ = calibrate(other, xb[calibration_rows(len(xb))])
        set_probes(other, p)
        measure(name, f"{structure_of(other)} probes={p} (calibrated; same cells, k-means not in its build s)",
                other, xb, xq, kth, build, index_bytes(other), rows)
    for ef in EF_VALUES:
        if ef == EF_VALUES[0]:
            hnsw, build = built(lambda: hnsw_index(xb))
            size = index_bytes(hnsw)
        hnsw.hnsw.efSearch = ef
        measure(name, f"FAISS {HNSW} efSearch={ef}", hnsw, xb, xq, kth, build, size, rows)
    for trees in (10, 25, 50, 100):
        annoy = AnnoyIndex(xb.shape[1], "angular")
        for i, v in enumerate(xb):
            annoy.add_item(i, v)
        t0 = time.perf_counter()
        annoy.build(trees, n_jobs=threads)
        build = time.perf_counter() - t0
        size = disk_size(annoy.save)
        for search_k in (trees * K * 4, trees * K * 16, trees * K * 64):
            ids, secs = timed(lambda a=annoy, sk=search_k: np.array([a.get_nns_by_vector(q, K, search_k=sk)
                                                                     for q in xq]), 1)
            r = recall(ids, kth, xb, xq)
            rows.append([name, f"Annoy trees={trees} search_k={search_k}", f"{build:.1f}", interval(r),
                         f"{len(xq) / secs:,.0f}", f"{size / 2**20:.0f}", ""])
            print("  ", rows[-1], flush=True)
            if r.mean() >= target:
                return rows
    return rows


def side_by_side(name: str, xb: np.ndarray, xq: np.ndarray, rounds: int) -> list[list]:
    """seqlab's index at its stored probes and HNSW16 at each efSearch, built once, read in turn `rounds` times:
    median (min, max) queries/s on one thread, so a busy machine slows every row alike."""
    _, kth = exact_search(xb, xq)
    (ivf, probes, _), _ = built(lambda: new_ivf(xb))
    hnsw, _ = built(lambda: hnsw_index(xb))
    readers = [(f"seqlab {structure_of(ivf)} probes={probes}", ivf, None)]
    readers += [(f"FAISS {HNSW} efSearch={ef}", hnsw, ef) for ef in (16, 24, 32)]
    rates, recalls = {label: [] for label, *_ in readers}, {}
    for _ in range(rounds):
        for label, index, ef in readers:
            if ef:
                index.hnsw.efSearch = ef
            (_, ids), secs = timed(lambda i=index: i.search(xq, K), 1)
            rates[label].append(len(xq) / secs)
            recalls[label] = recall(ids, kth, xb, xq)
    return [[name, label, interval(recalls[label]), f"{np.median(r):,.0f} ({min(r):,.0f}, {max(r):,.0f})"]
            for label, r in rates.items()]


def hnsw_index(xb: np.ndarray):
    index = faiss.index_factory(xb.shape[1], HNSW, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(xb)
    return index


def crossover(xb: np.ndarray, xq: np.ndarray) -> list[list]:
    """Milliseconds per single query, flat vs seqlab's IVF (its stored probes), by index size."""
    faiss.omp_set_num_threads(1)
    out = []
    for n in (1_000, 3_000, 10_000, 30_000, 100_000):
        if n > len(xb):
            break
        flat = faiss.IndexFlatIP(xb.shape[1])
        flat.add(xb[:n])
        (ivf, _, _), _ = built(lambda n=n: new_ivf(xb[:n]))
        q = xq[:300]
        _, a = timed(lambda f=flat, q=q: [f.search(q[i : i + 1], K) for i in range(len(q))])
        _, b = timed(lambda h=ivf, q=q: [h.search(q[i : i + 1], K) for i in range(len(q))])
        out.append([f"{n:,}", structure_of(ivf), f"{a / len(q) * 1000:.3f}", f"{b / len(q) * 1000:.3f}"])
        print("  ", out[-1], flush=True)
    return out


def big_index(run, xb: np.ndarray, base: list, n: int, out: Path, chunk: int = 100_000) -> tuple[list, list]:
    """n passages: real vectors repeated with noise (the neighbourhood structure of real text, at scale), indexed
    as `seqlab index` does (new_ivf); then the real query path, per query and per part: tokenise + forward
    (embed_texts), ANN search, metadata rows read by offset."""
    rng = np.random.default_rng(1)
    vectors = np.empty((n, xb.shape[1]), np.float32)
    offsets, at = [], 0
    with open(out / "passages.jsonl", "wb") as meta:
        for start in range(0, n, chunk):
            src = rng.integers(0, len(xb), min(chunk, n - start))
            noise = rng.normal(0, NOISE, (len(src), xb.shape[1])).astype(np.float32)
            vectors[start : start + len(src)] = unit_rows(xb[src] + noise)
            lines = [json.dumps(base[i].meta()).encode() + b"\n" for i in src]
            lengths = np.array([len(x) for x in lines])
            offsets.append(at + np.concatenate([[0], np.cumsum(lengths)[:-1]]))
            at += int(lengths.sum())
            meta.write(b"".join(lines))
    (index, probes, calibrated), build = built(lambda: new_ivf(vectors))
    from seqlab.vectors.embed import fingerprint
    from seqlab.vectors.index import FORMAT

    info = {"format": FORMAT, "run": str(Path(run.path).resolve()), "fingerprint": fingerprint(run.path),
            "unit": "line", "pooling": "mean", "centre": True, "exact_below": 0, "files": [], "count": n,
            "dim": xb.shape[1], "structure": structure_of(index), "probes": probes,
            "calibrated_recall": calibrated, "library": f"faiss {faiss.__version__}"}
    PassageIndex(out, info, index, np.concatenate(offsets))._save(out)
    del index
    t0 = time.perf_counter()
    loaded = PassageIndex.load(out)
    load_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    queries = [p.data for p in base[: QUERIES_BIG + 1]]
    loaded.search_text(run, queries[0].decode("utf-8", "replace"), K)  # warm: the run's centre
    parts = {"forward": [], "ANN": [], "metadata": [], "total": []}
    for q in queries[1:]:
        t0 = time.perf_counter()
        vector = embed_texts(run, [q])
        t1 = time.perf_counter()
        scores, ids = loaded.search(vector, K)
        t2 = time.perf_counter()
        [loaded.passage(int(i)) for i in ids[0] if i >= 0]
        t3 = time.perf_counter()
        loaded.search_text(run, q.decode("utf-8", "replace"), K)
        t4 = time.perf_counter()
        for name, secs in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[name].append(secs * 1000)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    row = [f"{n:,}", info["structure"], f"{probes} ({calibrated:.3f})", f"{build:.0f}", f"{load_s * 1000:.0f}",
           f"{size:.0f}"]
    latency = [[name, f"{np.median(v):.2f}", median_interval(np.array(v)), f"{np.percentile(v, 95):.2f}"]
               for name, v in parts.items()]
    return row, latency


QUERIES_BIG = 200
NOISE = 0.01  # per dimension: |noise| ~ 0.16 of a unit vector in 256-d (0.05 gave 0.8: near-random points)


def median_interval(values: np.ndarray) -> str:
    lo, hi = bootstrap_statistic(lambda i: float(np.median(values[i])), len(values), 1, n_boot=300)
    return f"[{lo:.2f}, {hi:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--corpus", nargs="+", help="text whose lines are embedded (default: the run's corpus)")
    ap.add_argument("--n", type=int, default=100_000, help="vectors per dataset (100,000)")
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--big", type=int, default=1_000_000, help="passages in the search-latency index (0: skip)")
    ap.add_argument("--only-big", action="store_true", help="skip the comparison tables")
    ap.add_argument("--cache", help="a folder where the passage vectors are saved / read back (skips embedding)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="only seqlab's index and HNSW16 (efSearch 16, 24, 32), read in turn this many times")
    args = ap.parse_args()
    run = load(args.run)
    corpus = args.corpus or run.config.data.paths
    xb, xq, base = cached(args.cache) if args.cache and Path(args.cache, "xb.npy").exists() else \
        real(run, corpus, args.n, args.queries)
    if args.cache:
        save_cache(args.cache, xb, xq, base)
    if args.rounds:
        rows = side_by_side(f"synthetic {args.n:,}x128", *synthetic(args.n, args.queries), args.rounds)
        rows += side_by_side(f"passages {len(xb):,}x{xb.shape[1]}", xb, xq, args.rounds)
        print_table(f"read in turn, {args.rounds} rounds (queries/s on 1 thread: median (min, max))",
                    ["data", "index", "recall@10 vs exact", "queries/s"], rows)
        return
    if not args.only_big:
        print("synthetic", flush=True)
        xs, qs = synthetic(args.n, args.queries)
        rows = compare(f"synthetic {args.n:,}x128", xs, qs)
        print("real passage vectors", flush=True)
        rows += compare(f"passages {len(xb):,}x{xb.shape[1]}", xb, xq)
        header = ["data", "index", "build s", "recall@10 vs exact", "queries/s (1 thread)", "MiB on disk", ""]
        print()
        print_table("nearest-neighbour indexes (95% intervals over queries)", header[:-1], [r[:-1] for r in rows])
        print()
        print_table("one query at a time: exact vs seqlab's IVF (ms per query, 1 thread), synthetic 128-d",
                    ["vectors", "IVF", "flat ms", "IVF ms"], crossover(xs, qs))
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"building a {args.big:,}-passage index", flush=True)
            big, latency = big_index(run, xb, base, args.big, Path(tmp))
        print()
        print_table(f"a {args.big:,}-passage index (real passage vectors repeated with noise)",
                    ["passages", "structure", "probes (calibrated recall@10)", "build s", "load ms (mmap)",
                     "MiB on disk"], [big])
        print()
        print_table(f"seqlab search per query after load, 1 thread ({QUERIES_BIG} corpus lines as queries; "
                    "total = PassageIndex.search_text)", ["part", "median ms", "95% interval", "p95 ms"], latency)


if __name__ == "__main__":
    main()
