"""`seqlab compress` against `seqlab eval` and classical compressors, on one file, in one run.

    python bench/compress.py RUN [--file F] [--bytes 1000000] [--threads 1] [--repeats 2]
                                 [--before SRC --before-bytes 8000]

Default file: the last --bytes of the bundled tiny Shakespeare (inside the held-out
10% of a run trained on it); give a run's own held-out text with --file. Prints the
compressed size (header included), the round-trip check, KB/s both ways (wall clock,
and per CPU-second of the process: the machine may be shared), eval's bits per byte
on the same bytes (what compress codes with: the network mixed with the run's count
model when it has one; the network alone too), the gap to eval in %, and gzip, bzip2,
xz, zstd, PPMd (pyppmd, order 6, 256 MB), bzip3 and zpaq (`zpaq a -m5`; Debian's packages
bzip3 and zpaq, when installed) on the same bytes, each with its speed.
--before SRC compresses the first --before-bytes of the file with the seqlab source tree
SRC (e.g. a `git archive` of the commit before) in a subprocess, in turn with this
one, for a before/after ratio of speeds measured in the same run.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.compress import Header, compress_bytes, decompress_bytes  # noqa: E402
from seqlab.data.corpus import default_corpus_path  # noqa: E402
from seqlab.evaluate import evaluate  # noqa: E402
from seqlab.run import load  # noqa: E402
from common import yardsticks  # noqa: E402
from trees import seqlab_src  # noqa: E402


def timed(fn):
    """(what fn returned, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


BEFORE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
from seqlab.run import load
from seqlab.compress import compress_bytes
threads = int(sys.argv[5])
torch.set_num_threads(threads)
data = open(sys.argv[2], "rb").read()[: int(sys.argv[3])]
run = load(sys.argv[4]); run.count_model
wall, cpu = time.perf_counter(), time.process_time()
compress_bytes(run, data, threads)
print(len(data) / (time.perf_counter() - wall), len(data) / (time.process_time() - cpu))
"""


def before_speed(src: str, file: str, n: int, run: str, threads: int) -> tuple[float, float]:
    """Compress speed of the source tree SRC, with the same thread count as this tree's rounds."""
    out = subprocess.run([sys.executable, "-c", BEFORE, src, file, str(n), run, str(threads)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src})
    wall, cpu = map(float, out.stdout.split()[-2:])
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--file", help="file to compress (default: the tail of the bundled corpus)")
    ap.add_argument("--bytes", type=int, default=1_000_000, help="bytes taken from the end of the file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="compress + decompress rounds (speeds: median)")
    ap.add_argument("--before", metavar="SRC", help="a seqlab source tree to measure before/after against")
    ap.add_argument("--before-bytes", type=int, default=8000)
    args = ap.parse_args()
    before_src = seqlab_src(args.before) if args.before else None
    torch.set_num_threads(args.threads)  # eval too: the machine is shared
    file = args.file or str(default_corpus_path())
    data = Path(file).read_bytes()[-args.bytes :]
    run = load(args.run)
    assert run.count_model is not None or True  # built or mapped here, before any timing
    rounds, before = [], []
    for _ in range(args.repeats):
        blob, c_wall, c_cpu = timed(lambda: compress_bytes(run, data, args.threads))
        out, d_wall, d_cpu = timed(lambda blob=blob: decompress_bytes(run, blob))
        assert out == data, "round trip failed"
        rounds.append((c_wall, c_cpu, d_wall, d_cpu))
        if args.before:
            with tempfile.NamedTemporaryFile() as f:
                f.write(data[: args.before_bytes])
                f.flush()
                before.append(before_speed(before_src, f.name, args.before_bytes, args.run, args.threads))
    c_wall, c_cpu, d_wall, d_cpu = np.median(np.array(rounds), axis=0)
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        ev = evaluate(run, [f.name])
    kb = len(data) / 1000
    ours = 8 * len(blob) / len(data)
    rows = [("seqlab compress", len(blob), ours, f"{kb / c_wall:,.1f} / {kb / d_wall:,.1f}",
             f"{kb / c_cpu:,.1f} / {kb / d_cpu:,.1f}")]
    mixed = ev["bpb"] != ev["bpb_network"]
    if mixed:
        rows.append(("seqlab eval, with count model", round(ev["bpb"] * len(data) / 8), ev["bpb"], "-", "-"))
    rows.append(("seqlab eval, network alone", round(ev["bpb_network"] * len(data) / 8), ev["bpb_network"], "-", "-"))
    for name, fn in yardsticks().items():
        packed, wall, cpu = timed(lambda fn=fn: fn(data))
        rows.append((name, len(packed), 8 * len(packed) / len(data), f"{kb / wall:,.0f} (in)", f"{kb / cpu:,.0f}"))
    print(f"{len(data):,} bytes from {file}; run {args.run}; {args.threads} thread(s); median of {args.repeats}\n")
    print(f"| {'method':<30} | {'bytes':>9} | {'bits/byte':>9} | {'KB/s in / out':<16} | {'KB per CPU-s':<16} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 11}|{'-' * 18}|{'-' * 18}|")
    for name, size, bpb, speed, cpu in rows:
        print(f"| {name:<30} | {size:>9,} | {bpb:>9.4f} | {speed:<16} | {cpu:<16} |")
    gap = ours / ev["bpb"] - 1
    header = Header.unpack(blob, "blob")[1]
    print(f"\ncompress vs eval ({'with count model' if mixed else 'network alone'}): {100 * gap:+.2f}% "
          f"({header} header bytes: {100 * 8 * header / len(data) / ev['bpb']:.3f}%); round trip byte-identical")
    if before:
        b_wall, b_cpu = np.median(np.array(before), axis=0)
        ratios = [kb * 1000 / r[0] / w for r, (w, _) in zip(rounds, before)]
        print(f"before ({args.before}, first {args.before_bytes:,} bytes): {b_wall:,.0f} bytes/s, {b_cpu:,.0f} per "
              f"CPU-s; compress now {kb * 1000 / c_wall / b_wall:.1f}x wall (rounds: "
              f"{', '.join(f'{r:.1f}x' for r in ratios)}), {kb * 1000 / c_cpu / b_cpu:.1f}x per CPU-s")


if __name__ == "__main__":
    main()
