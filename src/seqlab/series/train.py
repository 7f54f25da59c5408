"""The fold loop: table -> labels -> walk-forward folds -> model and baselines per fold -> a series run.

Everything the input can be wrong about is checked before anything is written; the run is built in a
temporary directory beside --out and renamed into place at the end, so an error or Ctrl-C leaves nothing
half-written. Per fold: the transform is fitted on the fold's training rows, the model is fitted with
early stopping on the validation block, the baselines on the same rows, and all of them predict the test
block. The final fit (every row before the hold-out) predicts the hold-out once, and is the model that
`seqlab predict` and `seqlab serve` use.

    runs/NAME/
      config.json              the RunConfig (series settings under "series")
      checkpoint.safetensors   the final model's weights
      series.json              channels, transforms and their fitted statistics, events, folds, notes
      predictions.parquet      every scored row: fold, label, model and baselines' probabilities
      baselines/               lightgbm-F-E.txt (LightGBM's text format), logistic.json
      metrics.jsonl            one record per fit: steps, validation loss, seconds, rows per second
"""

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..errors import SeqlabError
from ..run import CONFIG_FILE, METRICS_FILE, resolve_device
from .baselines import BASELINES, fit_baselines
from .features import Transform, channel_kinds, lag_features, lags_used, rolling_features
from .fit import Fit
from .labels import Event, label_columns, label_matrix, parse_events
from .metrics import point_scores
from .settings import check_settings
from .splits import Fold, walk_forward
from .table import Table, fill_missing, fmt, read_table

SERIES_FILE = "series.json"
PREDICTIONS_FILE = "predictions.parquet"
SOURCES = ("model",) + BASELINES


@dataclass
class Prepared:
    table: Table
    events: list[Event]
    y: np.ndarray  # (T, K): 1, 0 or NaN
    inputs: list[str]
    kinds: list[str]
    plan: list[Fold]
    horizon: int
    embargo: int
    notes: list[str]


def prepare(cfg) -> Prepared:
    """Read, label and split; every bad input fails here, before anything is written."""
    s = cfg.series
    check_settings(cfg)
    table = read_table(cfg.data.paths, s.time, s.drop)
    events = parse_events(s.events, table.names)
    table = fill_missing(table, keep=label_columns(events))
    inputs = [n for n in table.names if n not in label_columns(events)]
    if not inputs:
        raise SeqlabError("the table has no input channel besides its label columns")
    y, notes = label_matrix(events, table)
    horizon = max(e.within for e in events)
    if len(table) < s.lookback + horizon:
        raise SeqlabError(f"the table has {len(table):,} rows, fewer than the model's context plus the event's "
                          f"horizon ({s.lookback} + {horizon}); give more rows or --set series.lookback=...")
    kinds = channel_kinds(table, inputs, s.transforms)
    embargo = s.embargo or horizon + 2 * s.lookback
    plan = walk_forward(len(table), s.folds, s.holdout_fraction, s.val_fraction, horizon, embargo, 2 * s.lookback)
    check_labels(plan, y, events, table)
    return Prepared(table, events, y, inputs, kinds, plan, horizon, embargo, table.notes + notes)


def check_labels(plan: list[Fold], y: np.ndarray, events: list[Event], table: Table) -> None:
    for fold in plan:
        for k, event in enumerate(events):
            for part, rows in (("training", fold.train), ("validation", fold.val)):
                labels = y[rows, k][~np.isnan(y[rows, k])]
                where = f"{fold.name}'s {part} rows ({fmt(table.time[rows[0]])} to {fmt(table.time[rows[-1]])})"
                if not len(labels):
                    raise SeqlabError(f"event {event.name!r} has no known label in {where}")
                if part == "training" and labels.min() == labels.max():
                    what = "no event" if labels[0] == 0 else "nothing but events"
                    raise SeqlabError(f"event {event.name!r}: {where} hold {what} ({len(labels):,} rows), so there "
                                      f"is nothing to learn; choose an event that happens sometimes (e.g. a "
                                      f"smaller up=), or fewer folds (--set series.folds=...)")


