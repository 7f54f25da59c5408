"""Scores of event probabilities, with 95% moving-block bootstrap intervals (seqlab.stats).

log loss (nats) and Brier score (lower is better; each also as a skill score against the training base
rate, 1 - score / score of the base rate, higher is better), ROC AUC and PR AUC (average precision, as
scikit-learn defines it), expected calibration error (10 equal-width bins). Written in numpy so one
bootstrap draw scores every model on the same rows at once; tests/test_series_metrics.py holds them to
scikit-learn's.
"""

import numpy as np

from ..stats import bootstrap_statistic

METRICS = ("log_loss", "brier", "roc_auc", "pr_auc", "ece")
SKILLS = ("log_loss_skill", "brier_skill")
EPS = 1e-7
BINS = 10


def log_loss(y, p) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(y, p) -> float:
    return float(np.mean((p - y) ** 2))


def ranked(y, p) -> tuple[float, float]:
    """(ROC AUC, average precision) from one sort; NaN when y holds one class."""
    n_pos = float(y.sum())
    n = len(y)
    if n_pos == 0 or n_pos == n:
        return float("nan"), float("nan")
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), n - 1]  # the last row of every run of equal scores
    tps = np.cumsum(ys)[last]
    fps = last + 1 - tps
    precision = tps / (last + 1)
    recall = tps / n_pos
    ap = float(np.sum(np.diff(recall, prepend=0.0) * precision))
    # AUC: area under (fpr, tpr) by trapezoids over the same thresholds (ties score half)
    fpr = np.r_[0.0, fps / (n - n_pos)]
    tpr = np.r_[0.0, recall]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return auc, ap


def ece(y, p, bins: int = BINS) -> float:
    which = np.minimum((p * bins).astype(int), bins - 1)
    gap = np.bincount(which, weights=p - y, minlength=bins)
    return float(np.sum(np.abs(gap)) / len(y))  # sum over bins of n_b/n |mean(p - y) in b|


def scores(y, p) -> list[float]:
    auc, ap = ranked(y, p)
    return [log_loss(y, p), brier(y, p), auc, ap, ece(y, p)]


def score_table(y: np.ndarray, preds: dict[str, np.ndarray], block: int, n_boot: int, seed: int = 0) -> dict:
    """{source: {metric: value, metric_low, metric_high, ...}} for rows in time order; every source is scored
    on the same resampled rows in each draw, and skills against preds["base_rate"] on those rows too."""
    names = list(preds)
    stack = np.stack([preds[s] for s in names])  # (S, n)
    base = names.index("base_rate")

    def statistic(idx):
        yy = y[idx]
        values = np.array([scores(yy, row[idx]) for row in stack])  # (S, 5)
        skill = 1 - values[:, :2] / values[base, :2]
        return np.hstack([values, skill]).ravel()

    point = statistic(np.arange(len(y))).reshape(len(names), -1)
    low, high = bootstrap_statistic(statistic, len(y), block, n_boot=n_boot, seed=seed)
    low, high = np.reshape(low, point.shape), np.reshape(high, point.shape)
    out = {}
    for i, source in enumerate(names):
        entry = {}
        for j, metric in enumerate(METRICS + SKILLS):
            entry[metric] = float(point[i, j])
            entry[f"{metric}_low"], entry[f"{metric}_high"] = float(low[i, j]), float(high[i, j])
        out[source] = entry
    return out


def point_scores(y: np.ndarray, preds: dict[str, np.ndarray]) -> dict:
    """{source: {metric: value}} without intervals (the summary printed at the end of training)."""
    base = scores(y, preds["base_rate"])
    out = {}
    for source, p in preds.items():
        values = scores(y, p)
        out[source] = dict(zip(METRICS + SKILLS, values + [1 - values[0] / base[0], 1 - values[1] / base[1]]))
    return out


def reliability(y, p, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed rate, rows) per non-empty bin."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    keep = counts > 0
    mean_p = np.bincount(which, weights=p, minlength=bins)[keep] / counts[keep]
    rate = np.bincount(which, weights=y, minlength=bins)[keep] / counts[keep]
    return mean_p, rate, counts[keep]
