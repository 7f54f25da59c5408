"""Leak canaries: the rig finds no edge in shuffled labels, finds a leak when one is planted, and fits its
transforms without ever reading a row outside the training rows."""

import json

import numpy as np
import pytest

from seqlab.series.evaluate import evaluate_series
from seqlab.series.features import Transform, channel_kinds, lag_features, rolling_features
from seqlab.series.labels import labels, parse_event
from seqlab.series.splits import walk_forward
from seqlab.series.synthetic import EVENT, planted
from seqlab.series.table import Table
from seqlab.series.train import train_series
from series_data import random_walks, tiny_config, write_table

QUIET = {"log": lambda *a: None, "show": False}


def auc(result, source="model"):
    entry = result["model"] if source == "model" else result["baselines"][source]
    return entry["roc_auc"]


@pytest.fixture(scope="module")
def label_table(tmp_path_factory):
    """Random walks and a 0/1 label column drawn at random: nothing in the walks predicts it."""
    rng = np.random.default_rng(3)
    rows = 1600
    y = (rng.random(rows) < 0.3).astype(float)
    walks = random_walks(rows, 3, seed=4)
    return tmp_path_factory.mktemp("leaks"), walks, y


def test_shuffled_labels_give_no_edge(tmp_path):
    dates, names, values = planted(rows=1600, noise=2, lag=10, seed=5)
    table = Table("date", dates, names, values)
    y = labels(parse_event(EVENT, names), table)[0]
    shuffled = np.random.default_rng(0).permutation(np.nan_to_num(y))  # the planted cause no longer causes them
    write_table(tmp_path / "t.csv", names + ["y"], np.column_stack([values, shuffled]))
    run = train_series(tiny_config([tmp_path / "t.csv"], ["y:label,within=5"], steps=300, folds=2), tmp_path / "r",
                       **QUIET)
    result = evaluate_series(run, n_boot=50, plot=False)
    assert 0.4 <= auc(result) <= 0.6, result["model"]
    assert 0.4 <= auc(result, "lightgbm") <= 0.6


def test_a_feature_from_the_future_is_found(tmp_path, label_table):
    _, walks, y = label_table
    leak = y + np.random.default_rng(1).normal(0, 0.3, len(y))  # tomorrow's answer, noisy, in today's row
    write_table(tmp_path / "t.csv", ["a", "b", "c", "leak", "y"], np.column_stack([walks, leak, y]))
    run = train_series(tiny_config([tmp_path / "t.csv"], ["y:label"], steps=300), tmp_path / "r", **QUIET)
    result = evaluate_series(run, n_boot=50, plot=False)
    assert auc(result) > 0.9 and auc(result, "logistic") > 0.9, (result["model"], result["baselines"]["logistic"])


def test_without_the_leak_the_same_labels_are_not_predicted(tmp_path, label_table):
    _, walks, y = label_table
    write_table(tmp_path / "t.csv", ["a", "b", "c", "y"], np.column_stack([walks, y]))
    run = train_series(tiny_config([tmp_path / "t.csv"], ["y:label"], steps=300), tmp_path / "r", **QUIET)
    assert 0.4 <= auc(evaluate_series(run, n_boot=50, plot=False)) <= 0.6


def test_transform_statistics_do_not_depend_on_the_test_rows():
    rows = 900
    values = np.column_stack([random_walks(rows, 2, seed=7), np.random.default_rng(8).normal(size=rows),
                              np.random.default_rng(9).integers(0, 1000, rows)])
    names = ["p1", "p2", "level", "x.volume"]
    table = Table("t", np.arange(rows, dtype=float), names, values)
    kinds = channel_kinds(table, names, [])
    assert kinds == ["return", "return", "level", "log_level"]
    for fold in walk_forward(rows, 3, 0.15, 0.2, horizon=5, embargo=30, min_train=50):
        a = fold.test[0]
        wild = values.copy()
        wild[a:] = wild[a:] * 1000 + 7  # the test rows and everything after them, changed beyond recognition
        fitted = [Transform.fit(t, names, kinds, fold.train, clip=5.0).to_dict() for t in
                  (table, table.rows(0, a), Table("t", table.time, names, wild))]
        assert fitted[0] == fitted[1] == fitted[2]
        x_full, x_cut = (Transform.from_dict(fitted[0]).apply(t) for t in (table, table.rows(0, a)))
        np.testing.assert_array_equal(x_full[:a], x_cut)
        for make in (lambda x: lag_features(x, 4), lambda x: rolling_features(x, [3, 8])):
            np.testing.assert_array_equal(make(x_full)[:a], make(x_cut))  # baseline features read only the past


def test_a_run_stores_each_folds_statistics_fitted_on_its_own_rows(tmp_path, label_table):
    _, walks, y = label_table
    write_table(tmp_path / "t.csv", ["a", "b", "c", "y"], np.column_stack([walks, y]))
    run = train_series(tiny_config([tmp_path / "t.csv"], ["y:label"], steps=20, folds=2), tmp_path / "r", **QUIET)
    meta = json.loads((run / "series.json").read_text())
    table = Table("date", np.arange(len(y), dtype=float), ["a", "b", "c"], walks)
    for stored, fold in zip(meta["fold_transforms"], meta["folds"]):
        plan = walk_forward(len(y), 2, 0.15, 0.2, 1, 25, 24)
        rows = next(f for f in plan if f.index == fold["fold"]).train
        want = Transform.fit(table, ["a", "b", "c"], ["return"] * 3, rows, 5.0).to_dict()
        np.testing.assert_allclose(stored["mean"], want["mean"], rtol=1e-4)  # the CSV holds 8 digits
        np.testing.assert_allclose(stored["std"], want["std"], rtol=1e-4)
