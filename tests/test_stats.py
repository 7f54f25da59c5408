"""Intervals (seqlab/stats.py): block bootstrap, paired differences, Wilson."""

import numpy as np
import pytest

from seqlab.stats import (block_sums, bootstrap_ratio, bootstrap_statistic, expanded_level, moving_blocks,
                          paired_difference, ratio_interval, seed_spread, t_quantile, wilson)


@pytest.mark.parametrize("k,n,low,high", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
                                          (81, 263, 0.2553, 0.3662)])
def test_wilson_matches_published_values(k, n, low, high):
    # reference values: Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I,
    # and the 81/263 example of Wilson's interval in Agresti & Coull (1998)
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_ratio_interval_contains_the_figure_and_shrinks_with_more_blocks():
    rng = np.random.default_rng(0)

    def interval(n_blocks):
        bytes_ = rng.integers(500, 1500, n_blocks).astype(float)
        bits = bytes_ * rng.normal(2.0, 0.3, n_blocks)
        low, high = bootstrap_ratio(bits, bytes_)
        return bits.sum() / bytes_.sum(), low, high

    point, low, high = interval(20)
    assert low < point < high
    point2, low2, high2 = interval(2000)
    assert low2 < point2 < high2
    assert (high2 - low2) < (high - low) / 5  # ~sqrt(100) narrower


def test_paired_difference_of_a_model_with_itself_is_zero_and_a_planted_gap_is_found():
    rng = np.random.default_rng(1)
    bytes_ = rng.integers(500, 1500, 200).astype(float)
    bits = bytes_ * rng.normal(2.0, 0.5, 200)  # blocks differ a lot in difficulty ...
    assert paired_difference(bits, bits, bytes_) == (0.0, 0.0, 0.0)
    worse = bits * 1.01 + rng.normal(0, 1, 200)  # ... but B is 1% worse on every one of them
    d, low, high = paired_difference(bits, worse, bytes_)
    assert low <= d <= high < 0  # A better, and the interval says so
    # unpaired, the block-to-block spread would swamp the 1% gap
    a_low, a_high = bootstrap_ratio(bits, bytes_)
    b_low, b_high = bootstrap_ratio(worse, bytes_)
    assert a_high > b_low


def test_block_sums_and_moving_blocks():
    assert block_sums(np.arange(7), 3).tolist() == [3, 12, 6]
    idx = moving_blocks(10, 4, np.random.default_rng(0))
    assert len(idx) == 10 and idx.min() >= 0 and idx.max() < 10
    runs = np.diff(idx) % 10 == 1  # consecutive rows inside blocks
    assert runs.sum() >= 6


def test_bootstrap_statistic_of_a_mean_covers_it():
    x = np.random.default_rng(2).normal(3.0, 1.0, 500)
    low, high = bootstrap_statistic(lambda i: x[i].mean(), len(x), block_len=10, n_boot=300)
    assert low < x.mean() < high and high - low < 0.4


@pytest.mark.parametrize("df,expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (59, 2.0010)])
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_expanded_level_widens_few_blocks_and_fades_with_many():
    assert expanded_level(0.95, 10) == pytest.approx(0.983, abs=1e-3)
    assert 0.95 < expanded_level(0.95, 1000) < 0.9505
    assert expanded_level(0.95, 1) == 0.95


def test_ratio_interval_of_paired_timings():
    a = np.array([2.0, 2.2, 1.9, 2.1, 2.0, 2.05])  # seconds of the slow one, round by round
    b = a / 2 * np.array([1.0, 1.02, 0.98, 1.01, 0.99, 1.0])  # the fast one, ~2x, under the same load
    ratio, low, high = ratio_interval(a, b)
    assert ratio == pytest.approx(np.median(a) / np.median(b)) and low <= ratio <= high and 1.95 < low < high < 2.05
    a[2] = 20.0  # one round slowed tenfold by another process
    assert ratio_interval(a, b)[0] == pytest.approx(ratio, rel=0.03)


def test_seed_spread():
    s = seed_spread([1.0, 1.2, 1.4])
    assert s == {"seeds": 3, "mean": pytest.approx(1.2), "sd": pytest.approx(0.2), "min": 1.0, "max": 1.4}
    assert seed_spread([2.0])["sd"] == 0.0
