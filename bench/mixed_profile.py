"""Where eval's mixed scoring spends its CPU: thread CPU-seconds per part, one fresh process per run.

    python bench/mixed_profile.py RUN [RUN2 ...] --file TEXT [--bytes 100000] [--threads 2]

For each run in turn (a fresh process each), eval's mixed scoring of TEXT's last --bytes (surprise_speed.py's timed
pass: one untimed pass first, then the timed one) with each part's functions wrapped to sum their thread's CPU time
(time.thread_time: the time its own thread ran, whatever the other threads did): the network's forward
(scoring._score_batch, in torch's threads), the count experts' reads (CountReader.read, in the counting thread), the
mix (OnlineMixer.mix_and_update), the bitwise model's scoring (CountSession._bitwise: eval's BitCM.costs, the byte's
path, since 2026-12-06; BitCM.score's rows and their copies before), opening its kept state (bitstate.open_model),
and the process's CPU time left over (the main thread's loop, torch's own threads). Page faults (minor) of the timed
pass beside them, and each run's bits per byte minus the first run's (paired by byte, 95%: the runs are copies with
other settings). Run it on a shared machine side by side (the runs in turn) and give the load average.
The timeline of each part's calls (perf_counter) beside its CPU: its calls, their wall time (summed over its threads),
the share of the pass's wall time in which one of its calls ran, and the wall time in which none of the parts ran
(what waited on what: a part whose calls run far longer than their CPU waited for a core).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

PARTS = {  # part: (module, class or None, function)
    "network forward": ("seqlab.scoring", None, "_score_batch"),
    "count experts' reads": ("seqlab.countmodel.session", "CountReader", "read"),
    "mix": ("seqlab.countmodel.mixer", "OnlineMixer", "mix_and_update"),
    "bitcm score": ("seqlab.countmodel.session", "CountSession", "_bitwise"),
    "bitcm open (kept state)": ("seqlab.countmodel.bitstate", None, "open_model"),
}


def wrap_parts(calls: list) -> None:
    """Each part's function replaced by one that appends (part, its start and end by perf_counter, its thread's CPU
    time) to calls (a session imports bitstate.open_model inside a function: the module's attribute is what it
    finds)."""
    import importlib

    lock = threading.Lock()
    for part, (module_name, cls, name) in PARTS.items():
        owner = importlib.import_module(module_name)
        owner = getattr(owner, cls) if cls else owner
        fn = getattr(owner, name)

        def timed(*a, _fn=fn, _part=part, **k):
            t0, cpu = time.perf_counter(), time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                with lock:
                    calls.append((_part, t0, time.perf_counter(), time.thread_time() - cpu))

        setattr(owner, name, timed)


def child(args) -> None:
    import numpy as np
    import torch

    from seqlab.run import load
    from seqlab.scoring import run_token_bits

    torch.set_num_threads(args.threads)
    calls: list = []
    wrap_parts(calls)
    run = load(args.runs[0])
    data = Path(args.file).read_bytes()[-args.bytes :]
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
    run_token_bits(run, tokens, 1)
    calls.clear()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, cpu = time.perf_counter(), time.process_time()
    mixed = run_token_bits(run, tokens, 1)[0]
    stop, cpu = time.perf_counter(), time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    from seqlab.intervals import byte_bits

    np.save(args.child, byte_bits(run.tokenizer, tokens[1:], mixed), allow_pickle=False)
    print(json.dumps({"wall": stop - start, "cpu": cpu, "bytes": len(data), "bpb": float(mixed.sum() / len(data)),
                      "minor faults": faults, **timeline(calls, start, stop)}))


def timeline(calls: list, start: float, stop: float, step: float = 1e-4) -> dict:
    """Per part: its thread CPU-s, calls, their wall seconds summed, and the share of [start, stop] in which one of
    them ran; and the seconds in which no part ran."""
    import numpy as np

    ticks = np.arange(start, stop, step)
    running, out = {}, {"parts": {}, "calls": {}, "call wall": {}, "running": {}}
    for part, t0, t1, cpu in calls:
        for key, value in (("parts", cpu), ("calls", 1), ("call wall", t1 - t0)):
            out[key][part] = out[key].get(part, 0) + value
        at = running.setdefault(part, np.zeros(len(ticks), dtype=bool))
        at[np.searchsorted(ticks, t0) : np.searchsorted(ticks, t1)] = True
    out["running"] = {part: float(at.mean()) for part, at in running.items()}
    out["none running"] = float((~np.any(list(running.values()), axis=0)).mean() * (stop - start)) if running else 0.0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--file", required=True)
    p.add_argument("--bytes", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)  # one run's reading; its bytes' bits to OUT
    args = p.parse_args()
    if args.child:
        return child(args)
    import numpy as np

    from seqlab.intervals import AUTO, paired

    first = None
    for run in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, run, "--file", args.file, "--bytes", str(args.bytes),
                                  "--threads", str(args.threads), "--child", f"{tmp}/bits.npy"], check=True,
                                 capture_output=True, text=True)
            bits = np.load(f"{tmp}/bits.npy")
        first = bits if first is None else first
        d = paired([bits], [first], AUTO)
        r = json.loads(out.stdout.splitlines()[-1])
        parts = r["parts"]
        rest = r["cpu"] - sum(v for k, v in parts.items() if k != "bitcm open (kept state)")
        print(f"{run}: {r['bytes']:,} bytes, wall {r['wall']:.2f} s, process CPU {r['cpu']:.2f} s, "
              f"{r['bpb']:.6f} bpb (minus the first run's, byte by byte: {d['difference']:+.4f} [{d['low']:+.4f}, "
              f"{d['high']:+.4f}]), {r['minor faults']:,} minor page faults")
        for part in PARTS:
            print(f"  {part:<26} {parts.get(part, 0.0):6.2f} CPU-s  {r['calls'].get(part, 0):5d} calls, "
                  f"{r['call wall'].get(part, 0.0):6.2f} s of wall in them, one running "
                  f"{r['running'].get(part, 0):4.0%} of the pass")
        print(f"  {'the rest (main loop, ...)':<26} {rest:6.2f} CPU-s; no part running {r['none running']:.2f} s")


if __name__ == "__main__":
    main()
