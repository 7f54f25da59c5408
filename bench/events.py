"""Event probabilities on market data, and on a planted long-range cause: seqlab's trunks against the baselines.

    python bench/events.py ../shared/data/markets/                   # 8,313 days x 21 channels, every trunk
    python bench/events.py ../shared/data/markets/ --rows 3000 --archs lstm,conv   # a quicker, smaller run
    python bench/events.py --planted                                 # the synthetic series: what memory buys

Markets: the 20 stocks' and the index's daily closes (sp500_dataset.csv.gz, sp500_index.csv.gz), the event
"SP500:up=1%,down=0.5%,within=5", walk-forward with 4 folds and a hold-out, every run with its baselines
(base rate, L2 logistic on lags, LightGBM on lags + rolling means/vols) fitted on the same folds. Each
figure carries its 95% moving-block bootstrap interval; "vs lightgbm" is the paired difference of ROC AUC on
the same rows. An AUC above 0.5 whose interval covers 0.5 is no edge.

Planted: `seqlab.series.synthetic` with a spike on channel `trigger` causing the price jump `--lag` steps
later, among `--noise` channels of noise. Pass: seqlab's ROC AUC >= 0.9 while the lag baselines (lags 10,
rolling windows 5 and 20, all shorter than the lag) stay within 0.05 of 0.5.

Speed: per fit (fold), wall seconds to early stopping, steps, rows/s trained and predicted (metrics.jsonl).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table  # noqa: E402

import seqlab.series.evaluate as series_eval  # noqa: E402
from seqlab.series.settings import make_config  # noqa: E402
from seqlab.series.synthetic import EVENT as PLANTED_EVENT  # noqa: E402
from seqlab.series.synthetic import planted, write_csv  # noqa: E402
from seqlab.series.table import read_table  # noqa: E402
from seqlab.series.train import train_series  # noqa: E402
from seqlab.stats import bootstrap_statistic  # noqa: E402

MARKET_FILES = ("sp500_dataset.csv.gz", "sp500_index.csv.gz")
MARKET_EVENT = "SP500:up=1%,down=0.5%,within=5"
SHOWN = ("log_loss", "brier", "roc_auc", "pr_auc", "ece", "log_loss_skill")


def cell(entry: dict, metric: str) -> str:
    if not entry or entry.get(metric) is None or np.isnan(entry[metric]):
        return "-"
    return f"{entry[metric]:.3f} [{entry[metric + '_low']:.3f}, {entry[metric + '_high']:.3f}]"


def paired_auc(run_dir: Path, block: int, n_boot: int) -> tuple[float, float, float]:
    """ROC AUC of the model minus LightGBM's on the same walk-forward rows, with its 95% interval."""
    from seqlab.series.metrics import ranked

    _, data = series_eval.read_predictions(run_dir)
    rows = (data["fold"] > 0) & ~np.isnan(data["label:0"])
    y, a, b = data["label:0"][rows], data["model:0"][rows], data["lightgbm:0"][rows]
    diff = lambda idx: ranked(y[idx], a[idx])[0] - ranked(y[idx], b[idx])[0]
    low, high = bootstrap_statistic(diff, len(y), block, n_boot=n_boot)
    return diff(np.arange(len(y))), low, high


def fit_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == "fit"]


def run_arch(table: Path, event: str, arch: str, out: Path, args) -> dict:
    series = {"folds": args.folds, "n_boot": args.n_boot}
    if args.lookback:
        series["lookback"] = args.lookback
    train = {"threads": args.threads, "device": "cpu", **({"max_steps": args.max_steps} if args.max_steps else {})}
    cfg = make_config([str(table)], [event], arch, train=train, **series)
    run_dir = out / arch
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.monotonic()
    train_series(cfg, run_dir, log=lambda *a: None, show=False)
    seconds = time.monotonic() - t0
    result = series_eval.evaluate_series(run_dir, n_boot=args.n_boot, plot=True)
    return {"arch": arch, "result": result, "fits": fit_records(run_dir), "seconds": seconds,
            "paired": paired_auc(run_dir, result["block"], args.n_boot)}


