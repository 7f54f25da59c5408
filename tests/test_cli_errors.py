"""Bad input: one line on stderr, exit status 2, no traceback, nothing lost."""

import argparse
import json
import subprocess
import sys

import pytest

from seqlab.__main__ import main


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop anything printed before (e.g. a fixture training a run)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_missing_path(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "nope.txt", "--max-steps", 1), "no such file")


def test_glob_matching_nothing(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "train", f"{tmp_path}/*.xyz", "--max-steps", 1), "no files match")


def test_unreadable_file(capsys, tmp_path, monkeypatch):
    from pathlib import Path

    f = tmp_path / "secret.txt"
    f.write_text("x" * 100)
    real = Path.read_bytes

    def deny(self):  # permission bits do not stop root, so the OS refusal is simulated
        if self.name == "secret.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert_one_line_error(*run_cli(capsys, "train", f, "--max-steps", 1), "cannot read", "Permission denied")


def test_empty_corpus(capsys, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "empty.txt", "--max-steps", 1), "empty")


def test_corpus_shorter_than_a_window(capsys, tmp_path):
    (tmp_path / "short.txt").write_text("just a few bytes here\n" * 2)
    code, err = run_cli(capsys, "train", tmp_path / "short.txt", "--max-steps", 1, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "shorter than one context window")


def test_not_a_run(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "generate", tmp_path), "not a seqlab run")
    assert_one_line_error(*run_cli(capsys, "eval", tmp_path / "missing"), "no such run")


def test_conflicting_flags(capsys, tmp_path, trained_runs):
    assert_one_line_error(*run_cli(capsys, "train", "--budget", "1m", "--max-steps", 5), "not allowed with")
    assert_one_line_error(*run_cli(capsys, "train", "--resume", trained_runs["lstm"], "--arch", "lstm"),
                          "cannot be combined")
    (tmp_path / "b").write_text("b")
    assert_one_line_error(*run_cli(capsys, "generate", trained_runs["lstm"], "--prompt", "a",
                                   "--prompt-file", tmp_path / "b"), "not allowed with")


def test_incompatible_checkpoint_version(capsys, tmp_path, trained_runs):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(trained_runs["lstm"], run)
    config = json.loads((run / "config.json").read_text())
    config["format_version"] = 0
    (run / "config.json").write_text(json.dumps(config))
    assert_one_line_error(*run_cli(capsys, "info", run), "format")


def test_existing_run_is_not_overwritten(capsys, trained_runs, corpus_file):
    before = (trained_runs["lstm"] / "checkpoint.safetensors").read_bytes()
    assert_one_line_error(*run_cli(capsys, "train", corpus_file, "--out", trained_runs["lstm"], "--max-steps", 1),
                          "already holds a run")
    assert (trained_runs["lstm"] / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("argv,needle", [
    (["train", "--budget", "soon"], "duration"),
    (["train", "--arch", "gru9", "--max-steps", "1"], "not one of: transformer"),
    (["train", "--tokenizer", "words", "--max-steps", "1"], "unknown tokenizer"),
    (["train", "--set", "train.nope=1"], "unknown config key"),
    (["train", "--set", "model.n_layer=two"], "expected an integer"),
    (["train", "--val-fraction", "1.5", "--max-steps", "1"], "val-fraction"),
    (["train", "--config", "/nonexistent.json"], "no such file"),
    (["train", "--set", "counts.match_orders=16,8", "--max-steps", "1"], "match_orders must increase"),
])
def test_bad_values(capsys, tmp_path, argv, needle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run_cli(capsys, *argv), needle)


def test_bad_sampling_values(capsys, trained_runs):
    assert_one_line_error(*run_cli(capsys, "generate", trained_runs["lstm"], "--top-p", "0"), "top-p")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "seqlab", "info", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def parser_verbs() -> dict:
    """{verb: its sub-parser}, as the parser itself holds them."""
    from seqlab.__main__ import build_parser

    (verbs,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(verbs.choices)


def test_every_verb_module_is_on_the_command_line():
    """The modules that define add_cli, found in the source, are exactly the ones the parser adds verbs from."""
    from pathlib import Path

    import seqlab
    from seqlab.__main__ import VERBS

    src = Path(seqlab.__file__).parent
    # a verb is a top-level module, or a package with add_cli in one of its files (train/cli.py)
    modules = {p.relative_to(src).parts[0].removesuffix(".py")
               for p in src.rglob("*.py") if "\ndef add_cli(" in p.read_text()}
    assert modules == set(VERBS)
    named = {"evaluate": ["eval"], "compress": ["compress", "decompress"]}  # a module's verbs, where not its name
    assert sorted(parser_verbs()) == sorted(v for module in modules for v in named.get(module, [module]))


def test_help_lists_every_verb():
    proc = subprocess.run([sys.executable, "-m", "seqlab", "-h"], capture_output=True, text=True)
    assert proc.returncode == 0
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert set(parser_verbs()) <= listed, set(parser_verbs()) - listed


@pytest.mark.parametrize("verb", sorted(parser_verbs()))
def test_every_verb_given_a_missing_path_is_a_one_line_error(capsys, tmp_path, verb, monkeypatch):
    """Each of the verb's positional arguments (a run, a corpus, a file) names a path that does not exist."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # a serve that failed to refuse returns
    monkeypatch.chdir(tmp_path)  # nothing is written where the tests run
    positionals = [a for a in parser_verbs()[verb]._actions if not a.option_strings]
    missing = [str(tmp_path / f"missing-{a.dest}") for a in positionals]
    code, err = run_cli(capsys, verb, *missing)
    assert_one_line_error(code, err, f"seqlab {verb}: error:", "missing-")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
