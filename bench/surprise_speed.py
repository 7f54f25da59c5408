"""How fast does `seqlab surprise` score a file with the default-size model, against eval's own scoring?

    python bench/surprise_speed.py RUN [FILE] [--bytes 200000] [--threads 2]
    python bench/surprise_speed.py RUN [FILE] --fixes [--bytes 2000] [--before SRC] [--repeats 3]
    python bench/surprise_speed.py RUN [FILE] --mixed-only --before SRC [--bytes 100000] [--repeats 3]

FILE defaults to concatenated C headers from /usr/include (Debian's libc6-dev); of a
FILE its last --bytes are scored (held out, when the run was trained on FILE).
Prints bytes/s for surprise scoring with the network alone (surprise/score.py), for the
same without the architecture's scoring fast path, for eval's path with the network
alone and for surprise's default on a run with a count model (eval's path, count model
mixed in), with each one's bits per byte. `surprise --network-alone` is the first row.
- A recurrent model: surprise scores blocks of BLOCK warmed up on WARMUP; eval's
  blocks are 4096 warmed up on 1024. Its fast path is the LSTM's first layer by
  table (`scoring_features`).
- A window model (the transformer): surprise and eval share sliding windows; the
  fast path is what `window_features` skips (the last block's work for the first
  half of each window) plus small batches that stay in the CPU's cache. Without
  it: full windows in 64k-token batches, as before. Either way the batches are
  scored in --threads workers of one thread each (scoring.score_logits).
--fixes times the whole command a user runs, `seqlab surprise RUN FILE --top 3` with fixes
(one reading; loading the run included), on the first --bytes of FILE (default: the C
headers below), and with --before SRC the same command with the seqlab source tree SRC
(e.g. a `git archive` of the commit before) in turn, saying whether both listed the same
anomalies and fixes.
--mixed-only --against RUN2 does the same for RUN (after) and RUN2 (before) with this tree.
Without --fixes, --before SRC times the mixed row (eval's scoring with the count model) with this tree and
with SRC in turn, each a fresh process (one untimed pass, then the timed one), --repeats times, and pairs
the two trees' bits byte by byte (intervals.paired): the speed-up and whether the bits stayed the same.
--mixed-only leaves out the other rows.
The rows run in turn, --repeats times, and the median is shown: the machine may be
shared, so ratios measured in one run are the figures to trust. Bytes per CPU-second
(process time, all threads) are shown beside wall-clock bytes/s: with --threads 1
they are what one otherwise idle core would score.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from unittest.mock import patch

HERE = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, os.environ.get("SEQLAB_BENCH_SRC", HERE))  # --before's child processes import SRC's seqlab

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seqlab import scoring  # noqa: E402
from seqlab.models.base import SeqModel  # noqa: E402
from seqlab.run import load  # noqa: E402
from seqlab.scoring import run_token_bits  # noqa: E402
from seqlab.surprise.score import describe_scoring, score_tokens  # noqa: E402
from trees import seqlab_src  # noqa: E402


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


def patched(fn, *patches):
    """fn() run with the patches (unittest.mock's) in place."""
    def call():
        with ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            return fn()
    return call


def without_fast_path(run, fn):
    """fn() with the model's generic features in place of its scoring fast path: the figure before it."""
    model = run.model  # instance attributes shadow the methods
    if model.max_context:
        return patched(fn, patch.object(model, "window_features", partial(SeqModel.window_features, model)),
                       patch.object(scoring, "BATCH_TOKENS_WINDOWS", scoring.BATCH_TOKENS_RECURRENT))
    return patched(fn, patch.object(model, "scoring_features", model.features))


def median_runs(rows, repeats: int) -> list[tuple[str, float, float, float]]:
    """(name, median wall s, median CPU s, bits) per row, the rows run in turn `repeats` times."""
    times = {name: [] for name, _ in rows}
    for _ in range(repeats):
        for name, fn in rows:
            times[name].append(timed(fn))
    return [(name, float(np.median([t[0] for t in ts])), float(np.median([t[1] for t in ts])), ts[0][2])
            for name, ts in times.items()]


def _rounded(fix: dict | None) -> dict | None:
    """A fix with its figures to 3 decimals: batching the judge's reads differently moves float32 sums in their
    last bits, which is not a different fix."""
    return fix and {k: round(v, 3) if isinstance(v, float) else v for k, v in fix.items()}


def source_tree(before: str | None) -> list[tuple[str, str]]:
    """[("after", this tree's src), ("before", --before's src)], the second only with --before (a checkout or
    its src/)."""
    return [("after", HERE)] + ([("before", seqlab_src(before))] if before else [])


def whole_commands(args) -> None:
    """--fixes: `seqlab surprise RUN FILE --top 3 --json` as processes, this tree and --before's in turn."""
    data = Path(args.file).read_bytes()[: args.bytes] if args.file else headers(args.bytes)
    trees = source_tree(args.before)
    times, found = {name: [] for name, _ in trees}, {}
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        for _ in range(args.repeats):
            for name, src in trees:
                env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(args.threads)}
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-m", "seqlab", "surprise", args.run, f.name, "--top", "3",
                                      "--json"], check=True, capture_output=True, text=True, env=env).stdout
                times[name].append(time.perf_counter() - t0)
                found[name] = [(a["offset"], _rounded(a["fix"])) for a in json.loads(out)["anomalies"]]
    print(f"`seqlab surprise RUN FILE --top 3` on {len(data):,} bytes, whole process, {args.threads} thread(s), "
          f"{args.repeats} runs in turn")
    for name, ts in times.items():
        print(f"{name:<7} median {np.median(ts):6.1f} s   runs: {', '.join(f'{t:.1f}' for t in ts)}")
    if args.before:
        ratios = [b / a for a, b in zip(times["after"], times["before"])]
        print(f"speed-up {np.median(ratios):.2f}x (runs: {', '.join(f'{r:.2f}x' for r in ratios)}); "
              f"same anomalies and fixes: {found['after'] == found['before']}")


