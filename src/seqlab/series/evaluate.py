"""`seqlab eval RUN` on a series run: the model against its baselines, every score with a 95% interval.

The scores come from the predictions the run stored (predictions.parquet): the walk-forward test blocks
(the headline, `folds` of them) and, apart, the hold-out scored once at the end. Intervals are moving-block
bootstrap percentiles (seqlab.stats.bootstrap_statistic): blocks of `block` consecutive rows, since a
day's label overlaps its neighbours'; every source is scored on the same resampled rows, so the skill
scores against the base rate are paired. A reliability diagram is written to RUN/reliability.png.
"""

import json
from pathlib import Path

import numpy as np

from .. import checkpoint as ckpt
from ..errors import SeqlabError
from ..run import read_config
from .baselines import BASELINES
from .metrics import METRICS, SKILLS, reliability, score_table
from .settings import is_series
from .train import PREDICTIONS_FILE, SERIES_FILE, SOURCES

RELIABILITY_FILE = "reliability.png"
SHOWN = {"log_loss": "log loss", "brier": "Brier", "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "ece": "ECE",
         "log_loss_skill": "log-loss skill", "brier_skill": "Brier skill"}


def is_series_run(run_dir) -> bool:
    return is_series(read_config(Path(run_dir)))


def read_meta(run_dir: Path) -> dict:
    """series.json of a series run."""
    try:
        return json.loads((Path(run_dir) / SERIES_FILE).read_text())
    except (OSError, ValueError) as e:
        raise SeqlabError(f"{run_dir} is an incomplete series run ({e}); train it again") from None


def read_predictions(run_dir: Path) -> tuple[dict, dict]:
    """(series.json, {column: array}) of a series run."""
    import pyarrow.parquet as pq

    meta = read_meta(run_dir)
    try:
        columns = pq.read_table(Path(run_dir) / PREDICTIONS_FILE).to_pydict()
    except (OSError, ValueError) as e:
        raise SeqlabError(f"{run_dir} is an incomplete series run ({e}); train it again") from None
    return meta, {k: np.asarray(v) for k, v in columns.items()}


def block_length(cfg, horizon: int, n: int) -> int:
    return cfg.series.block or max(2 * horizon, round(n ** (1 / 3)))


def split_scores(data: dict, k: int, rows: np.ndarray, block: int, n_boot: int) -> dict:
    y = data[f"label:{k}"][rows]
    known = ~np.isnan(y)
    y = y[known]
    preds = {src: data[f"{src}:{k}"][rows][known] for src in SOURCES}
    table = score_table(y, preds, block, n_boot) if len(y) else {src: {} for src in SOURCES}
    return {"model": table["model"], "baselines": {b: table[b] for b in BASELINES}, "rows": int(len(y)),
            "positive_rate": float(y.mean()) if len(y) else float("nan")}


def evaluate_series(run_dir, n_boot: int | None = None, plot: bool = True) -> dict:
    """The scores of a series run (see the module docstring); the first event's at the top level."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    meta, data = read_predictions(run_dir)
    n_boot = n_boot or cfg.series.n_boot
    folds = int(data["fold"].max())
    walk, hold = data["fold"] > 0, data["fold"] == 0
    block = block_length(cfg, meta["horizon"], int(walk.sum()))
    events = []
    for k, event in enumerate(meta["events"]):
        entry = {"event": event["name"], **split_scores(data, k, walk, block, n_boot), "folds": folds}
        entry["holdout"] = split_scores(data, k, hold, block, n_boot)
        events.append(entry)
    result = {**events[0], "events": events, "block": block, "n_boot": n_boot, "level": 0.95}
    if plot:
        result["reliability"] = str(plot_reliability(run_dir, meta, data, walk))
    return result


def plot_reliability(run_dir: Path, meta: dict, data: dict, rows: np.ndarray) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = meta["events"]
    fig, axes = plt.subplots(1, len(events), figsize=(5.2 * len(events), 4.8), dpi=110, squeeze=False)
    for ax, (k, event) in zip(axes[0], enumerate(events)):
        y = data[f"label:{k}"][rows]
        known = ~np.isnan(y)
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, label="calibrated")
        for src, color in zip(SOURCES, ("#c0392b", "#7f8c8d", "#2980b9", "#27ae60")):
            mean_p, rate, counts = reliability(y[known], data[f"{src}:{k}"][rows][known])
            ax.plot(mean_p, rate, color=color, lw=1.2, label=src)
            ax.scatter(mean_p, rate, s=60 * counts / counts.max() + 4, color=color)  # area ~ rows in the bin
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed rate")
        ax.set_title(f"{event['name']}\nwalk-forward, {known.sum():,} rows", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out = run_dir / RELIABILITY_FILE
    ckpt.atomic_write_bytes(out, buffer.getvalue())
    return out


def format_scores(block: dict, title: str) -> list[str]:
    lines = [title]
    header = f"  {'':<10}" + "".join(f"{SHOWN[m]:>24}" for m in METRICS)
    lines.append(header)
    for src in SOURCES:
        entry = block["model"] if src == "model" else block["baselines"][src]
        cells = "".join(f"{entry[m]:>8.4f} [{entry[m + '_low']:.3f}, {entry[m + '_high']:.3f}]"
                        if entry else f"{'-':>24}" for m in METRICS)
        lines.append(f"  {src:<10}{cells}")
    lines.append(f"  {'skill':<10}" + "".join(f"{SHOWN[m]:>24}" for m in SKILLS) + "   (vs base rate; > 0 = better)")
    for src in ("model", "logistic", "lightgbm"):
        entry = block["model"] if src == "model" else block["baselines"][src]
        if entry:
            lines.append(f"  {src:<10}" + "".join(f"{entry[m]:>+8.4f} [{entry[m + '_low']:+.3f}, "
                                                  f"{entry[m + '_high']:+.3f}]" for m in SKILLS))
    return lines


def format_series(result: dict) -> str:
    lines = []
    for e in result["events"]:
        lines += format_scores(e, f"{e['event']}: walk-forward, {e['folds']} folds, {e['rows']:,} rows scored, "
                                  f"positive rate {e['positive_rate']:.1%}")
        h = e["holdout"]
        lines += format_scores(h, f"hold-out, scored once: {h['rows']:,} rows, positive rate {h['positive_rate']:.1%}")
        lines.append("")
    lines.append(f"95% intervals: moving-block bootstrap, blocks of {result['block']} rows, {result['n_boot']} draws; "
                 f"an AUC whose interval covers 0.5 is no edge")
    if "reliability" in result:
        lines.append(f"reliability diagram: {result['reliability']}")
    return "\n".join(lines)


def series_cli(args) -> None:
    if args.files:
        raise SeqlabError("eval on a series run scores its own walk-forward and hold-out predictions; for new rows "
                          "use: seqlab predict RUN FILE")
    result = evaluate_series(args.run)
    if args.json:
        print(json.dumps(without_nan(result), indent=2))
    else:
        print(format_series(result))


def without_nan(obj):
    """NaN (an AUC of rows of one class) as null: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: without_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_nan(v) for v in obj]
    return None if isinstance(obj, float) and obj != obj else obj
