"""Does the default beat the classical compressors in a CPU budget? (issue: foundation)

    python bench/baseline.py ../shared/data/tinyshakespeare.txt --budget 10m

Trains seqlab's default on CORPUS for the budget, then prints its held-out bits
per byte beside gzip/bzip2/xz/zstd's conditional cost of the same held-out bytes
(size(train + held-out) - size(train)), all measured in this run, and the
generation speed (one stream of 500 tokens) of both foundation architectures.
"""

import argparse
import platform
import time

from common import compressor_rows, final_record, generation_speed, print_table, seqlab, untrained_run

from seqlab.__main__ import build_parser
from seqlab.train import config_from_args


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="+")
    p.add_argument("--budget", default="10m")
    p.add_argument("--out", default="runs/bench-baseline")
    args = p.parse_args()

    t0 = time.time()
    cfg = config_from_args(build_parser().parse_args(["train", *args.corpus, "--budget", args.budget]))
    run_dir = seqlab.train(cfg, f"{args.out}-{int(t0)}")
    final = final_record(run_dir)
    rows = [[f"seqlab default ({cfg.arch}, {args.budget})", f"{final['val_bpb']:.4f}"]]
    if final.get("val_bpb_network") not in (None, final["val_bpb"]):
        rows.append([f"  the network alone ({cfg.arch})", f"{final['val_bpb_network']:.4f}"])
    for name, bpb in compressor_rows(args.corpus, cfg.data.val_fraction).items():
        rows.append([name, f"{bpb:.4f}"])
    print()
    print_table(f"held-out bits per byte, {platform.node()} ({platform.processor() or platform.machine()})",
                ["model / compressor", "bits per byte"], rows)
    speed = [[arch, f"{generation_speed(untrained_run(arch)):.0f}"] for arch in ("transformer", "lstm")]
    print()
    print_table("generation: one stream of 500 tokens (default sizes)", ["arch", "tokens/s"], speed)
    print(f"\nrun: {run_dir}; wall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
