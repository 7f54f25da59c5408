"""The series scores agree with scikit-learn's, and their intervals come from the shared block bootstrap."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from seqlab.series import metrics
from seqlab.stats import bootstrap_statistic


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = 500
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(np.round(0.3 + 0.2 * (y - 0.3) + rng.normal(0, 0.2, n), 2), 0.01, 0.99)  # rounded: many ties
    got = metrics.scores(y, p)
    want = [log_loss(y, p), brier_score_loss(y, p), roc_auc_score(y, p), average_precision_score(y, p)]
    np.testing.assert_allclose(got[:4], want, rtol=1e-9)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    assert got[4] == pytest.approx(ece)


def test_one_class_has_no_auc():
    auc, ap = metrics.ranked(np.zeros(10), np.linspace(0, 1, 10))
    assert np.isnan(auc) and np.isnan(ap)


def test_score_table_intervals_hold_the_figure_and_skill_is_paired():
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.4).astype(float)
    good = np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.1, n), 0.01, 0.99)
    table = metrics.score_table(y, {"model": good, "base_rate": np.full(n, 0.4)}, block=20, n_boot=200)
    for source, entry in table.items():
        for m in metrics.METRICS + metrics.SKILLS:
            if not np.isnan(entry[m]):
                assert entry[f"{m}_low"] <= entry[m] <= entry[f"{m}_high"], (source, m)
    assert table["model"]["roc_auc_low"] > 0.6 and table["model"]["log_loss_skill_low"] > 0
    assert table["base_rate"]["log_loss_skill"] == 0 and table["base_rate"]["log_loss_skill_high"] == 0


def test_a_vector_statistic_gets_one_interval_per_entry():
    x = np.random.default_rng(1).normal(size=300)
    low, high = bootstrap_statistic(lambda idx: np.array([x[idx].mean(), x[idx].std()]), 300, 10, n_boot=200)
    one = bootstrap_statistic(lambda idx: x[idx].mean(), 300, 10, n_boot=200)
    assert low.shape == (2,) and (low[0], high[0]) == pytest.approx(one)  # same draws as the scalar form
