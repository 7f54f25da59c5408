"""Generated tables and tiny configs for the series tests (tests/test_series_*.py); no file from outside."""

import csv

import numpy as np

from seqlab.series.settings import make_config

TINY_SERIES = {  # one thread-friendly size per trunk
    "lstm": {"n_layer": 1, "n_hidden": 32, "dropout": 0.0},
    "qrnn": {"n_layer": 2, "n_hidden": 32, "dropout": 0.0},
    "conv": {"n_layer": 4, "n_channels": 16, "kernel_size": 2, "cycle": 0, "dropout": 0.0},
    "transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0},
}


def write_table(path, names, values, dates=None, time_name="date") -> None:
    """A CSV with a time column (dates, one a day, unless given) and one column per name."""
    dates = dates if dates is not None else [str(np.datetime64("2001-01-01") + i) for i in range(len(values))]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([time_name] + list(names))
        for d, row in zip(dates, values):
            w.writerow([d] + [v if isinstance(v, str) else f"{v:.8g}" for v in row])


def random_walks(rows: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (rows, channels)), axis=0))


def tiny_config(paths, events, arch: str = "lstm", steps: int = 200, **series):
    """A series RunConfig that trains in seconds on one thread."""
    settings = {"lookback": 12, "folds": 1, "lags": 3, "windows": [3, 4], "n_boot": 100, "patience": 10,
                "eval_every": 20, **series}
    return make_config([str(p) for p in paths], list(events), arch, dict(TINY_SERIES[arch]),
                       train={"max_steps": steps, "batch_size": 16, "lr": 3e-3, "threads": 1, "device": "cpu"},
                       **settings)
