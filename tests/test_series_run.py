"""A series run end to end through the CLI: train on a planted cause, eval, predict, serve, reload."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from seqlab.__main__ import main
from seqlab.series.metrics import METRICS
from seqlab.series.predict import load_series, predict_table, prepare_table
from seqlab.series.synthetic import EVENT, planted, write_csv
from seqlab.series.table import read_table

TINY_FLAGS = ["--arch", "lstm", "--max-steps", "600", "--threads", "1", "--batch-size", "16", "--lr", "3e-3",
              "--device", "cpu", "--set", "model.n_layer=1", "--set", "model.n_hidden=32", "--set", "model.dropout=0",
              "--set", "series.lookback=12", "--set", "series.folds=1", "--set", "series.lags=3",
              "--set", "series.windows=3,4", "--set", "series.n_boot=100", "--set", "series.eval_every=20"]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A run on 2,000 rows whose event is caused by a spike 10 steps earlier (baselines see 3 lags, 4 rows)."""
    root = tmp_path_factory.mktemp("series-run")
    write_csv(root / "planted.csv", *planted(rows=2000, noise=4, lag=10, seed=0))
    code = main(["train", str(root / "planted.csv"), "--series", "--event", EVENT, "--out", str(root / "run"),
                 *TINY_FLAGS])
    assert code == 0
    return root


def eval_json(run, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_planted_cause_is_learned_and_the_lag_baselines_miss_it(planted_run, capsys):
    result = eval_json(planted_run / "run", capsys)
    assert result["model"]["roc_auc"] >= 0.9, result["model"]
    for name in ("logistic", "lightgbm"):
        assert abs(result["baselines"][name]["roc_auc"] - 0.5) < 0.12, (name, result["baselines"][name])
        assert result["model"]["roc_auc_low"] > result["baselines"][name]["roc_auc_high"]  # apart, intervals too


def test_eval_json_keeps_the_interface(planted_run, capsys):
    result = eval_json(planted_run / "run", capsys)
    assert {"model", "baselines", "rows", "positive_rate", "folds"} <= set(result)
    assert set(result["baselines"]) == {"base_rate", "logistic", "lightgbm"}
    for m in [result["model"], *result["baselines"].values(), result["holdout"]["model"]]:
        for name in METRICS:
            assert {name, f"{name}_low", f"{name}_high"} <= set(m)
    assert result["folds"] == 1 and result["rows"] > 500 and 0 < result["positive_rate"] < 0.3
    assert (planted_run / "run" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["eval", str(planted_run / "run")]) == 0
    assert "hold-out, scored once" in capsys.readouterr().out


def test_save_load_predict_gives_the_stored_probabilities(planted_run):
    run_dir = planted_run / "run"
    stored = pq.read_table(run_dir / "predictions.parquet").to_pydict()
    hold = np.array(stored["fold"]) == 0
    rows, want = np.array(stored["row"])[hold], np.array(stored["model:0"])[hold]
    run = load_series(run_dir)
    table = prepare_table(run, read_table([str(planted_run / "planted.csv")]))
    probs = predict_table(run, table)[:, 0]
    np.testing.assert_allclose(probs[rows], want, atol=1e-6)  # the hold-out, scored at training time
    np.testing.assert_array_equal(predict_table(load_series(run_dir), table)[:, 0], probs)  # a second load


def test_predict_writes_the_time_and_one_column_per_event(planted_run, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", str(planted_run / "run"), str(planted_run / "planted.csv"), "-o", str(out)]) == 0
    with open(out) as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["date", EVENT] and len(lines) == 2001
    run = load_series(planted_run / "run")
    probs = predict_table(run, prepare_table(run, read_table([str(planted_run / "planted.csv")])))
    np.testing.assert_allclose([float(r[1]) for r in lines[1:]], probs[:, 0], atol=1e-6)
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_serve_answers_posted_rows(planted_run):
    from fastapi.testclient import TestClient

    from seqlab.serve.series import create_series_app

    with open(planted_run / "planted.csv") as f:
        rows = [{k: (v if k == "date" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)][:300]
    with TestClient(create_series_app(planted_run / "run")) as client:
        reply = client.post("/v1/series/predict", json={"rows": rows})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        bad = client.post("/v1/series/predict", json={"rows": [{"date": "2001-01-01", "price": "abc"}]})
    run = load_series(planted_run / "run")
    table = prepare_table(run, read_table([str(planted_run / "planted.csv")]).rows(0, 300))
    np.testing.assert_allclose(body["probabilities"][EVENT], predict_table(run, table)[:, 0], atol=1e-6)
    assert body["time"][0] == "2000-01-03" and body["events"] == [EVENT]
    assert bad.status_code == 400 and "not numeric" in bad.json()["error"]["message"]


def test_the_run_holds_no_pickle_and_text_verbs_refuse_it(planted_run, capsys):
    run_dir = planted_run / "run"
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert {"config.json", "checkpoint.safetensors", "series.json", "predictions.parquet", "metrics.jsonl",
            "baselines/logistic.json", "baselines/lightgbm-0-0.txt", "baselines/lightgbm-1-0.txt"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pt", ".pickle", ".joblib"))]
    capsys.readouterr()
    assert main(["generate", str(run_dir)]) == 2
    assert "series run" in capsys.readouterr().err
