"""Several seeds of one configuration: `seqlab train --seeds N` (and `seqlab compare --seeds N`).

Each seed trains its own sub-run, OUT/seed-SEED, with seeds SEED, SEED+1, ... (SEED: --seed, default 1337).
Two uncertainties are reported side by side and kept apart:

    bootstrap 95%   each run's interval over its held-out bytes: how far the figure would move on another
                    sample of text like the held-out one (the run's weights fixed);
    between seeds   the standard deviation (and range) of the runs' figures: how far it moves with another
                    seed of training (initial weights, batch order), the held-out bytes fixed.

    seqlab train task:reverse --arch lstm --max-steps 300 --seeds 3 --out runs/rev
"""

import copy
import json
from pathlib import Path

from . import checkpoint as ckpt
from .errors import SeqlabError
from .run import CONFIG_FILE, read_metrics
from .stats import seed_spread

SUMMARY_FILE = "seeds.json"


def seed_dir(out, seed: int) -> Path:
    return Path(out) / f"seed-{seed}"


def seeded(cfg, n: int) -> list:
    """n copies of a RunConfig with seeds cfg.train.seed, cfg.train.seed + 1, ..."""
    assert n >= 1
    configs = []
    for i in range(n):
        c = copy.deepcopy(cfg)
        c.train.seed = cfg.train.seed + i
        configs.append(c)
    return configs


def check_free(run_dirs: list[Path]) -> None:
    """Refuse before anything trains if a sub-run already holds a run."""
    for d in run_dirs:
        if (Path(d) / CONFIG_FILE).exists():
            raise SeqlabError(f"{d} already holds a run; pick another --out")


def train_seeds(cfg, out, n: int, train_one) -> list[Path]:
    """Train n seeds of `cfg` into OUT/seed-SEED with train_one(config, run_dir); returns the run directories."""
    configs = seeded(cfg, n)
    dirs = [seed_dir(out, c.train.seed) for c in configs]
    check_free(dirs)
    for c, d in zip(configs, dirs):
        train_one(c, d)
    return dirs


def final_record(run_dir) -> dict:
    finals = [r for r in read_metrics(run_dir) if r.get("event") == "final"]
    if not finals:
        raise SeqlabError(f"{run_dir} has not finished training (no final evaluation); resume it first")
    return finals[-1]


def summarize(run_dirs: list[Path]) -> dict:
    """Each seed's held-out bits per byte with its bootstrap interval, and the spread between the seeds."""
    from .run import read_config

    runs = []
    for d in run_dirs:
        final = final_record(d)
        runs.append({"run": str(d), "seed": read_config(d).train.seed, "bpb": final["val_bpb"],
                     "bpb_low": final.get("val_bpb_low"), "bpb_high": final.get("val_bpb_high")})
    return {"runs": runs, "between_seeds": seed_spread([r["bpb"] for r in runs]),
            "interval_method": final_record(run_dirs[0]).get("interval_method")}


def format_summary(summary: dict) -> str:
    lines = ["| seed | held-out bits/byte | bootstrap 95% (held-out sample) |", "| ---: | ---: | :---: |"]
    for r in summary["runs"]:
        interval = "–" if r["bpb_low"] is None else f"{r['bpb_low']:.4f}-{r['bpb_high']:.4f}"
        lines.append(f"| {r['seed']} | {r['bpb']:.4f} | {interval} |")
    s = summary["between_seeds"]
    lines += ["", f"between seeds (training randomness, {s['seeds']} seeds): mean {s['mean']:.4f}, "
                  f"sd {s['sd']:.4f}, range {s['min']:.4f}-{s['max']:.4f}",
              f"bootstrap 95% (which bytes were held out, each run alone): {summary['interval_method']}"]
    return "\n".join(lines)


def write_summary(out, summary: dict) -> Path:
    path = Path(out) / SUMMARY_FILE
    ckpt.atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def cli_train_seeds(cfg, out: Path, n: int, train_one, report: bool = True) -> None:
    """`seqlab train --seeds N`: the sub-runs, then (report: the process that writes) the table of seeds, also
    saved as OUT/seeds.json."""
    dirs = train_seeds(cfg, out, n, train_one)
    if report:
        summary = summarize(dirs)
        print(f"\n{n} seed(s) of one configuration in {out}:\n{format_summary(summary)}\n"
              f"saved {write_summary(out, summary)}")
