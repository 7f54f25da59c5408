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


def wrap_parts(totals: dict) -> None:
    """Each part's function replaced by one that adds its thread's CPU time to totals[part] (a session imports
    bitstate.open_model inside a function: the module's attribute is what it finds)."""
    import importlib

    lock = threading.Lock()
    for part, (module_name, cls, name) in PARTS.items():
        owner = importlib.import_module(module_name)
        owner = getattr(owner, cls) if cls else owner
        fn = getattr(owner, name)

        def timed(*a, _fn=fn, _part=part, **k):
            t0 = time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                with lock:
                    totals[_part] = totals.get(_part, 0.0) + time.thread_time() - t0

        setattr(owner, name, timed)


def child(args) -> None:
    import numpy as np
    import torch

    from seqlab.run import load
    from seqlab.scoring import run_token_bits

    torch.set_num_threads(args.threads)
    totals: dict = {}
    wrap_parts(totals)
    run = load(args.runs[0])
    data = Path(args.file).read_bytes()[-args.bytes :]
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
    run_token_bits(run, tokens, 1)
    totals.clear()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall, cpu = time.perf_counter(), time.process_time()
    mixed = run_token_bits(run, tokens, 1)[0]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    from seqlab.intervals import byte_bits

    np.save(args.child, byte_bits(run.tokenizer, tokens[1:], mixed), allow_pickle=False)
    print(json.dumps({"wall": wall, "cpu": cpu, "bytes": len(data), "bpb": float(mixed.sum() / len(data)),
                      "minor faults": faults, "parts": totals}))


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
            print(f"  {part:<26} {parts.get(part, 0.0):6.2f} CPU-s")
        print(f"  {'the rest (main loop, ...)':<26} {rest:6.2f} CPU-s")


if __name__ == "__main__":
    main()
