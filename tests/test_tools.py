"""The tools people already use: TensorBoard curves, --version, shell completion."""

import json
import subprocess
import sys

import pytest

from conftest import tiny_config

from seqlab import __version__
from seqlab.__main__ import main


def test_log_tensorboard_writes_the_curves_of_metrics_jsonl(corpus_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from seqlab.train import train

    cfg = tiny_config(corpus_file, "transformer", steps=40)
    cfg.train.log = "tensorboard"
    run = train(cfg, tmp_path / "run", log=lambda *a: None)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    assert [s for s, _ in scalars["held_out/bpb"]] == [r["step"] for r in evals] == [20, 40]
    assert [round(v, 4) for _, v in scalars["held_out/bpb"]] == [round(r["val_bpb"], 4) for r in evals]
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, 41))  # every step
    final = records[-1]
    assert scalars["held_out/bpb_final"][0][1] == pytest.approx(final["val_bpb"], rel=1e-6)
    assert {"train/bpb", "lr", "held_out/bpb_network_final"} <= set(scalars)


def test_log_without_tensorboard_installed_is_one_line_before_any_work(corpus_file, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    out = tmp_path / "run"
    code = main(["train", str(corpus_file), "--max-steps", "2", "--log", "tensorboard", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'seqlab[tensorboard]'" in err
    assert not out.exists()


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit:  # argparse's version action exits 0 after printing
        pass
    assert capsys.readouterr().out.strip() == f"seqlab {__version__}"


def test_bash_completion_completes_verbs_options_and_paths(tmp_path):
    script = subprocess.run([sys.executable, "-m", "seqlab", "--print-completion", "bash"], capture_output=True,
                            text=True, check=True).stdout
    (tmp_path / "runs").mkdir()
    (tmp_path / "completion.bash").write_text(script)
    probe = """
source completion.bash
complete_line() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _shtab_seqlab; echo "${COMPREPLY[*]}"; }
complete_line seqlab ev
complete_line seqlab surprise --net
complete_line seqlab eval ru
complete_line seqlab train --softmax ad
"""
    lines = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert lines == ["eval", "--network-alone", "runs", "adaptive"]