def text_tokens(run, args) -> tuple[bytes, np.ndarray]:
    """The bytes scored (the last --bytes of FILE, a run's held-out tail, or the C headers) and their tokens
    after BOS."""
    data = Path(args.file).read_bytes()[-args.bytes :] if args.file else headers(args.bytes)
    return data, np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)


def mixed_child(args) -> None:
    """--child OUT: one untimed pass of eval's mixed scoring, then a timed one; its bits per byte go to OUT (.npy)
    and its times to stdout (JSON)."""
    from seqlab.intervals import byte_bits

    torch.set_num_threads(args.threads)
    run = load(args.run)
    data, tokens = text_tokens(run, args)
    run_token_bits(run, tokens, 1)
    wall, cpu = time.perf_counter(), time.process_time()
    bits = run_token_bits(run, tokens, 1)[0]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    np.save(args.child, byte_bits(run.tokenizer, tokens[1:], bits), allow_pickle=False)
    print(json.dumps({"wall": wall, "cpu": cpu, "bytes": len(data)}))


def mixed_before_after(args) -> None:
    """--before SRC without --fixes: the mixed row with this tree and SRC's in turn, fresh processes, paired;
    --against RUN2 instead: the mixed row of RUN and of RUN2 (a copy with other settings) with this tree."""
    from seqlab.intervals import AUTO, paired

    times, bits = {}, {}
    readings = ([("after", HERE, args.run), ("before", HERE, args.against)] if args.against
                else [(name, src, args.run) for name, src in source_tree(args.before)])
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, src, run in readings:
                out = Path(tmp) / f"{name}.npy"
                cmd = [sys.executable, __file__, run, *([args.file] if args.file else []), "--bytes",
                       str(args.bytes), "--threads", str(args.threads), "--child", str(out)]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                      env={**os.environ, "SEQLAB_BENCH_SRC": src})
                times.setdefault(name, []).append(json.loads(done.stdout.splitlines()[-1]))
                bits[name] = np.load(out)
    n = times["after"][0]["bytes"]
    print(f"eval's scoring, mixed: {n:,} bytes, {args.threads} threads, a fresh process per reading, "
          f"{args.repeats} readings each in turn (one untimed pass first)"
          + (f"; after: {args.run}, before: {args.against}" if args.against else ""))
    for name, ts in times.items():
        wall, cpu = (float(np.median([t[k] for t in ts])) for k in ("wall", "cpu"))
        each = ", ".join(f"{n / t['wall']:,.0f}" for t in ts)
        print(f"{name:<7} {n / wall:>10,.0f} bytes/s  {n / cpu:>10,.0f} bytes/CPU-s  {bits[name].sum() / n:.6f} bpb  "
              f"(bytes/s of each reading: {each})")
    ratios = [b["wall"] / a["wall"] for a, b in zip(times["after"], times["before"])]
    cpu = [b["cpu"] / a["cpu"] for a, b in zip(times["after"], times["before"])]
    d = paired([bits["after"]], [bits["before"]], AUTO)
    print(f"speed-up after/before: {np.median(ratios):.2f}x wall (readings: {', '.join(f'{r:.2f}x' for r in ratios)}), "
          f"{np.median(cpu):.2f}x CPU")
    print(f"bits per byte, after minus before, byte by byte: {d['difference']:+.6f} [{d['low']:+.6f}, "
          f"{d['high']:+.6f}]; identical bytes' bits: {np.array_equal(bits['after'], bits['before'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("file", nargs="?")
    ap.add_argument("--bytes", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-mixed", action="store_true", help="leave out the (slow) mixed paths")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fixes", action="store_true", help="time `seqlab surprise RUN FILE --top 3` with fixes")
    ap.add_argument("--before", metavar="SRC", help="a seqlab source tree (checkout or its src/) to compare against: "
                    "the whole command with --fixes, else the mixed row")
    ap.add_argument("--mixed-only", action="store_true", help="with --before: only the mixed row, before and after")
    ap.add_argument("--against", metavar="RUN2", help="with --mixed-only: the mixed row of RUN2 (e.g. a copy of RUN "
                    "with other settings in its config.json) as the 'before', this tree for both")
    ap.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)  # one reading of the mixed row (--before's)
    args = ap.parse_args()
    if args.fixes:
        return whole_commands(args)
    if args.child:
        return mixed_child(args)
    if args.mixed_only:
        if not (args.before or args.against):
            sys.exit("--mixed-only compares the mixed row with --before SRC's or --against RUN2's; give one")
        return mixed_before_after(args)
    torch.set_num_threads(args.threads)
    run = load(args.run)
    data, tokens = text_tokens(run, args)
    has_counts = run.count_model is not None  # loaded here, before any timing
    surprise = lambda: score_tokens(run, tokens).bits.sum()
    run_eval = lambda: run_token_bits(run, tokens, 1)[0].sum()
    rows = [("surprise (network alone)", surprise),
            ("surprise without the fast path", without_fast_path(run, surprise)),
            ("eval's scoring, network alone", patched(run_eval, patch.object(run, "count_model", None)))]
    results = median_runs(rows, args.repeats)
    if has_counts and not args.skip_mixed:
        results += median_runs([("eval's scoring, mixed (surprise's default)", run_eval)], args.repeats)
    print(f"{len(data):,} bytes, {args.threads} threads, {describe_scoring(run, mixed=False)}; "
          f"median of {args.repeats} runs in turn")
    for name, wall, cpu, bits in results:
        print(f"{name:<42} {len(data) / wall:>10,.0f} bytes/s  {len(data) / cpu:>10,.0f} bytes/CPU-s  "
              f"{bits / len(data):.4f} bpb")
    for name, wall, cpu, _ in results[1:3]:
        print(f"speed-up of surprise over {name} in this run: {wall / results[0][1]:.2f}x wall, "
              f"{cpu / results[0][2]:.2f}x CPU")
    if args.before and has_counts and not args.skip_mixed:
        mixed_before_after(args)


if __name__ == "__main__":
    main()