def report(title: str, runs: list[dict]) -> None:
    header = ["model", *SHOWN, "AUC vs lightgbm (paired)", "hold-out AUC"]
    rows = []
    for r in runs:
        res, (d, lo, hi) = r["result"], r["paired"]
        rows.append([f"seqlab {r['arch']}", *(cell(res["model"], m) for m in SHOWN),
                     f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]", cell(res["holdout"]["model"], "roc_auc")])
    res = runs[0]["result"]  # the baselines: the same folds and rows in every run (deterministic fits)
    for name in ("base_rate", "logistic", "lightgbm"):
        rows.append([name, *(cell(res["baselines"][name], m) for m in SHOWN), "",
                     cell(res["holdout"]["baselines"][name], "roc_auc")])
    print_table(f"{title}: walk-forward, {res['folds']} folds, {res['rows']:,} rows scored, positive rate "
                f"{res['positive_rate']:.1%}; hold-out {res['holdout']['rows']:,} rows; 95% intervals, blocks of "
                f"{res['block']} rows", header, rows)
    speed = []
    for r in runs:
        fits = r["fits"]
        speed.append([r["arch"], len(fits), f"{np.mean([f['seconds'] for f in fits]):.1f}",
                      f"{max(f['seconds'] for f in fits):.1f}", f"{np.mean([f['steps'] for f in fits]):.0f}",
                      f"{np.median([f['rows_per_s'] for f in fits]):,.0f}",
                      f"{np.median([f['predict_rows_per_s'] for f in fits]):,.0f}", f"{r['seconds']:.0f}"])
    print()
    print_table("speed per fit (model only; the run's total includes the baselines and the bootstrap)",
                ["trunk", "fits", "mean s", "max s", "mean steps", "train rows/s", "predict rows/s", "run total s"],
                speed)


def markets(args) -> None:
    root = Path(args.data)
    files = [root / f for f in MARKET_FILES]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"bench/events.py: {', '.join(missing)} not found; give the markets directory (see its SOURCE.md)")
    out = Path(args.out or tempfile.mkdtemp(prefix="events-"))
    out.mkdir(parents=True, exist_ok=True)
    table = read_table([str(f) for f in files])
    if args.rows:
        table = table.rows(max(0, len(table) - args.rows), len(table))
    path = out / "markets.csv"
    write_csv(path, table.time, table.names, table.values)
    print(f"markets: {len(table):,} rows x {len(table.names)} channels ({table.time_text()[0]} to "
          f"{table.time_text()[-1]}), event {MARKET_EVENT!r}; threads {args.threads}; runs in {out}", flush=True)
    runs = [run_arch(path, MARKET_EVENT, arch, out, args) for arch in args.archs.split(",")]
    report("markets", runs)


def planted_cause(args) -> None:
    out = Path(args.out or tempfile.mkdtemp(prefix="planted-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "planted.csv"
    write_csv(path, *planted(rows=args.rows or 8000, noise=args.noise, lag=args.lag, seed=args.seed))
    print(f"planted: {args.rows or 8000:,} rows, cause {args.lag} steps before the event, {args.noise} noise "
          f"channels; baselines' lags 10 and windows 5, 20; threads {args.threads}; runs in {out}", flush=True)
    runs = [run_arch(path, PLANTED_EVENT, arch, out, args) for arch in args.archs.split(",")]
    report("planted long-range cause", runs)
    res = runs[0]["result"]
    for r in runs:
        auc = r["result"]["model"]["roc_auc"]
        print(f"seqlab {r['arch']}: ROC AUC {auc:.3f} — {'PASS' if auc >= 0.9 else 'FAIL'} (>= 0.9)")
    for name in ("logistic", "lightgbm"):
        auc = res["baselines"][name]["roc_auc"]
        print(f"{name}: ROC AUC {auc:.3f} — {'PASS' if abs(auc - 0.5) <= 0.05 else 'FAIL'} (within 0.05 of 0.5)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", help="the markets directory (sp500_dataset.csv.gz, sp500_index.csv.gz)")
    p.add_argument("--planted", action="store_true", help="the synthetic planted-cause series instead")
    p.add_argument("--archs", default="lstm,qrnn,conv,transformer")
    p.add_argument("--rows", type=int, help="markets: the last N rows only; planted: rows generated (8000)")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--lookback", type=int, help="series.lookback (default 64)")
    p.add_argument("--max-steps", type=int, help="cap every fit (default: seqlab's, 2000, early stopping first)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))))
    p.add_argument("--lag", type=int, default=30)
    p.add_argument("--noise", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="where the runs go (default: a temporary directory)")
    args = p.parse_args()
    if args.planted:
        planted_cause(args)
    elif args.data:
        markets(args)
    else:
        p.error("give the markets directory, or --planted")


if __name__ == "__main__":
    main()
