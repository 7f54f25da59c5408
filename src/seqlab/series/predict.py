"""A series run put to work: load it, and give per-step event probabilities for new rows.

    run = load_series("runs/latest")
    probs = predict_table(run, read_table(["new.csv"]))      # (T, K)
    predict_file("runs/latest", ["new.csv"], "new.probabilities.csv")   # + new.probabilities.png

New rows go through the run's own transform (the statistics fitted on its final training rows) and the
final model. Each row reads the rows before it in the file: the first `lookback` rows read fewer than the
model was trained with (the output says so). Channels the run does not know are left out.
"""

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..errors import SeqlabError
from ..run import read_config, resolve_device
from .evaluate import read_meta
from .features import Transform
from .fit import build, predict_rows
from .labels import Event, labels
from .settings import is_series
from .table import Table, fill_missing, read_table


@dataclass
class SeriesRun:
    path: Path
    config: object  # RunConfig
    meta: dict  # series.json
    transform: Transform
    events: list[Event]
    model: torch.nn.Module
    device: torch.device

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.events]


def load_series(run_dir, device: str = "cpu") -> SeriesRun:
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if not is_series(cfg):
        raise SeqlabError(f"{run_dir} is a text run; predict reads series runs (seqlab train FILE --series ...)")
    meta = read_meta(run_dir)
    transform = Transform.from_dict(meta["transform"])
    events = [Event(**e) for e in meta["events"]]
    model = build(cfg, len(transform.names), len(events))
    ckpt.load_weights(run_dir, model)
    dev = resolve_device(device)
    return SeriesRun(run_dir, cfg, meta, transform, events, model.to(dev).eval(), dev)


def prepare_table(run: SeriesRun, table: Table) -> Table:
    """The missing-value rule, as in training (label columns keep their gaps)."""
    keep = [e.column for e in run.events if e.kind == "label"]
    return fill_missing(table, keep=keep, constant_ok=True)  # a few new rows may well hold a channel still


def predict_table(run: SeriesRun, table: Table) -> np.ndarray:
    """Probabilities (T, K) for a table already through prepare_table."""
    x = torch.from_numpy(run.transform.apply(table)).to(run.device)
    return predict_rows(run.model, x, 0, len(table), run.meta["lookback"])


def event_marks(run: SeriesRun, table: Table) -> dict[str, np.ndarray]:
    """{event: labels (T,)} for the events whose columns the table has (NaN where unknown)."""
    marks = {}
    for e in run.events:
        if all(c in table.names for c in (e.column, e.high, e.low) if c):
            marks[e.name] = labels(e, table)[0]
    return marks


def csv_text(table: Table, names: list[str], probs: np.ndarray) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([table.time_name] + names)
    for t, row in zip(table.time_text(), probs):
        writer.writerow([t] + [f"{p:.6f}" for p in row])
    return out.getvalue()


def predict_file(run_dir, files: list[str], out, device: str = "cpu", plot: bool = True, log=print) -> dict:
    """Write OUT (CSV: the time column, one probability column per event) and OUT's .png; returns a summary."""
    run = load_series(run_dir, device)
    out = Path(out)
    if out.is_dir():
        raise SeqlabError(f"-o {out} is a directory; give a file name such as {out / 'probabilities.csv'}")
    if not out.parent.exists():
        raise SeqlabError(f"-o {out}: the directory {out.parent} does not exist")
    table = prepare_table(run, read_table(files, run.config.series.time, run.config.series.drop))
    extra = [n for n in table.names if n not in run.transform.names and n not in {e.column for e in run.events}]
    t0 = time.monotonic()
    probs = predict_table(run, table)
    seconds = time.monotonic() - t0
    png = out.with_suffix(".png")
    image = plot_predictions(run, table, probs) if plot else None
    ckpt.atomic_write_text(out, csv_text(table, run.names, probs))
    if image is not None:
        ckpt.atomic_write_bytes(png, image)
    lookback = run.meta["lookback"]
    for note in table.notes:
        log(note)
    if extra:
        log(f"left out {len(extra)} column(s) the run was not trained on: {', '.join(extra[:5])}")
    log(f"{len(table):,} rows, {len(run.names)} event(s): {out}" + (f", {png}" if image is not None else "") +
        f" ({len(table) / max(seconds, 1e-9):,.0f} rows/s); the first {min(lookback, len(table))} rows read fewer "
        f"than the {lookback} rows of context the model was trained with")
    return {"rows": len(table), "out": str(out), "plot": str(png) if image is not None else None,
            "seconds": seconds, "rows_per_s": len(table) / max(seconds, 1e-9)}


def plot_predictions(run: SeriesRun, table: Table, probs: np.ndarray) -> bytes:
    """Each event's column over time, its events marked, and the predicted probability below it (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = event_marks(run, table)
    k = len(run.events)
    fig, axes = plt.subplots(2 * k, 1, figsize=(10, 3.4 * k + 1), dpi=100, sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1] * k})
    t = table.time if np.issubdtype(table.time.dtype, np.datetime64) else np.arange(len(table))
    for i, e in enumerate(run.events):
        top, bottom = axes[2 * i, 0], axes[2 * i + 1, 0]
        if e.column in table.names:
            top.plot(t, table.column(e.column), color="#34495e", lw=0.8, label=e.column)
            hit = marks.get(e.name)
            if hit is not None and np.any(hit == 1):
                top.scatter(t[hit == 1], table.column(e.column)[hit == 1], s=6, color="#c0392b", zorder=3,
                            label="event (known from the rows after it)")
            top.legend(fontsize=8, loc="upper left")
        top.set_title(e.name, fontsize=9)
        bottom.plot(t, probs[:, i], color="#c0392b", lw=0.8)
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("probability")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
