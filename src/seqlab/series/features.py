"""Per-channel transforms fitted on training rows only, and the baselines' lag and rolling features.

The rule, per channel (`--set series.transforms=COL:kind,...` overrides it):
  - `log_level`  log(1 + x), for names like volume/count that are never negative;
  - `return`     log(x_t / x_(t-1)), for channels whose values are all positive (prices);
  - `level`      x itself, for the rest.
Each is then standardised with the mean and standard deviation of the *training rows of the fold* and
clipped to +-clip; the first row's return (no row before it) is 0. Nothing else is fitted, so a
transform's statistics never depend on a row outside the rows it is fitted on (tests/test_series_leaks.py).

The baselines read lags (x_t, x_(t-1), ... of every standardised channel) and, for LightGBM, rolling
means and standard deviations over the last w rows, all from rows at or before t.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import SeqlabError
from .table import Table

KINDS = ("return", "log_level", "level")
COUNT_NAMES = ("volume", "vol", "count", "trades", "open_interest", "oi")
MAX_LAG_FEATURES = 4096  # the baselines' lag matrix stays below this many columns (fewer lags for wide tables)


def channel_kinds(table: Table, names: list[str], overrides: list[str]) -> list[str]:
    given = {}
    for item in overrides:
        name, sep, kind = item.rpartition(":")
        if not sep or kind not in KINDS:
            raise SeqlabError(f"series.transforms: expected COLUMN:KIND with KIND one of {', '.join(KINDS)}, "
                              f"got {item!r}")
        if name not in names:
            raise SeqlabError(f"series.transforms names {name!r}, which is not an input channel")
        given[name] = kind
    kinds = []
    for name in names:
        x = table.column(name)
        if name in given:
            kind = given[name]
        elif name.rsplit(".", 1)[-1].lower() in COUNT_NAMES and np.nanmin(x) >= 0:
            kind = "log_level"
        else:
            kind = "return" if np.nanmin(x) > 0 else "level"
        if kind == "return" and np.nanmin(x) <= 0:
            raise SeqlabError(f"channel {name!r} has values <= 0, so it has no log return; use "
                              f"--set series.transforms={name}:level")
        if kind == "log_level" and np.nanmin(x) <= -1:
            raise SeqlabError(f"channel {name!r} has values <= -1, so log(1 + x) is undefined; use "
                              f"--set series.transforms={name}:level")
        kinds.append(kind)
    return kinds


def raw_features(table: Table, names: list[str], kinds: list[str]) -> np.ndarray:
    """(T, C) before standardising: returns, log levels, levels. Row t reads rows t-1 and t only."""
    cols = []
    for name, kind in zip(names, kinds):
        x = table.column(name)
        if kind == "return":
            col = np.zeros_like(x)
            col[1:] = np.log(x[1:] / x[:-1])
        else:
            col = np.log1p(x) if kind == "log_level" else x.copy()
        cols.append(col)
    return np.column_stack(cols)


@dataclass
class Transform:
    names: list[str]
    kinds: list[str]
    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,); 1 where the channel is constant on the training rows
    clip: float

    @classmethod
    def fit(cls, table: Table, names: list[str], kinds: list[str], rows: np.ndarray, clip: float) -> "Transform":
        """Statistics from `rows` (indices) only."""
        raw = raw_features(table.rows(max(0, int(rows.min()) - 1), int(rows.max()) + 1), names, kinds)
        fitted = raw[rows - max(0, int(rows.min()) - 1)]
        mean, std = fitted.mean(axis=0), fitted.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(list(names), list(kinds), mean, std, clip)

    def apply(self, table: Table) -> np.ndarray:
        """(T, C) float32 model inputs."""
        missing = [n for n in self.names if n not in table.names]
        if missing:
            raise SeqlabError(f"the table lacks channel {missing[0]!r} that the run was trained on "
                              f"({len(missing)} missing in all); give the same columns as in training")
        z = (raw_features(table, self.names, self.kinds) - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        return {"names": self.names, "kinds": self.kinds, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> "Transform":
        return cls(d["names"], d["kinds"], np.array(d["mean"]), np.array(d["std"]), d["clip"])


def lags_used(n_channels: int, lags: int) -> int:
    return max(1, min(lags, MAX_LAG_FEATURES // max(1, n_channels)))


def lag_features(x: np.ndarray, lags: int) -> np.ndarray:
    """(T, C * lags): x_t, x_(t-1), ..., x_(t-lags+1) of every channel; NaN before the first row."""
    T, C = x.shape
    out = np.full((T, C * lags), np.nan, dtype=np.float32)
    for k in range(lags):
        out[k:, k * C:(k + 1) * C] = x[: T - k]
    return out


def rolling_features(x: np.ndarray, windows: list[int]) -> np.ndarray:
    """(T, C * 2 * len(windows)): the mean and standard deviation of rows t-w+1 .. t; NaN until w rows exist."""
    T, C = x.shape
    x = x.astype(np.float64)
    s1 = np.vstack([np.zeros((1, C)), np.cumsum(x, axis=0)])
    s2 = np.vstack([np.zeros((1, C)), np.cumsum(x * x, axis=0)])
    cols = []
    for w in windows:
        mean, sd = np.full((T, C), np.nan), np.full((T, C), np.nan)
        if w <= T:
            n1 = (s1[w:] - s1[:-w]) / w
            mean[w - 1:] = n1
            sd[w - 1:] = np.sqrt(np.maximum((s2[w:] - s2[:-w]) / w - n1 * n1, 0))
        cols += [mean, sd]
    return np.hstack(cols).astype(np.float32)
