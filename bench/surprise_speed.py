"""How fast does `seqlab surprise` score a file with the default-size model, against eval's own scoring?

    python bench/surprise_speed.py RUN [FILE] [--bytes 200000] [--threads 2]

FILE defaults to concatenated C headers from /usr/include (Debian's libc6-dev); of a
FILE its last --bytes are scored (held out, when the run was trained on FILE).
Prints bytes/s for eval's path (scoring.run_token_bits: blocks of 4096 tokens warmed
up on 1024, count model mixed in when the run has one), for surprise's default
(surprise_score: the network alone, blocks of BLOCK warmed up on WARMUP), for the
same without the LSTM's scoring fast path (`scoring_features`) and for surprise
--mixed, with each one's bits per byte. The machine may be shared, so the ratios
between them measured in one run are the figures to trust, and bytes per CPU-second
(process time, all threads) are shown beside wall-clock bytes/s: with --threads 1
they are what one otherwise idle core would score.
"""

import argparse
import glob
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seqlab.run import load  # noqa: E402
from seqlab.scoring import run_token_bits  # noqa: E402
from seqlab.surprise_score import BLOCK, WARMUP, score_tokens  # noqa: E402


def headers(n_bytes: int) -> bytes:
    out = b""
    for path in sorted(glob.glob("/usr/include/**/*.h", recursive=True)):
        out += Path(path).read_bytes()
        if len(out) >= n_bytes:
            break
    return out[:n_bytes]


def timed(fn) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, what fn returned)."""
    wall, cpu = time.perf_counter(), time.process_time()
    bits = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, float(bits)


def without_fast_path(run, fn):
    """fn() with the model's generic features() in place of its scoring fast path: the figure before it."""
    def call():
        run.model.scoring_features = run.model.features  # an instance attribute shadows the method
        try:
            return fn()
        finally:
            del run.model.scoring_features
    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("file", nargs="?")
    ap.add_argument("--bytes", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-mixed", action="store_true", help="leave out the (slow) mixed paths")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = load(args.run)
    data = Path(args.file).read_bytes()[-args.bytes :] if args.file else headers(args.bytes)  # a run's held-out tail
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
    rows = [("surprise (network alone, new)", lambda: score_tokens(run, tokens).bits.sum())]
    if hasattr(run.model, "scoring_features"):
        rows.append(("surprise without the LSTM fast path", without_fast_path(run, rows[0][1])))
    saved = run.count_model
    run.count_model = None  # eval's path with the network alone: the like-for-like old figure
    rows.append(("eval's scoring, network alone (old surprise)", lambda: run_token_bits(run, tokens, 1)[0].sum()))
    results = [(name, *timed(fn)) for name, fn in rows]
    run.count_model = saved
    if saved is not None and not args.skip_mixed:
        mixed = lambda: run_token_bits(run, tokens, 1)[0].sum()
        results.append(("eval's scoring, mixed (surprise --mixed)", *timed(mixed)))
    print(f"{len(data):,} bytes, {args.threads} threads, blocks of {BLOCK} warmed up on {WARMUP} (new)")
    for name, wall, cpu, bits in results:
        print(f"{name:<46} {len(data) / wall:>10,.0f} bytes/s  {len(data) / cpu:>10,.0f} bytes/CPU-s  "
              f"{bits / len(data):.4f} bpb")
    for name, wall, cpu, _ in results[1:3]:
        print(f"speed-up of surprise over {name} in this run: {wall / results[0][1]:.2f}x wall, "
              f"{cpu / results[0][2]:.2f}x CPU")


if __name__ == "__main__":
    main()
