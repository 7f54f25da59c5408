"""Purge and embargo: no training row's label window reaches a block it is tested on (property-based)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.errors import SeqlabError
from seqlab.series.splits import purge, walk_forward


def label_window_meets(rows, block, horizon) -> bool:
    a, b = block
    return bool(np.any((rows + horizon >= a) & (rows < b)))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(200, 5000), folds=st.integers(1, 6), horizon=st.integers(1, 30), extra=st.integers(0, 80),
       holdout=st.floats(0.05, 0.4), val=st.floats(0.05, 0.5))
def test_walk_forward_never_trains_on_what_it_tests(n, folds, horizon, extra, holdout, val):
    embargo = horizon + extra
    try:
        plan = walk_forward(n, folds, holdout, val, horizon, embargo, min_train=20)
    except SeqlabError:
        return  # too few rows for this plan: refused, not split badly
    assert [f.index for f in plan] == list(range(1, folds + 1)) + [0]
    hold = plan[-1].test
    assert hold[1] == n and plan[-2].test[1] == hold[0]  # the test blocks tile the rows up to the end
    for fold in plan:
        a, b = fold.test
        fitted = np.concatenate([fold.train, fold.val])
        assert len(np.unique(fitted)) == len(fitted)
        assert fitted.max() < a  # walk-forward: only earlier rows
        assert not label_window_meets(fitted, fold.test, horizon)  # purged against the test block
        assert not label_window_meets(fold.train, (int(fold.val[0]), int(fold.val[-1]) + 1), horizon)
        assert not label_window_meets(fitted, hold, horizon)  # ... and the hold-out
        assert fold.train.max() < fold.val.min()


@settings(max_examples=200, deadline=None)
@given(n=st.integers(10, 400), a=st.integers(0, 400), size=st.integers(1, 100), horizon=st.integers(0, 20),
       embargo=st.integers(0, 50))
def test_purge_removes_the_label_windows_and_the_embargo(n, a, size, horizon, embargo):
    a = min(a, n - 1)
    b = min(n, a + size)
    rows = np.arange(n)
    kept = purge(rows, (a, b), horizon, embargo)
    assert not label_window_meets(kept, (a, b), horizon)
    assert not np.any((kept >= b) & (kept < b + embargo))
    # nothing else is removed
    removed = np.setdiff1d(rows, kept)
    assert np.all(((removed + horizon >= a) & (removed < b)) | ((removed >= b) & (removed < b + embargo)))


def test_too_few_rows_for_the_folds_is_refused():
    with pytest.raises(SeqlabError, match="too few for 8 walk-forward folds"):
        walk_forward(300, 8, 0.15, 0.2, 5, 30, min_train=64)
