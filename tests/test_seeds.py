"""Several seeds of one configuration (`train --seeds`, `compare --seeds`) and compare's intervals and ties."""

import json

import numpy as np
import pytest

from seqlab.__main__ import main
from seqlab.compare import Row, add_intervals, compare, format_table
from seqlab.run import read_config, read_metrics
from seqlab.seeds import seeded

from conftest import TINY, tiny_config

TINY_ARGS = ["--arch", "lstm", "--max-steps", "12", "--batch-size", "4", "--seq-len", "32", "--threads", "1",
             "--set", "model.n_hidden=24", "--set", "train.eval_tokens=512", "--set", "train.eval_every_steps=6"]


def test_seeded_configs_differ_only_in_their_seed(corpus_file):
    cfg = tiny_config(corpus_file)
    configs = seeded(cfg, 3)
    assert [c.train.seed for c in configs] == [cfg.train.seed, cfg.train.seed + 1, cfg.train.seed + 2]
    configs[1].train.seed = cfg.train.seed
    assert configs[1] == cfg and configs[1] is not cfg


def test_train_seeds_into_sub_runs_and_reports_both_uncertainties(corpus_file, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", str(corpus_file), *TINY_ARGS, "--seed", "5", "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert [read_config(out / f"seed-{s}").train.seed for s in (5, 6)] == [5, 6]
    summary = json.loads((out / "seeds.json").read_text())
    bpbs = [[r for r in read_metrics(out / f"seed-{s}") if r["event"] == "final"][-1]["val_bpb"] for s in (5, 6)]
    assert [r["bpb"] for r in summary["runs"]] == bpbs and bpbs[0] != bpbs[1]
    assert summary["between_seeds"]["sd"] == pytest.approx(np.std(bpbs, ddof=1))
    for r in summary["runs"]:
        assert r["bpb_low"] < r["bpb"] < r["bpb_high"]
    assert "between seeds (training randomness, 2 seeds)" in printed
    assert "bootstrap 95% (which bytes were held out" in printed


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0"], "--seeds: must be >= 1, got 0"),
    (["--seeds", "two"], "--seeds: expected an integer"),
    (["--resume", "RUN", "--seeds", "2"], "resume each seed's own run"),
    (["CORPUS", "--series", "--seeds", "2"], "--seeds repeats a text run"),
])
def test_bad_seeds_are_one_line_errors(trained_runs, corpus_file, capsys, argv, message):
    given = {"RUN": str(trained_runs["lstm"]), "CORPUS": str(corpus_file)}
    argv = [given.get(a, a) for a in argv]
    capsys.readouterr()  # the fixture's training line
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_compare_seeds_zero_is_a_one_line_error(corpus_file, capsys):
    assert main(["compare", str(corpus_file), "--archs", "lstm", "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--seeds: must be >= 1" in err


def test_compare_with_seeds_gives_the_mean_its_interval_and_the_spread(corpus_file, tmp_path):
    base = tiny_config(corpus_file, "lstm", steps=12)
    base.train.eval_every_steps = 6
    rows = compare(base, ["lstm", "transformer"], tmp_path / "cmp", models=TINY, log=lambda *a: None, seeds=2)
    for r in rows[:2]:
        assert [d.name for d in r.runs] == [f"seed-{base.train.seed}", f"seed-{base.train.seed + 1}"]
        finals = [[m for m in read_metrics(d) if m["event"] == "final"][-1]["val_bpb"] for d in r.runs]
        assert r.bpb == pytest.approx(np.mean(finals)) and r.seeds["sd"] == pytest.approx(np.std(finals, ddof=1))
        assert r.low < r.bpb < r.high
    best, other = sorted(rows[:2], key=lambda r: r.bpb)
    assert best.vs_best is None and other.vs_best["difference"] == pytest.approx(other.bpb - best.bpb, abs=1e-4)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "between seeds, sd" in md and "(2 seeds)" in md and "| best |" in md
    assert "training randomness" in md and "which bytes were held out" in md


def test_rows_tied_with_the_best_are_marked():
    rng = np.random.default_rng(0)
    docs = [rng.gamma(2.0, 1.0, 500) for _ in range(40)]
    per_byte = {"a": docs, "same": [d + rng.normal(0, 0.05, len(d)) for d in docs], "worse": [d * 1.2 for d in docs]}
    rows = [Row(name, float(np.concatenate(per_byte[name]).mean()), params=1) for name in per_byte]
    add_intervals(rows, per_byte)
    table = format_table(rows)
    best = min(rows, key=lambda r: r.bpb)
    lines = {r.name: next(line for line in table.splitlines() if line.startswith(f"| {r.name} |")) for r in rows}
    assert "| best |" in lines[best.name]
    assert lines["worse"].count("tied") == 0 and rows[2].vs_best["verdict"] == "worse"
    tied = [name for name in ("a", "same") if name != best.name]
    assert " tied |" in lines[tied[0]]
