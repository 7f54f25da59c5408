"""Novelty index speed: suffix-array build time and query time on a ~100 MB corpus.

    python bench/novelty_index.py [--mb 100] [--out /tmp/seqlab-novelty-bench]

The corpus is text files from this machine (Debian docs, C headers, the Python
standard library), concatenated up to --mb megabytes into OUT/corpus/ (not part of
the repository). Reported: index build (read + suffix array + save), open of the
cached index, and matching statistics for 2 KB queries, three kinds: random bytes
of the corpus' alphabet, a verbatim 2 KB excerpt of the corpus (the slowest: every
position matches to the end), and a 2 KB excerpt with 2% of its bytes mutated.
Baselines in the same run: Python's `bytes.find` for the excerpt (one exact
search, no matching statistics) and the brute-force matching statistics of the
mutated 2 KB query (each position extended with `in`), measured in full: minutes
on 100 MB (--brute-bytes N times the first N bytes of it instead, and says so).
Each query is timed --repeats times: the median, with the fastest and slowest.
Targets: build <= 60 s, a 2 KB query <= 50 ms.
"""

import argparse
import glob
import os
import random
import shutil
import statistics
import time
from pathlib import Path

from seqlab.novelty import novelty, open_index

SOURCES = ["/usr/share/doc/**/*", "/usr/include/**/*.h", "/usr/lib/python3*/**/*.py"]


def build_corpus(out: Path, megabytes: int) -> list[Path]:
    """Copy text files into out/ (one file per 1 MB shard) until the corpus holds `megabytes`."""
    out.mkdir(parents=True, exist_ok=True)
    target, total, shard, parts = megabytes * 2**20, 0, [], []
    for pattern in SOURCES:
        for name in sorted(glob.glob(pattern, recursive=True)):
            if total >= target:
                break
            path = Path(name)
            if not path.is_file() or path.is_symlink() or name.endswith(".gz"):
                continue
            data = path.read_bytes()
            if b"\0" in data[:4096]:
                continue  # binary
            data = data[: target - total]
            shard.append(data)
            total += len(data)
            if sum(map(len, shard)) >= 2**20:
                parts.append(b"".join(shard))
                shard = []
    if shard:
        parts.append(b"".join(shard))
    files = []
    for i, part in enumerate(parts):
        files.append(out / f"shard{i:04d}.txt")
        files[-1].write_bytes(part)
    return files


def timed(fn, repeat=1):
    """(wall seconds of each repeat, CPU seconds of this process of each, result): CPU time is less disturbed by a
    busy box."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, result


def spread(seconds: list[float], scale: float = 1000, unit: str = "ms") -> str:
    """The median, and the fastest and slowest when there are several."""
    values = sorted(s * scale for s in seconds)
    extremes = f" ({values[0]:.1f}-{values[-1]:.1f})" if len(values) > 1 else ""
    return f"{statistics.median(values):.1f} {unit}{extremes}"


def brute_ms(corpus: bytes, text: bytes) -> list[int]:
    out, length = [], 0
    for i in range(len(text)):
        length = max(length - 1, 0)
        while i + length < len(text) and text[i : i + length + 1] in corpus:
            length += 1
        out.append(length)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--out", default="/tmp/seqlab-novelty-bench")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each query")
    ap.add_argument("--brute-bytes", type=int, default=2048,
                    help="bytes of the mutated query the brute force reads (default: all 2 KB, minutes on 100 MB)")
    args = ap.parse_args()
    out = Path(args.out)
    corpus_dir = out / "corpus"
    if not corpus_dir.exists():
        build_corpus(corpus_dir, args.mb)
    index_dir = out / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    files = sorted(corpus_dir.iterdir())
    n_bytes = sum(f.stat().st_size for f in files)
    build_s, build_cpu, index = timed(lambda: open_index([str(corpus_dir)], index_dir))
    assert index.built_now
    open_s, open_cpu, index = timed(lambda: open_index([str(corpus_dir)], index_dir), repeat=3)
    assert not index.built_now
    corpus = bytes(index.corpus)
    rng = random.Random(0)
    alphabet = bytes(sorted(set(corpus[:: max(1, len(corpus) // 100000)])))
    at = rng.randrange(len(corpus) - 4096)
    excerpt = corpus[at : at + 2048]
    mutated = bytearray(excerpt)
    for i in rng.sample(range(2048), 41):
        mutated[i] = rng.choice(alphabet)
    queries = {
        "random bytes": bytes(rng.choice(alphabet) for _ in range(2048)),
        "verbatim excerpt": excerpt,
        "excerpt, 2% mutated": bytes(mutated),
    }
    rows = [("index build (read, suffix array, save)", spread(build_s, 1, "s"), spread(build_cpu, 1, "s"),
             "target <= 60 s"),
            ("open cached index", spread(open_s), spread(open_cpu), "")]
    for name, q in queries.items():
        novelty(index, q, 20)  # first touch of the memory-mapped pages
        t, c, report = timed(lambda q=q: novelty(index, q, 20), repeat=args.repeats)
        rows.append((f"2 KB query: {name}", spread(t), spread(c),
                     f"target <= 50 ms; longest copy {report['longest_copy']} B, "
                     f"copied {100 * report['copied_fraction']:.0f}%"))
    t, c, _ = timed(lambda: corpus.find(excerpt), repeat=3)
    rows.append(("baseline: bytes.find of the excerpt (one search)", spread(t), spread(c), ""))
    short = queries["excerpt, 2% mutated"][: args.brute_bytes]
    t, c, ref = timed(lambda: brute_ms(corpus, short))
    assert ref == index.matching_statistics(short)[0].tolist(), "index disagrees with brute force"
    whole = "measured on all 2 KB" if len(short) == 2048 else \
        f"measured on {len(short)} B; ~{t[0] * 2048 / len(short):.0f} s per 2 KB extrapolated, not measured"
    rows.append((f"baseline: brute-force matching stats, {len(short)} B", spread(t, 1, "s"), spread(c, 1, "s"),
                 f"{whole}; agrees with the index"))
    w = max(len(r[0]) for r in rows)
    print(f"corpus: {n_bytes / 2**20:.1f} MB in {len(files)} files ({corpus_dir})")
    ww, wc = max(len(r[1]) for r in rows), max(len(r[2]) for r in rows)
    print(f"{'measure':<{w}}  {'wall':>{ww}}  {'cpu':>{wc}}  note (median, fastest-slowest of the repeats)")
    print("-" * (w + ww + wc + 60))
    for name, wall, cpu, note in rows:
        print(f"{name:<{w}}  {wall:>{ww}}  {cpu:>{wc}}  {note}")
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"index in {index_dir})")


if __name__ == "__main__":
    main()
