"""Curricula on the built-in tasks (`seqlab train task:NAME --curriculum`), and task accuracy's Wilson intervals."""

import json
import random

import numpy as np
import pytest

from seqlab.__main__ import main
from seqlab.checkpoint import checkpoint_metadata
from seqlab.config import CurriculumConfig
from seqlab.curriculum import Curriculum
from seqlab.data.tasks import TASKS, format_accuracy, prompt_length, splits
from seqlab.data.tokenizer import ByteTokenizer
from seqlab.run import load, read_metrics
from seqlab.stats import wilson
from seqlab.train import train

from conftest import TINY, tiny_config, train_interrupted_at


def quiet(*args):
    pass


@pytest.mark.parametrize("name", list(TASKS))
def test_prompt_length_reads_back_the_length_an_example_was_drawn_with(name):
    rng = random.Random(0)
    for n in range(2, 12):
        prompt, _ = TASKS[name].make(rng, n)
        assert prompt_length(name, prompt) == n


def byte_curriculum(threshold=0.1, name="reverse") -> Curriculum:
    pairs = splits(name)[0]
    tok = ByteTokenizer()
    docs = [np.concatenate([[tok.bos_id], tok.encode(f"{p}{a}\n".encode())]) for p, a in pairs]
    return Curriculum(CurriculumConfig(enabled=True, threshold=threshold), name, pairs, [len(d) for d in docs],
                      np.concatenate(docs), make_batcher=lambda tokens: tokens)


def test_the_curriculum_lengthens_only_when_the_error_is_below_the_threshold():
    c = byte_curriculum(threshold=0.1)
    assert c.max_length == 1
    assert not c.update(0.5) and not c.update(0.1) and c.max_length == 1  # at the threshold: not below it
    assert c.update(0.09) and c.max_length == 2
    while not c.done:
        assert c.update(0.0)
    assert c.max_length == TASKS["reverse"].train_lengths[1] and not c.update(0.0) and not c.due(50)


def test_the_curriculum_reads_only_the_examples_let_in():
    c = byte_curriculum()
    for max_length in (1, 3):
        c.max_length = max_length
        text = ByteTokenizer().decode(c.tokens()).decode()
        examples = text.splitlines()
        assert examples and all(len(e.split("|")[0]) <= max_length for e in examples)
        assert {len(e.split("|")[0]) for e in examples} == set(range(1, max_length + 1))
        assert len(c.tokens()) == sum(len(p) + len(a) + 2 for p, a in c.pairs if prompt_length("reverse", p)
                                      <= max_length)


def task_config(steps=40, threshold=0.5):
    cfg = tiny_config("task:reverse", "lstm", steps=steps)
    cfg.model = dict(TINY["lstm"])
    cfg.train.eval_every_steps = 20
    cfg.curriculum = CurriculumConfig(enabled=True, threshold=threshold, check_every_steps=10, examples=8)
    cfg.counts.enabled = False  # the final evaluation of 500 held-out examples is 5x faster without it
    return cfg


def scripted_errors(monkeypatch, errors: dict):
    """training_error returns errors[step] (1.0 where not given): the curriculum's decisions are then known."""
    seen = []

    def error(self, model, tokenizer, device, step):
        seen.append((step, self.max_length))
        return errors.get(step, 1.0)

    monkeypatch.setattr(Curriculum, "training_error", error)
    return seen


def test_training_lengthens_at_the_checks_whose_error_is_below_the_threshold(tmp_path, monkeypatch):
    seen = scripted_errors(monkeypatch, {20: 0.4, 30: 0.6, 40: 0.0})
    batches = []
    real = Curriculum.tokens
    monkeypatch.setattr(Curriculum, "tokens", lambda self: batches.append(self.max_length) or real(self))
    run = train(task_config(steps=50), tmp_path / "run", log=quiet)
    assert [s for s, _ in seen] == [10, 20, 30, 40, 50]
    events = [r for r in read_metrics(run) if r["event"] == "curriculum"]
    assert [(e["step"], e["max_length"], e["training_error"]) for e in events] == [(20, 2, 0.4), (40, 3, 0.0)]
    assert batches == [1, 2, 3]  # a new batcher over the examples let in, at each lengthening


def test_the_curriculum_is_saved_and_resumed_with_the_run(tmp_path, monkeypatch):
    scripted_errors(monkeypatch, {10: 0.0, 30: 0.2, 50: 0.0})
    whole = train(task_config(steps=60), tmp_path / "whole", log=quiet)
    train_interrupted_at(40, task_config(steps=60), tmp_path / "split", monkeypatch)
    trainer = json.loads(checkpoint_metadata(tmp_path / "split")["trainer"])
    assert trainer["curriculum"] == {"max_length": 3}  # let in at steps 10 and 30, before the interruption
    seen = scripted_errors(monkeypatch, {10: 0.0, 30: 0.2, 50: 0.0})
    train(task_config(steps=60), tmp_path / "split", resume=True, log=quiet)
    assert seen[0] == (50, 3)  # resumed at length 3, not back at the start
    events = [[(r["step"], r["max_length"]) for r in read_metrics(run) if r["event"] == "curriculum"]
              for run in (whole, tmp_path / "split")]
    assert events[0] == events[1] == [(10, 2), (30, 3), (50, 4)]
    finals = [[r for r in read_metrics(run) if r["event"] == "eval"][-1] for run in (whole, tmp_path / "split")]
    assert finals[1]["train_loss"] == pytest.approx(finals[0]["train_loss"], rel=1e-5)


def test_the_training_error_is_exact_match_on_training_examples_of_the_current_lengths(tmp_path):
    run = load(train(task_config(steps=10, threshold=0.5), tmp_path / "run", log=quiet))
    c = byte_curriculum()
    c.max_length = 2
    assert 0.0 <= c.training_error(run.model, run.tokenizer, run.device, 7) <= 1.0
    assert c.training_error(run.model, run.tokenizer, run.device, 7) == \
        c.training_error(run.model, run.tokenizer, run.device, 7)  # the same draw for the same step
    assert run.model.training is False  # left as it was found


@pytest.mark.parametrize("argv,message", [
    (["CORPUS", "--curriculum"], "--curriculum works on the built-in tasks"),
    (["task:reverse", "--curriculum", "--set", "curriculum.threshold=0"], "curriculum.threshold: must be in (0, 1]"),
])
def test_a_curriculum_that_cannot_run_is_a_one_line_error_before_anything_is_written(corpus_file, tmp_path, capsys,
                                                                                     argv, message):
    argv = [str(corpus_file) if a == "CORPUS" else a for a in argv]
    assert main(["train", *argv, "--arch", "lstm", "--max-steps", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and not (tmp_path / "r").exists()


def test_task_accuracy_carries_wilson_intervals():
    acc = {"task": "add", "examples": 500, "exact_match": 0.412, "exact_match_interval": list(wilson(206, 500)),
           "exact_match_train_lengths": 1.0, "exact_match_train_lengths_interval": list(wilson(500, 500)),
           "exact_match_lengths": [9, 12], "train_lengths": [1, 8]}
    line = format_accuracy(acc)
    assert "41.2% [37.0%-45.6%] on held-out lengths 9-12" in line and "100.0% [99.2%-100.0%]" in line
    assert "Wilson" in line
