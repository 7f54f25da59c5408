"""Honest splits in time: walk-forward folds, a final hold-out, purge and embargo.

    rows:  [ part 0 | part 1 | part 2 | ... | part K | hold-out ]
    fold k (1..K) tests on part k and trains on the rows before it; the final fit tests on the hold-out
    and trains on every row before that, once, at the end.

The label of row i reads rows i .. i+horizon, so a training row whose window reaches a test block is
*purged*; the rows right after a test block (horizon + the model's context, by default) are *embargoed*
from training, since their inputs and labels overlap the block's. Walk-forward only trains on earlier
rows, so there the embargo never removes a row; `purge` applies both, whatever the rows. Inside each
fold the last `val_fraction` of the training rows is the validation block (early stopping, the baselines'
settings), and the training rows before it are purged against it in turn. Nothing is ever shuffled.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import SeqlabError


@dataclass
class Fold:
    index: int  # 1..K; 0 = the final fit, tested on the hold-out
    train: np.ndarray  # row indices the model and baselines fit on
    val: np.ndarray  # the validation block: early stopping
    test: tuple[int, int]  # rows [a, b) scored

    @property
    def name(self) -> str:
        return "hold-out" if self.index == 0 else f"fold {self.index}"

    def to_dict(self) -> dict:
        span = lambda r: [int(r.min()), int(r.max()) + 1] if len(r) else [0, 0]
        return {"fold": self.index, "train": span(self.train), "train_rows": len(self.train),
                "val": span(self.val), "test": list(self.test)}


def purge(rows: np.ndarray, block: tuple[int, int], horizon: int, embargo: int) -> np.ndarray:
    """`rows` less those whose label window [i, i + horizon] meets `block` [a, b), and less the embargo
    [b, b + embargo) after it."""
    a, b = block
    touches = (rows + horizon >= a) & (rows < b)
    embargoed = (rows >= b) & (rows < b + embargo)
    return rows[~(touches | embargoed)]


def fit_rows(region: np.ndarray, test: tuple[int, int], horizon: int, embargo: int,
             val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) from the rows of `region`, purged against the test block; the
    validation block is the last val_fraction of them, and the training rows are purged against it."""
    rows = purge(region, test, horizon, embargo)
    n_val = int(round(len(rows) * val_fraction))
    val = rows[len(rows) - n_val:]
    train = rows[: len(rows) - n_val]
    if len(val):
        train = purge(train, (int(val[0]), int(val[-1]) + 1), horizon, 0)
    return train, val


def walk_forward(n: int, folds: int, holdout_fraction: float, val_fraction: float, horizon: int,
                 embargo: int, min_train: int) -> list[Fold]:
    """K walk-forward folds, then the final fit on the hold-out (index 0, last)."""
    n_hold = max(1, int(round(n * holdout_fraction)))
    dev = n - n_hold
    edges = np.linspace(0, dev, folds + 2).round().astype(int)
    plan = []
    for k in range(1, folds + 2):
        test = (int(edges[k]), int(edges[k + 1])) if k <= folds else (dev, n)
        train, val = fit_rows(np.arange(test[0]), test, horizon, embargo, val_fraction)
        fold = Fold(k if k <= folds else 0, train, val, test)
        if len(train) < min_train or (val_fraction > 0 and len(val) == 0) or test[1] <= test[0]:
            raise SeqlabError(
                f"{n:,} rows are too few for {folds} walk-forward folds and a hold-out: {fold.name} would train "
                f"on {len(train):,} rows (needs {min_train:,}: the model's context plus a little) and test on "
                f"{test[1] - test[0]:,}; give more rows, fewer folds (--set series.folds={max(1, folds // 2)}) or "
                f"a shorter context (--set series.lookback=...)")
        plan.append(fold)
    return plan
