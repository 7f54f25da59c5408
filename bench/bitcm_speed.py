"""The bitwise model's speed, versions side by side: reading the training bytes, and scoring given eval's mix.

    python bench/bitcm_speed.py TUNING_RUN --revs main,HEAD[,...] [--rounds 2]

Each git revision's files of the bitwise model (bitcm_versus.version_package: countmodel/bit*.py as a package of
their own; "-" is the working tree) read TUNING_RUN's training bytes (its history.npy, as counts.bitcm does) and
then score its held-out bytes, eval's mix today one more input (bitcm_gain.todays_mix, cached under --cache), in
turn, --rounds times, in one process: per reading, the thread's CPU-seconds (time.thread_time) of each part, and
whether its bits are the first version's to the last float. The machine may be shared: read the rounds side by
side, and give the load average (uptime) with them.
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import seqlab

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bitcm_gain import todays_mix  # noqa: E402
from bitcm_versus import held_out_items, load_version, version_bits, version_package  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tuning_run")
    p.add_argument("--revs", required=True, help="comma-separated git revisions; - for the working tree")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--history", type=int, default=16 << 20, help="training bytes read (the last)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bitcm-gain"))
    args = p.parse_args()
    torch.set_num_threads(1)
    cache, run = Path(args.cache), seqlab.load(args.tuning_run)
    items = held_out_items(run, 1 << 62)
    mixed, targets = todays_mix(run, items, cache)
    mixed = mixed.astype(np.float64)
    n = np.array([len(b) for b in run.tokenizer.token_bytes])[targets].sum()
    revs = [None if r == "-" else r for r in args.revs.split(",")]
    versions = [load_version(version_package(r, cache)) for r in revs]
    first = None
    for k in range(args.rounds):
        for rev, module in zip(revs, versions):
            t0 = time.thread_time()
            bits, learn_s, score_s = version_bits(module, run, items, mixed, targets, args.history)
            first = bits if first is None else first
            print(f"round {k} {rev or 'working tree'}: history {learn_s:.2f} CPU-s, scoring {n:,} bytes "
                  f"{score_s:.2f} CPU-s ({n / score_s / 1e3:.1f} KB/CPU-s), {bits.sum() / n:.6f} bpb, the first "
                  f"version's bits: {np.array_equal(bits, first)} ({time.thread_time() - t0:.0f} CPU-s in all)",
                  flush=True)


if __name__ == "__main__":
    main()
