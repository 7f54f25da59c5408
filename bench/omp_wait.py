"""Training speed under OpenMP's wait policies, on an idle machine and beside other busy processes.

    python bench/omp_wait.py --load 0,1,2 --repeats 5
    python bench/omp_wait.py --load 0 --repeats 7          # the idle machine only

torch's CPU build runs its parallel regions on GNU OpenMP (libgomp). A thread that reaches a barrier first spins
for GOMP_SPINCOUNT turns (300,000 by default) before it sleeps. On cores that other work also wants, the spinning
thread burns the time slice its partner needs to reach the barrier. libgomp reads these variables once, when torch
loads it, so each policy runs in a fresh process with its own environment.

Each policy trains the README default (4x128 transformer, train.precision=auto and the fused AdamW, as `seqlab
train` does) on the bundled corpus for about --tokens tokens after a warm-up, --threads threads; the policies run
in turn, the order rotated every repeat. With load N, N busy processes (a Python loop each) run beside the
whole level. The table: each policy's median tokens/s (wall) and tokens per CPU-second, and the ratio of its
wall speed to libgomp's default (spin 300,000), the median over repeats with a 95% bootstrap interval.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import print_table
from seqlab import OPENMP_WAIT_VARIABLES
from train_speed import build_loop, config, interval_of_median, timed_steps, with_setting

LIBGOMP_SPIN = 300_000  # libgomp's own GOMP_SPINCOUNT where neither variable is set: the baseline


def environment(policy: str) -> dict:
    """The variables a policy sets ("passive", or a spin count); the others are removed."""
    return {"OMP_WAIT_POLICY": "PASSIVE"} if policy == "passive" else {"GOMP_SPINCOUNT": policy}


def label(policy: str) -> str:
    return "passive" if policy == "passive" else f"spin {int(policy):,}" + (
        " (libgomp's default)" if int(policy) == LIBGOMP_SPIN else "")


def worker(threads: int, tokens: int) -> None:
    """Time training steps in this process, under the environment it was started with; print JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        with with_setting("after"):
            train_loop = build_loop(config("transformer", threads, "after"), Path(tmp))
        for _ in range(3):
            train_loop.train_step()
        steps = max(2, tokens // (train_loop.tc.batch_size * train_loop.tc.seq_len))
        wall, cpu = timed_steps(train_loop, steps)
    print(json.dumps({"tokens_per_s": wall, "tokens_per_cpu_s": cpu}))


def timed_run(policy: str, threads: int, tokens: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_WAIT_VARIABLES} | environment(policy)
    out = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), "--tokens", str(tokens)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def level(load: int, args) -> list[list]:
    policies = [str(LIBGOMP_SPIN)] + [p for p in args.policies.split(",") if p != str(LIBGOMP_SPIN)]
    runs = {p: [] for p in policies}
    burners = busy_processes(load)
    try:
        if load:
            time.sleep(1.0)
        for rep in range(args.repeats):
            shift = rep % len(policies)
            for policy in policies[shift:] + policies[:shift]:
                runs[policy].append(timed_run(policy, args.threads, args.tokens))
    finally:
        for b in burners:
            b.kill()
            b.wait()
    base = np.array([r["tokens_per_s"] for r in runs[policies[0]]])
    rows = []
    for policy in policies:
        wall = np.array([r["tokens_per_s"] for r in runs[policy]])
        cpu = np.array([r["tokens_per_cpu_s"] for r in runs[policy]])
        ratio = "" if policy == policies[0] else interval_of_median(wall / base)
        rows.append([load, label(policy), f"{np.median(wall):,.0f}", f"{wall.min():,.0f}-{wall.max():,.0f}",
                     f"{np.median(cpu):,.0f}", ratio])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", default="0,1,2", help="busy processes beside the training, one level each")
    p.add_argument("--policies", default="10000,3000,1000,passive",
                   help="spin counts (GOMP_SPINCOUNT) or passive, each beside libgomp's default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tokens", type=int, default=40_000, help="training tokens per timed run")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.threads, args.tokens)
    rows = [row for load in map(int, args.load.split(",")) for row in level(load, args)]
    print_table(f"training tokens/s by OpenMP wait policy, {args.threads} threads, {args.repeats} repeats of "
                f"~{args.tokens:,} tokens, {os.cpu_count()} CPUs",
                ["busy beside", "policy", "tokens/s", "min-max", "tokens/CPU-s", "vs libgomp's default (95%)"],
                rows)


if __name__ == "__main__":
    main()
