"""Event labels: the vectorised triple barrier agrees with a slow reference on random paths."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.errors import SeqlabError
from seqlab.series.labels import labels, parse_event
from seqlab.series.table import Table


def slow_label(close, high, low, t, up, down, within):
    """The definition, one bar at a time: up before down; a bar touching both is down-first."""
    if t + within >= len(close):
        return math.nan
    ref = close[t]
    for k in range(1, within + 1):
        hit_up = up > 0 and high[t + k] >= ref * (1 + up)
        hit_down = down > 0 and low[t + k] <= ref * (1 - down)
        if up and down:
            if hit_down:
                return 0.0
            if hit_up:
                return 1.0
        elif hit_up or hit_down:
            return 1.0
    return 0.0


def path_table(seed: int, rows: int, with_high_low: bool) -> Table:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    if not with_high_low:
        return Table("t", np.arange(rows, dtype=float), ["X"], close[:, None])
    high = close * np.exp(np.abs(rng.normal(0, 0.006, rows)))
    low = close * np.exp(-np.abs(rng.normal(0, 0.006, rows)))
    return Table("t", np.arange(rows, dtype=float), ["X.close", "X.high", "X.low"], np.column_stack([close, high, low]))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(2, 120), within=st.integers(1, 12),
       up=st.sampled_from([0, 0.5, 1, 2]), down=st.sampled_from([0, 0.5, 1, 3]), with_high_low=st.booleans())
def test_triple_barrier_matches_the_slow_reference(seed, rows, within, up, down, with_high_low):
    if not (up or down):
        up = 1
    table = path_table(seed, rows, with_high_low)
    parts = [f"up={up}%"] * bool(up) + [f"down={down}%"] * bool(down) + [f"within={within}"]
    event = parse_event("X:" + ",".join(parts), table.names)
    assert (event.high, event.low) == (("X.high", "X.low") if with_high_low else ("", ""))
    got, both = labels(event, table)
    close = table.column(event.column)
    high = table.column(event.high) if event.high else close
    low = table.column(event.low) if event.low else close
    want = [slow_label(close, high, low, t, up / 100, down / 100, within) for t in range(rows)]
    np.testing.assert_array_equal(got, np.array(want))
    assert both >= 0


def test_a_bar_touching_both_barriers_counts_as_down_first():
    close = np.array([100.0, 100.0, 100.0])
    high, low = np.array([100.0, 102.0, 100.0]), np.array([100.0, 99.0, 100.0])
    table = Table("t", np.arange(3.0), ["X.close", "X.high", "X.low"], np.column_stack([close, high, low]))
    y, both = labels(parse_event("X:up=1%,down=0.5%,within=1", table.names), table)
    assert y[0] == 0 and both == 1
    assert labels(parse_event("X:up=1%,within=1", table.names), table)[0][0] == 1  # no lower barrier: up


def test_level_and_label_events():
    x = np.array([10.0, 12.0, 31.0, 9.0, 5.0])
    table = Table("t", np.arange(5.0), ["V", "L"], np.column_stack([x, [0, 1, np.nan, 1, 0]]))
    np.testing.assert_array_equal(labels(parse_event("V:above=30,within=2", table.names), table)[0],
                                  [1, 1, 0, np.nan, np.nan])
    np.testing.assert_array_equal(labels(parse_event("V:below=9,within=1", table.names), table)[0],
                                  [0, 0, 1, 1, np.nan])
    np.testing.assert_array_equal(labels(parse_event("L:label", table.names), table)[0], [0, 1, np.nan, 1, 0])


@pytest.mark.parametrize("spec, needle", [
    ("X:up=1,within=5", "percent sign"),
    ("X:up=1%", "within=H"),
    ("X:up=1%,within=0", "within must be"),
    ("X:sideways=1%,within=5", "unknown part"),
    ("Y:up=1%,within=5", "does not have"),
    ("X:up=1%,above=3,within=5", "not both"),
    ("nocolon", "cannot read event"),
])
def test_bad_event_specs_say_what_is_wrong(spec, needle):
    with pytest.raises(SeqlabError, match=needle):
        parse_event(spec, ["X"])
