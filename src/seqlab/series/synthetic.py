"""A series with a planted long-range cause: what sequence memory buys, and a check that a rig can learn.

Channel `price` is a quiet random walk (0.1% a step). Channel `trigger` is noise with a spike on 5% of the
rows; `lag` steps after every spike the price jumps +1.5%. So the event "price:up=1%,down=1%,within=5" is caused by a
spike lag-5 .. lag-1 steps before the row, and by almost nothing else. `noise` more channels are random
walks that mean nothing. A model that remembers `lag` steps can reach a ROC AUC near 1; baselines whose
lags and rolling windows stop short of lag - 5 (the earliest row an event is caused for) see noise (AUC near
0.5).

    python -m seqlab.series.synthetic planted.csv --rows 4000 --lag 30
    seqlab train planted.csv --series --event "price:up=1%,down=1%,within=5"
"""

import argparse
import csv
from pathlib import Path

import numpy as np

EVENT = "price:up=1%,down=1%,within=5"
JUMP, STEP_SD, SPIKE = 0.015, 0.001, 6.0


def planted(rows: int = 4000, noise: int = 8, lag: int = 30, spike_rate: float = 0.05,
            seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(dates (rows,), channel names, values (rows, 2 + noise))."""
    rng = np.random.default_rng(seed)
    spikes = rng.random(rows) < spike_rate
    trigger = rng.normal(0, 1, rows) + SPIKE * spikes
    steps = rng.normal(0, STEP_SD, rows)
    steps[lag:] += JUMP * spikes[:-lag]
    price = 100 * np.exp(np.cumsum(steps))
    walks = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (rows, noise)), axis=0))
    dates = np.datetime64("2000-01-03") + np.arange(rows)
    names = ["price", "trigger"] + [f"noise{i}" for i in range(noise)]
    return dates, names, np.column_stack([price, trigger, walks])


def write_csv(path, dates, names, values) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date"] + names)
        for d, row in zip(dates, values):
            w.writerow([str(d)] + [f"{v:.6g}" for v in row])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m seqlab.series.synthetic", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--noise", type=int, default=8, help="channels of pure noise")
    p.add_argument("--lag", type=int, default=30, help="steps from a trigger spike to the price jump")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    write_csv(args.out, *planted(args.rows, args.noise, args.lag, seed=args.seed))
    print(f"{args.out}: {args.rows} rows; predict {EVENT!r}, caused {args.lag} steps earlier")


if __name__ == "__main__":
    main()