def rate(y: np.ndarray) -> str:
    known = y[~np.isnan(y)]
    return f"{100 * known.mean():.1f}%" if len(known) else "-"


def describe(prep: Prepared, cfg, log) -> None:
    t, s = prep.table, cfg.series
    log(f"table: {', '.join(cfg.data.paths)}: {len(t):,} rows x {len(prep.inputs)} input channels, "
        f"{fmt(t.time[0])} to {fmt(t.time[-1])} (time column {t.time_name!r})")
    counts = {k: prep.kinds.count(k) for k in dict.fromkeys(prep.kinds)}
    log("transforms: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + " (standardised on each fold's "
        f"training rows, clipped at +-{s.clip:g})")
    for note in prep.notes:
        log(f"  {note}")
    log(f"splits: walk-forward, {s.folds} folds then a hold-out; {prep.horizon} rows purged before every test "
        f"block, {prep.embargo} embargoed after it; validation = the last {s.val_fraction:.0%} of each fold's "
        f"training rows (purged)")
    for k, event in enumerate(prep.events):
        log(f"event {event.name!r}: positive rate by split (train / validation / test)")
        for fold in prep.plan:
            a, b = fold.test
            log(f"  {fold.name:<9} {len(fold.train):>7,} / {len(fold.val):>6,} / {b - a:>6,} rows   "
                f"{rate(prep.y[fold.train, k]):>6} / {rate(prep.y[fold.val, k]):>6} / {rate(prep.y[a:b, k]):>6}")


def train_series(cfg, run_dir, log=print, show: bool | None = None) -> Path:
    """Build the series run `run_dir` from cfg (see series_config); returns its path."""
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise SeqlabError(f"{run_dir} already exists and is not empty; pick another --out")
    prep = prepare(cfg)
    log(f"config:\n{cfg.describe()}")
    describe(prep, cfg, log)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / f".{run_dir.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        FoldLoop(cfg, prep, tmp, device, log, show).run()
        if run_dir.exists():
            run_dir.rmdir()
        os.replace(tmp, run_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, KeyboardInterrupt):
            raise SeqlabError(f"interrupted; nothing was written to {run_dir}") from None
        raise
    log(f"run saved in {run_dir}; `seqlab eval {run_dir}` gives every score with its 95% interval")
    return run_dir


class FoldLoop:
    def __init__(self, cfg, prep: Prepared, out: Path, device, log, show):
        self.cfg, self.prep, self.out, self.device, self.log, self.show = cfg, prep, out, device, log, show
        self.columns = {"row": [], "fold": []} | {f"{src}:{k}": [] for k in range(len(prep.events))
                                                  for src in ("label",) + SOURCES}
        self.logistic, self.fold_transforms = [], []
        (out / "baselines").mkdir()

    def run(self) -> None:
        cfg, prep = self.cfg, self.prep
        budget = cfg.train.budget_seconds / len(prep.plan)
        for fold in prep.plan:
            self.fold(fold, budget)
        ckpt.atomic_write_text(self.out / CONFIG_FILE, cfg.describe())
        self.write_predictions()
        (self.out / "baselines" / "logistic.json").write_text(json.dumps(self.logistic))
        self.summary()

    def fold(self, fold: Fold, budget: float) -> None:
        cfg, prep, s = self.cfg, self.prep, self.cfg.series
        transform = Transform.fit(prep.table, prep.inputs, prep.kinds, fold.train, s.clip)
        x = transform.apply(prep.table)
        lags = lag_features(x, lags_used(x.shape[1], s.lags))
        trees = np.hstack([lags, rolling_features(x, s.windows)])
        self.log(f"{fold.name}: fitting {cfg.arch} on {len(fold.train):,} rows, stopping early on "
                 f"{len(fold.val):,}")
        fit = Fit(cfg, x, prep.y, self.device, cfg.train.seed + fold.index, budget, self.log, self.show)
        record = fit.fit(fold.train, fold.val)
        a, b = fold.test
        t0 = time.monotonic()
        p_model = fit.predict(a, b)
        record["predict_rows_per_s"] = round((b - a) / max(time.monotonic() - t0, 1e-9))
        self.log(f"  {fold.name}: {record['steps']} steps ({record['stopped']}), best validation loss "
                 f"{record['val_loss']:.4f} at step {record['best_step']}, {record['seconds']:.0f} s, "
                 f"{record['rows_per_s']:,} rows/s training, {record['predict_rows_per_s']:,} rows/s predicting")
        self.columns["row"].append(np.arange(a, b))
        self.columns["fold"].append(np.full(b - a, fold.index))
        threads = cfg.train.threads or len(os.sched_getaffinity(0))
        for k in range(len(prep.events)):
            preds, fitted = fit_baselines(lags, trees, prep.y[:, k], fold.train, fold.val, cfg.train.seed, threads)
            self.columns[f"label:{k}"].append(prep.y[a:b, k])
            self.columns[f"model:{k}"].append(p_model[:, k])
            for src in BASELINES:
                self.columns[f"{src}:{k}"].append(preds[src][a:b])
            (self.out / "baselines" / f"lightgbm-{fold.index}-{k}.txt").write_text(fitted["lightgbm"])
            self.logistic.append({"fold": fold.index, "event": k, "base_rate": fitted["base_rate"],
                                  **fitted["logistic"]})
        self.fold_transforms.append({"fold": fold.index, **transform.to_dict()})
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps({"event": "fit", "fold": fold.index, "train_rows": len(fold.train),
                                "val_rows": len(fold.val), "test_rows": b - a, **record}) + "\n")
        if fold.index == 0:
            ckpt.save_checkpoint(self.out, fit.model)
            self.write_series(transform)

    def write_series(self, final: Transform) -> None:
        prep, s = self.prep, self.cfg.series
        t = prep.table
        folds = []
        for fold in prep.plan:
            a, b = fold.test
            rates = {e.name: {"train": rate(prep.y[fold.train, k]), "val": rate(prep.y[fold.val, k]),
                              "test": rate(prep.y[a:b, k])} for k, e in enumerate(prep.events)}
            folds.append({**fold.to_dict(), "test_time": [fmt(t.time[a]), fmt(t.time[b - 1])], "positive": rates})
        doc = {"time": t.time_name, "rows": len(t), "first": fmt(t.time[0]), "last": fmt(t.time[-1]),
               "channels": prep.inputs, "events": [e.to_dict() for e in prep.events], "horizon": prep.horizon,
               "lookback": s.lookback, "embargo": prep.embargo, "lags": lags_used(len(prep.inputs), s.lags),
               "transform": final.to_dict(), "folds": folds, "notes": prep.notes,
               "fold_transforms": self.fold_transforms}
        (self.out / SERIES_FILE).write_text(json.dumps(doc, indent=1))

    def write_predictions(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {name: np.concatenate(parts) for name, parts in self.columns.items()}
        data["time"] = np.array(self.prep.table.time_text())[data["row"]]
        pq.write_table(pa.table(data), self.out / PREDICTIONS_FILE)

    def summary(self) -> None:
        data = {name: np.concatenate(parts) for name, parts in self.columns.items()}
        for k, event in enumerate(self.prep.events):
            for label, rows in (("walk-forward", data["fold"] > 0), ("hold-out", data["fold"] == 0)):
                y = data[f"label:{k}"][rows]
                known = ~np.isnan(y)
                scores = point_scores(y[known], {src: data[f"{src}:{k}"][rows][known] for src in SOURCES})
                self.log(f"{event.name} — {label}, {known.sum():,} rows: " + "; ".join(
                    f"{src} AUC {v['roc_auc']:.3f} log loss {v['log_loss']:.4f}" for src, v in scores.items()))
