"""The auto choice measures its machine: a short probe times candidate widths, then the rule sizes from it."""

import math

import pytest
import torch

from seqlab.train import probe
from seqlab.train.defaults import LADDERS, choose, ladder_for
from seqlab.train.probe import measure, time_steps

CPU = LADDERS["cpu"]


def fake_timer(rates_by_threads: dict[int, dict[int, float]], calls: list):
    """A timer that returns the given tokens/s for (threads, width) and records what was timed."""
    def timer(ladder, width, device, threads, precision):
        calls.append((width, threads))
        return rates_by_threads[threads][width]
    return timer


def test_probe_stops_at_the_first_width_that_does_not_fit_and_keeps_the_faster_thread_count():
    # two threads are faster at every width but the smallest (as on an idle 2-core machine)
    two = {w: 24_000 * CPU.params(128) / CPU.params(w) for w in CPU.widths}
    one = {w: r / 1.6 for w, r in two.items()}
    one[64] = two[64] * 1.1
    calls = []
    m = measure(CPU, 600, 10_000_000, torch.device("cpu"), [2, 1], timer=fake_timer({1: one, 2: two}, calls))
    assert [w for w, _ in calls[::2]] == [64, 96, 128, 192]  # 192 does not fit 10 minutes: nothing wider is timed
    assert {t for _, t in calls} == {1, 2}
    assert m.threads == {64: 1, 96: 2, 128: 2, 192: 2} and m.rates[128] == two[128]
    assert 0 <= m.seconds < 1
    choice = choose(10_000_000, 600 - m.seconds, m.rates, measured=m.describe(CPU, "cpu"))
    assert choice.model["n_embd"] == 128
    assert "measured on this machine (2 and 1 threads tried): 4x64 " in choice.reason and "k tokens/s" in choice.reason


def test_probe_skips_what_the_corpus_rules_out():
    calls = []
    rates = {w: 1e9 for w in CPU.widths}
    measure(CPU, 36_000, 200_000, torch.device("cpu"), [1], timer=fake_timer({1: rates}, calls))
    assert [w for w, _ in calls] == [w for w in CPU.widths if CPU.params(w) <= 2.5 * 200_000]


def test_time_steps_measures_a_real_training_step():
    rate = time_steps(CPU, 64, torch.device("cpu"), threads=1, min_seconds=0.05)
    assert math.isfinite(rate) and rate > 100


def test_gpu_uses_the_same_rule_with_its_own_candidates():
    gpu = ladder_for("cuda")
    assert gpu.widths != CPU.widths and gpu.context > CPU.context and gpu.batch > CPU.batch
    assert ladder_for("mps") is CPU  # a device without its own ladder takes the CPU's
    rates = {w: 4e6 * gpu.params(384) / gpu.params(w) for w in gpu.widths}
    choice = choose(10_000_000, 600, rates, device_type="cuda")
    assert choice.model["n_layer"] == gpu.layers and choice.model["n_embd"] % choice.model["n_head"] == 0
    assert choice.train["seq_len"] == gpu.context and choice.train["batch_size"] == gpu.batch


def test_cli_auto_choice_probes_takes_its_time_from_the_budget_and_says_what_it_measured(
        corpus_file, monkeypatch, capsys):
    from seqlab.__main__ import build_parser
    from seqlab.train import config_from_args

    busy = {1: {w: 30_000 * CPU.params(64) / CPU.params(w) for w in CPU.widths},  # a busy machine: one
            2: {w: 3_000 * CPU.params(64) / CPU.params(w) for w in CPU.widths}}  # thread beats two
    calls = []
    monkeypatch.setattr(probe, "time_steps", fake_timer(busy, calls))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    big = corpus_file.parent / "big.txt"
    big.write_bytes(corpus_file.read_bytes() * 200)
    cfg = config_from_args(build_parser().parse_args(["train", str(big), "--budget", "10m", "--device", "cpu"]))
    assert calls and cfg.train.threads == 1
    assert 599 < cfg.train.budget_seconds < 600  # the probe's time came out of the budget
    line = capsys.readouterr().out.strip()
    assert line.startswith("auto: transformer 4x") and "measured on this machine" in line and "\n" not in line
    calls.clear()
    cfg = config_from_args(build_parser().parse_args(["train", str(big), "--budget", "10m", "--threads", "2"]))
    assert {t for _, t in calls} == {2} and cfg.train.threads == 2  # a thread count given is kept, and timed alone
    calls.clear()
    config_from_args(build_parser().parse_args(["train", str(big), "--max-steps", "100"]))
    assert calls == []  # a step budget knows its tokens: no probe


def test_a_budget_too_short_to_measure_takes_the_smallest_size(corpus_file, monkeypatch, capsys):
    from seqlab.__main__ import build_parser
    from seqlab.train import config_from_args

    monkeypatch.setattr(probe, "time_steps", lambda *a: pytest.fail("probed"))
    cfg = config_from_args(build_parser().parse_args(["train", str(corpus_file), "--budget", "30s"]))
    assert cfg.model["n_embd"] == CPU.widths[0] and cfg.train.budget_seconds == 30
    assert "too short a budget to measure" in capsys.readouterr().out


@pytest.mark.parametrize("item,message", [("model.n_embd=-3", "model.n_embd"), ("train.lr=nan", "train.lr")])
def test_a_bad_set_value_fails_before_the_probe_spends_any_budget(corpus_file, monkeypatch, capsys, item, message):
    from seqlab.__main__ import main

    monkeypatch.setattr(probe, "time_steps", lambda *a: pytest.fail("probed before the --set values were checked"))
    out = corpus_file.parent / "run"
    assert main(["train", str(corpus_file), "--budget", "10m", "--set", item, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and not out.exists()
