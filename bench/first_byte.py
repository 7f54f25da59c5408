"""From a process's start to its first scored byte, and its memory: runs side by side (counts.bitcm on or off).

    python bench/first_byte.py FILE RUN [RUN ...] [--afresh RUN] [--build RUN] [--bytes 100000] [--threads 2]
        [--repeats 3]

Each reading is a fresh process (`python -c`, as a verb starts: imports, the run's load, the count model's session)
that scores the last --bytes of FILE with eval's mixed scoring (scoring.score_run, the count model mixed in). The
parent notes the time just before it starts the process; the child, when the first chunk of mixed rows comes out,
its time and its CPU-seconds, then scores the rest and gives its resident memory, its session still held (VmRSS, of
it RssAnon: the process's own pages; RssFile: mapped files' pages, shared with the page cache) and its peak
(VmHWM). --afresh RUN: a reading of RUN whose bitwise model reads the training bytes in the process (its kept state
not used: as before it was kept).
--build RUN first times, in this process, what a run with counts.bitcm pays once (countmodel/bitstate.py): its
bitwise model reading the training bytes, its state saved into counts/bitcm/ (replaced), then mapped again; and the
state's size on disk.
The runs are read in turn, --repeats times; the machine may be shared: give the load average (uptime) with them.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

CHILD = """
import json, sys, time
sys.path.insert(0, {src!r})
import numpy as np, torch
from seqlab.run import load
from seqlab.scoring import score_run

torch.set_num_threads({threads})
run = load({run!r})
if {afresh}:
    run.count_model.bitcm_dir = None
data = open({file!r}, "rb").read()[-{n_bytes}:]
tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
session = run.count_model.session(run.device)  # held to the end: its memory is measured
stream = score_run(run, tokens, 1, session)
next(stream)
first, first_cpu = time.time(), time.process_time()
for _ in stream:
    pass
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
memory = {{k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}}
print(json.dumps({{"first": first, "first_cpu": first_cpu, "all_cpu": time.process_time(), **memory}}))
del session
"""


def reading(run: str, afresh: bool, args) -> dict:
    code = CHILD.format(src=SRC, threads=args.threads, run=run, afresh=afresh, file=args.file, n_bytes=args.bytes)
    start = time.time()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.splitlines()[-1])
    return {**result, "to_first": result["first"] - start}


def build(run_dir: str) -> None:
    """Time the state's one-time cost for run_dir: reading the training bytes, saving, mapping; print its size."""
    from seqlab.countmodel import bitcm, bitstate
    from seqlab.run import load

    model = load(run_dir).count_model
    expected = bitstate.fingerprint(model.history_bytes, model.bitcm_identity())
    bitcm.BitCM(table_bits=10, match_bits=8).learn(b"numba's code loaded first")
    wall, cpu = time.perf_counter(), time.thread_time()
    bits = bitcm.BitCM(table_bits=expected["table_bits"])
    bits.learn(model.history_bytes)
    print(f"{run_dir}: read {len(model.history_bytes):,} training bytes in {time.perf_counter() - wall:.2f} s "
          f"({time.thread_time() - cpu:.2f} CPU-s)", end="")
    wall, cpu = time.perf_counter(), time.thread_time()
    assert bitstate.save(bits, model.bitcm_dir, expected)
    print(f", saved in {time.perf_counter() - wall:.2f} s ({time.thread_time() - cpu:.2f} CPU-s)", end="")
    wall, cpu = time.perf_counter(), time.thread_time()
    assert bitstate.load(model.bitcm_dir, expected)[0] is not None
    sizes = sorted(((p.stat().st_size, p.name) for p in model.bitcm_dir.iterdir()), reverse=True)
    print(f", mapped in {1e3 * (time.perf_counter() - wall):.1f} ms ({1e3 * (time.thread_time() - cpu):.1f} CPU-ms);"
          f" {sum(s for s, _ in sizes) / 1e6:.1f} MB on disk in {len(sizes)} files (largest: "
          + ", ".join(f"{name} {size / 1e6:.1f} MB" for size, name in sizes[:4]) + ")")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file")
    p.add_argument("runs", nargs="+")
    p.add_argument("--afresh", action="append", default=[], metavar="RUN")
    p.add_argument("--build", metavar="RUN", help="time RUN's state's reading, saving and mapping first")
    p.add_argument("--bytes", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.build:
        build(args.build)
    readings = [(run, False) for run in args.runs] + [(run, True) for run in args.afresh]
    results: dict = {}
    for _ in range(args.repeats):
        for run, afresh in readings:
            results.setdefault((run, afresh), []).append(reading(run, afresh, args))
    print(f"the last {args.bytes:,} bytes of {args.file}, {args.threads} threads, {args.repeats} readings each in "
          "turn, a fresh process each; medians (each reading)")
    for (run, afresh), rs in results.items():
        def median(key, rs=rs):
            return float(np.median([r[key] for r in rs]))

        each = ", ".join(f"{r['to_first']:.2f}" for r in rs)
        print(f"{run}{' (read afresh)' if afresh else ''}: first scored byte {median('to_first'):.2f} s after the "
              f"process started ({each}), {median('first_cpu'):.2f} CPU-s; "
              f"all {median('all_cpu'):.2f} CPU-s; RSS {median('VmRSS'):.0f} MB (anon {median('RssAnon'):.0f}, "
              f"file {median('RssFile'):.0f}), peak {median('VmHWM'):.0f} MB")


if __name__ == "__main__":
    main()
