"""Bad series input: one line on stderr, exit status 2, and nothing written."""

import numpy as np
import pytest

from seqlab.__main__ import main
from series_data import random_walks, write_table

EVENT = "a:up=1%,down=1%,within=5"


def run_cli(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def train(capsys, tmp_path, table, *flags, event=EVENT):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "train", table, "--series", "--event", event, "--out", out, "--max-steps", 5, *flags)
    assert not out.exists() and not list(tmp_path.glob(".run*")), "a failed run left files behind"
    return code, err


@pytest.fixture
def rows():
    return [list(r) for r in random_walks(400, 3, seed=0)]


def test_non_numeric_channel(capsys, tmp_path, rows):
    rows[7][1] = "n/a?"
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.csv"), "'b' is not numeric", "'n/a?'",
                          "series.drop=b")


def test_missing_cells_are_not_an_error(capsys, tmp_path, rows):
    rows[7][1], rows[8][2] = ".", ""
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    code, err = train(capsys, tmp_path, tmp_path / "t.csv", "--set", "series.lookback=200")  # stops at the rows
    assert_one_line_error(code, err, "rows")  # got past reading: the error is about the plan, not the cells


@pytest.mark.parametrize("swap, needle", [((10, 11), "goes back in time"), ((11, 10), "repeats")])
def test_time_not_increasing(capsys, tmp_path, rows, swap, needle):
    dates = [str(np.datetime64("2001-01-01") + i) for i in range(len(rows))]
    i, j = swap
    dates[i] = dates[j] if needle == "repeats" else dates[i]
    if needle != "repeats":
        dates[i], dates[j] = dates[j], dates[i]
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows, dates=dates)
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.csv"), needle, "sort the file")


def test_fewer_rows_than_context_and_horizon(capsys, tmp_path, rows):
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows[:40])
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.csv"), "40 rows", "fewer than the model's context")


def test_a_training_split_without_events(capsys, tmp_path, rows):
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    code, err = train(capsys, tmp_path, tmp_path / "t.csv", "--set", "series.lookback=16",
                      event="a:up=90%,within=2")
    assert_one_line_error(code, err, "fold 1's training rows", "no event")


def test_an_event_on_a_column_that_does_not_exist(capsys, tmp_path, rows):
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.csv", event="SPX:up=1%,within=5"),
                          "'SPX'", "its columns: a, b, c")


def test_a_constant_channel(capsys, tmp_path, rows):
    for r in rows:
        r[2] = 5.0
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.csv"), "'c' is constant", "series.drop=c")


@pytest.mark.parametrize("flags, needle", [
    (["--tokenizer", "bpe:300"], "--tokenizer is for text runs"),
    (["--arch", "stack"], "--series trains lstm"),
    (["--set", "series.folds=0"], "series.folds must be >= 1"),
    (["--set", "series.holdout_fraction=0.9"], "holdout_fraction must be in (0, 0.5]"),
    (["--time", "when"], "no time column 'when'"),
])
def test_bad_settings(capsys, tmp_path, rows, flags, needle):
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.csv", *flags), needle)


def test_event_without_series_and_an_unreadable_table(capsys, tmp_path):
    (tmp_path / "t.csv").write_text("date,a\n2020-01-01,1\n")
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "t.csv", "--event", EVENT), "add --series")
    (tmp_path / "t.parquet").write_bytes(b"not parquet at all")
    assert_one_line_error(*train(capsys, tmp_path, tmp_path / "t.parquet"), "cannot read", "as a table")


def test_an_interrupted_run_leaves_nothing(capsys, tmp_path, rows, monkeypatch):
    from seqlab.series import fit

    def interrupted(self, train, val):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit.Fit, "fit", interrupted)
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    code, err = train(capsys, tmp_path, tmp_path / "t.csv", "--set", "series.lookback=16")
    assert_one_line_error(code, err, "interrupted; nothing was written")


def test_predict_needs_the_runs_channels(capsys, tmp_path, rows):
    write_table(tmp_path / "t.csv", ["a", "b", "c"], rows)
    code, err = run_cli(capsys, "train", tmp_path / "t.csv", "--series", "--event", EVENT, "--out", tmp_path / "run",
                        "--max-steps", 2, "--threads", 1, "--set", "series.lookback=16", "--set", "series.folds=1",
                        "--set", "model.n_hidden=8")
    assert code == 0, err
    write_table(tmp_path / "new.csv", ["a", "c"], [r[::2] for r in rows])
    out = tmp_path / "p.csv"
    assert_one_line_error(*run_cli(capsys, "predict", tmp_path / "run", tmp_path / "new.csv", "-o", out),
                          "lacks channel 'b'")
    assert not out.exists() and not out.with_suffix(".png").exists()
    assert_one_line_error(*run_cli(capsys, "eval", tmp_path / "run", tmp_path / "new.csv"), "seqlab predict")
