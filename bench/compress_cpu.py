"""Where compress's CPU goes, per thread: the network worker's and the main thread's (count model, mixing, coder).

    python bench/compress_cpu.py RUN --file F [--bytes 100000] [--segment-tokens 1024] [--src SRC] [--decompress]
                                 [--profile 25] [--timed] [--fp32]

CPU-seconds per thread (time.thread_time) hardly move with the machine's load, where wall-clock speeds do:
on a shared machine they say what a change saves. --segment-tokens below lockstep's 4,096 makes a small file
step like a large one (1,024: 100 KB reads 97 rows a step, as 400 KB does). --src SRC imports seqlab from another
source tree (e.g. a `git archive` of the commit before), to run the same measurement on it in turn. --profile N
prints the main thread's N costliest functions (cProfile, cumulative: it sees that thread only; its overhead
inflates the main thread's CPU, so the figures above it are then not the plain run's). --timed prints the main
thread's CPU-seconds in a few functions of the count model and the mixer, without the profiler (each timed around
its calls by time.thread_time: its cost per call is about a microsecond, where cProfile's inflates every small call).
"""

import argparse
import cProfile
import pstats
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("run")
ap.add_argument("--file", required=True)
ap.add_argument("--bytes", type=int, default=100_000, help="bytes taken from the start of the file")
ap.add_argument("--segment-tokens", type=int, default=1024)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--src", help="a seqlab source tree to measure instead of this one")
ap.add_argument("--decompress", action="store_true", help="time the round trip's decompress too")
ap.add_argument("--profile", type=int, default=0, metavar="N", help="the main thread's N costliest functions")
ap.add_argument("--timed", action="store_true", help="the main thread's CPU in a few functions, without a profiler")
ap.add_argument("--fp32", action="store_true", help="the network's step in fp32 where compress would take bf16")
args = ap.parse_args()
src = Path(args.src) if args.src else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(src / "src" if (src / "src" / "seqlab").is_dir() else src))

import torch  # noqa: E402

from seqlab.compress import compress_bytes, decompress_bytes, lockstep  # noqa: E402
from seqlab.run import load  # noqa: E402

torch.set_num_threads(args.threads)
lockstep.SEGMENT_TOKENS = args.segment_tokens
if args.fp32:
    lockstep.native_bf16 = lambda device: False
data = Path(args.file).read_bytes()[: args.bytes]
run = load(args.run)
assert run.count_model is not None or True  # built or mapped here, before any timing
network = [0.0]
step = lockstep._network_step


def timed_step(*a):
    t = time.thread_time()
    out = step(*a)
    network[0] += time.thread_time() - t
    return out


lockstep._network_step = timed_step
main_cpu, main_calls = Counter(), Counter()


def time_in_main(owner, name: str) -> None:
    """Add the main thread's CPU in owner.name (a module's function or a class's method) to main_cpu."""
    fn = getattr(owner, name, None)
    if fn is None:  # --src: a tree before it
        return

    def timed(*a, **k):
        if threading.current_thread() is not threading.main_thread():
            return fn(*a, **k)
        t = time.thread_time()
        out = fn(*a, **k)
        main_cpu[name] += time.thread_time() - t
        main_calls[name] += 1
        return out

    setattr(owner, name, timed)


if args.timed:
    from seqlab.countmodel import lockstep as reader, mixer, tables

    for owner, names in [(mixer, ["blend_counts", "_slots", "_blends"]), (tables.CountTable, ["lookup"]),
                         (mixer.OnlineMixer, ["premix", "refine", "sse_inputs"]), (lockstep, ["_learn_chunk"]),
                         (reader.LockstepReader, ["advance"])]:
        for name in names:
            time_in_main(owner, name)
    reader.blend_counts = mixer.blend_counts  # the reader's own name for it


def measure(name: str, fn) -> object:
    network[0] = 0.0
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
    out = profile.runcall(fn) if profile else fn()
    wall, cpu, main = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - main
    print(f"{name}: {len(data) / wall / 1000:.2f} KB/s wall, {len(data) / cpu / 1000:.2f} KB per CPU-s; "
          f"CPU {cpu:.2f} s = main thread {main:.2f} + network worker {network[0]:.2f} "
          f"+ the rest {cpu - main - network[0]:.2f} (the weights steps the worker took)")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
    if args.timed:
        print("  main thread in: " + ", ".join(f"{k} {v:.2f} s ({main_calls[k]} calls)"
                                              for k, v in main_cpu.most_common()))
        main_cpu.clear()
        main_calls.clear()
    return out


precision = "bf16" if getattr(lockstep, "step_in_bf16", lambda run: False)(run) else "fp32"  # --src: before it
print(f"{len(data):,} bytes, {lockstep.segments_for(len(run.tokenizer.encode(data)))} segments, network step in "
      f"{precision}, seqlab from {Path(lockstep.__file__).parents[2]}")
blob = measure("compress", lambda: compress_bytes(run, data, args.threads))
print(f"  {8 * len(blob) / len(data):.4f} bits/byte")
if args.decompress:
    assert measure("decompress", lambda: decompress_bytes(run, blob)) == data
