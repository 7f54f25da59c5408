"""Every option of every verb is checked before work starts: a sweep generated from the parser itself.

The verbs and their options come from `seqlab.__main__.build_parser()`, so an option added tomorrow is swept
the day it is added, and one that does not declare what it accepts (a `type=` from seqlab.options, or
`choices=`) fails `test_every_option_declares_what_it_accepts`. Each bad value of an option's kind must end the
command with exit status 2 and one line on stderr naming the option: no traceback, nothing on stdout, nothing
written. The verbs' functions are replaced by a stub that fails the test if reached: a bad value is refused
while the command line is read, before any model is loaded.
"""

import contextlib
import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqlab.__main__ as entry
from seqlab.intervals import block_kind
from seqlab.options import InputFile, Numeric, PathKind, one_of, pattern, text

NUMBERS = ["0", "-1", "nan", "inf", "1e30", "abc"]
NOT_A_CHOICE = ["not-a-choice"]

# The sandbox the sweep runs in (its cwd): one path of each sort, by name.
FIXTURES = {
    "missing": "missing.txt",
    "missing_parent": "no/such/folder/out.txt",
    "empty": "empty.txt",
    "dir": "folder",  # a folder holding one text file
    "empty_dir": "hollow",
    "corpus": "corpus.txt",
    "run": "run",  # a trained run
    "index": "index",  # a folder with an index.json (seqlab index)
}
# Which of them each path kind refuses (an input file that may be empty also accepts "empty").
PATH_BAD = {
    "corpus": {"missing", "empty", "empty_dir", "run"},
    "run": {"missing", "empty", "dir", "empty_dir", "corpus"},
    "file": {"missing", "empty", "dir", "run"},
    "run or file": {"missing", "empty", "dir"},
    "output file": {"missing_parent", "dir", "run"},
    "output folder": {"empty", "run"},
    "output path": {"run"},
    "new run": {"empty", "run"},
    "Hugging Face checkpoint": {"missing", "empty", "dir", "empty_dir", "corpus", "run"},
    "index": {"missing", "empty", "dir", "empty_dir", "corpus", "run"},
}
PATTERN_BAD = {
    "device": ["gpu9", "cuda:x"],
    "tokenizer": ["words", "bpe:x", "bpe:10"],
    "KEY=VALUE": ["novalue", "=1"],
    "name": ["a/b", ".."],
    "feature": ["nope", "regex:("],
    "event": ["SPX", "SPX:up=1", "SPX:within=0", "SPX:up=1%,down=0.5%"],
    "states": ["nowhere", "before+before", "both+inside"],
}
BLOCK_BAD = ["0", "-3", "paragraph"]  # eval --block: auto, document or a length in bytes >= 1
# A valid value of each kind, for the positional arguments beside the one under test.
VALID = {"run": ["run"], "file": ["corpus.txt"], "run or file": ["run", "corpus.txt"], "corpus": ["corpus.txt"],
         "output path": ["exported"], "index": ["index"], "text": ["a query"]}


def subparsers(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def takes_value(action) -> bool:
    return action.nargs != 0 and action.__class__.__name__ not in ("_HelpAction", "_VersionAction")


def bad_numbers(kind: Numeric) -> list[str]:
    """The sweep's numbers that the option's declared range refuses (never nan, inf or text)."""
    bad = []
    for value in NUMBERS:
        try:
            number = float(value)
        except ValueError:
            bad.append(value)
            continue
        integer_only = kind.kind == "integer"
        if not math.isfinite(number) or (integer_only and value == "1e30") or not kind.range.contains(number):
            bad.append(value)
    return bad


def bad_values(action) -> list[str] | None:
    """Each bad value of the option's declared kind; None when it declares none."""
    kind = action.type
    if action.choices is not None and kind is None:
        return NOT_A_CHOICE
    if isinstance(kind, Numeric):
        return bad_numbers(kind)
    if isinstance(kind, PathKind) and kind.kind in PATH_BAD:
        refused = PATH_BAD[kind.kind] - ({"empty"} if isinstance(kind, InputFile) and kind.empty else set())
        return [FIXTURES[name] for name in sorted(refused)]
    if isinstance(kind, one_of):
        return NOT_A_CHOICE
    if isinstance(kind, pattern) and kind.kind in PATTERN_BAD:
        return PATTERN_BAD[kind.kind]
    if kind is block_kind:
        return BLOCK_BAD
    if type(kind) is type(text):  # text itself, or a copy of it that names its config key
        return []  # any text is valid (a prompt, a stop string, a host name)
    return None


def name_of(action) -> str:
    return action.option_strings[-1] if action.option_strings else action.metavar or action.dest


def argv_for(verb: str, sub, target, value: str) -> list[str]:
    """`seqlab VERB` with valid positional arguments, and `value` for the target action."""
    argv = [verb]
    for action in sub._actions:
        if action.option_strings:
            continue
        if action is target:
            argv.append(value)
        elif action.nargs not in ("*", "?"):
            kind = getattr(action.type, "kind", None)
            assert kind in VALID, f"seqlab {verb} {name_of(action)}: add a valid {kind} to VALID in this test"
            argv += VALID[kind] if action.nargs == "+" else VALID[kind][:1]
    if target.option_strings:
        argv += [target.option_strings[-1], value]
    return argv


def sweep_cases():
    cases, undeclared = [], []
    for verb, sub in subparsers(PARSER).items():
        for action in sub._actions:
            if not takes_value(action):
                continue
            values = bad_values(action)
            if values is None:
                undeclared.append(f"seqlab {verb} {name_of(action)}")
                continue
            cases += [pytest.param(verb, action.dest, value, id=f"{verb} {name_of(action)} {value}")
                      for value in values]
    return cases, undeclared


PARSER = entry.build_parser()
CASES, UNDECLARED = sweep_cases()


def test_every_option_declares_what_it_accepts():
    assert not UNDECLARED, (
        f"these options take a value but do not declare its kind: {', '.join(UNDECLARED)}; give each a type= "
        f"from seqlab.options (integer(min=..), number(..), run_dir, input_file, output_file, text, ...) or choices=, "
        f"and add a new kind's bad values to this test")


def test_the_sweep_covers_every_verb():
    assert {case.values[0] for case in CASES} == set(subparsers(entry.build_parser()))
    assert len(CASES) > 200


# ---- the sandbox --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, trained_runs, corpus_file):
    root = tmp_path_factory.mktemp("sandbox")
    (root / FIXTURES["empty"]).write_bytes(b"")
    (root / FIXTURES["dir"]).mkdir()
    (root / FIXTURES["dir"] / "a.txt").write_text("some text\n")
    (root / FIXTURES["empty_dir"]).mkdir()
    shutil.copy(corpus_file, root / FIXTURES["corpus"])
    shutil.copytree(trained_runs["lstm"], root / FIXTURES["run"])
    (root / FIXTURES["index"]).mkdir()
    (root / FIXTURES["index"] / "index.json").write_text("{}")
    return root


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def stubbed_parser():
    """The real parser, with every verb's function replaced by one that fails the test if a bad value reaches it."""
    parser = entry.build_parser()

    def reached(args):
        raise AssertionError(f"seqlab {args.verb} ran with a bad value: it must be refused as the command is read")

    for sub in subparsers(parser).values():
        sub.set_defaults(func=reached)
    return parser


def run_cli(capsys, argv):
    capsys.readouterr()
    code = entry.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, name: str, argv):
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)
    assert name in lines[0], (argv, name, lines[0])
    assert out == "", (argv, out)


@pytest.mark.parametrize("verb,dest,value", CASES)
def test_a_bad_value_is_one_line_exit_2_and_writes_nothing(verb, dest, value, sandbox, stubbed_parser, capsys,
                                                           monkeypatch):
    monkeypatch.chdir(sandbox)
    monkeypatch.setattr(entry, "build_parser", lambda verb=None: stubbed_parser)
    sub = subparsers(stubbed_parser)[verb]
    action = next(a for a in sub._actions if a.dest == dest and takes_value(a))
    argv = argv_for(verb, sub, action, value)
    before = tree(sandbox)
    code, out, err = run_cli(capsys, argv)
    assert_refused(code, out, err, name_of(action) if action.option_strings else action.metavar or action.dest, argv)
    assert tree(sandbox) == before, f"{argv} wrote {set(tree(sandbox)) ^ set(before)}"


def numeric_actions():
    return [(verb, a) for verb, sub in subparsers(PARSER).items()
            for a in sub._actions if a.option_strings and isinstance(a.type, Numeric)]


@st.composite
def out_of_range(draw):
    """An option with a declared range, and a value outside it."""
    verb, action = draw(st.sampled_from([(v, a) for v, a in numeric_actions()
                                         if a.type.range.min is not None or a.type.range.max is not None]))
    r = action.type.range
    sides = [s for s, bound in (("low", r.min), ("high", r.max)) if bound is not None]
    side = draw(st.sampled_from(sides))
    if action.type.kind == "integer":
        value = draw(st.integers(max_value=r.min - (0 if r.min_open else 1)) if side == "low"
                     else st.integers(min_value=r.max + (0 if r.max_open else 1)))
    else:
        value = draw(st.floats(max_value=r.min, exclude_max=not r.min_open, allow_nan=False, allow_infinity=False)
                     if side == "low" else
                     st.floats(min_value=r.max, exclude_min=not r.max_open, allow_nan=False, allow_infinity=False))
    return verb, action, repr(value)


@settings(max_examples=150, deadline=None)
@given(case=out_of_range())
def test_any_value_outside_a_declared_range_is_refused(case):
    verb, action, value = case
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_, contextlib.redirect_stderr(err):  # OPTION=VALUE: "-1e+16" is a value
        PARSER.parse_args([verb, f"{action.option_strings[-1]}={value}"])
    err = err.getvalue()
    assert exit_.value.code == 2
    assert action.option_strings[-1] in err and f"must be {action.type.range.describe()}" in err, err


# ---- the help says what the error says -------------------------------------------------------------------------

def test_the_help_shows_what_each_option_accepts_and_what_an_empty_file_means():
    for verb, sub in subparsers(entry.build_parser()).items():
        help_text = " ".join(sub.format_help().split())
        for action in sub._actions:
            describe = getattr(action.type, "describe", None)
            if describe and describe():
                assert " ".join(describe().split()) in help_text, (verb, name_of(action))
            if isinstance(action.type, PathKind) and action.type.kind in ("file", "corpus", "run or file"):
                assert "empty" in describe(), (verb, name_of(action))  # an empty file's meaning, in the -h


def test_the_server_takes_the_ranges_the_cli_declares():
    from seqlab.config import MAX_TOKENS, SAMPLES, SamplingConfig, kind_of
    from seqlab.options import seed
    from seqlab.serve.schemas import CompletionRequest

    properties = CompletionRequest.model_json_schema()["properties"]
    generate = subparsers(entry.build_parser())["generate"]
    flags = {a.dest: a.type for a in generate._actions}
    expected = {name: kind_of(SamplingConfig, name) for name in ("temperature", "top_k", "top_p",
                                                                  "repetition_penalty")}
    expected |= {"max_tokens": MAX_TOKENS, "n": SAMPLES, "seed": seed}
    words = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    for name, kind in expected.items():
        assert flags[name] is kind, name  # the flag's type is the declared kind itself
        schema = properties[name].get("anyOf", [properties[name]])[0]
        assert {words[k]: v for k, v in kind.range.pydantic().items()} == \
            {k: v for k, v in schema.items() if k in words.values()}, name


# ---- --set and --config say what the flag says ------------------------------------------------------------------

def keyed_flags():
    """train's flags that set a config key, with each bad value of the key's kind."""
    train = subparsers(entry.build_parser())["train"]
    for action in train._actions:
        if getattr(action.type, "key", None):
            for value in bad_values(action):
                yield pytest.param(action.option_strings[-1], action.type.key, value,
                                   id=f"{action.option_strings[-1]} {value}")


def json_value(text_value: str):
    try:
        return json.loads(text_value)
    except ValueError:
        return float(text_value) if text_value in ("nan", "inf") else text_value


def problem_of(line: str, flag: str) -> str:
    """What is wrong, as the option's kind says it, without where the value came from or the value itself."""
    for where in (f"argument {flag}: ", f"({flag}): "):
        if where in line:
            said = line.strip().split(where, 1)[1]
            return said.split(", got")[0].split(" (config key")[0].split(" (see seqlab")[0]
    raise AssertionError(f"{line!r} does not name {flag}")


@pytest.mark.parametrize("flag,key,value", list(keyed_flags()))
def test_set_and_config_give_the_flags_error(flag, key, value, sandbox, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(sandbox)
    before = tree(sandbox)
    code, out, flag_err = run_cli(capsys, ["train", "corpus.txt", flag, value])
    assert_refused(code, out, flag_err, flag, flag)
    assert key in flag_err  # the flag's error names the key it sets
    base = ["train", "corpus.txt", "--max-steps", "1", "--out", tmp_path / "never"]
    code, out, set_err = run_cli(capsys, base + ["--set", f"{key}={value}"])
    assert_refused(code, "", set_err, key, "--set")
    section, _, name = key.rpartition(".")
    config = {section: {name: json_value(value)}} if section else {name: json_value(value)}
    (tmp_path / "c.json").write_text(json.dumps(config))
    code, out, config_err = run_cli(capsys, base + ["--config", tmp_path / "c.json"])
    assert_refused(code, "", config_err, key, "--config")
    for err in (set_err, config_err):
        assert problem_of(err, flag) == problem_of(flag_err, flag), (flag_err, err)
    assert "c.json" in config_err
    assert tree(sandbox) == before and not (tmp_path / "never").exists()


def test_every_flag_that_sets_a_key_is_swept_through_set_and_config():
    keys = {p.values[1] for p in keyed_flags()}
    assert {"train.batch_size", "train.lr", "train.seq_len", "data.val_fraction", "train.seed", "style.dim",
            "data.tokenizer", "train.device", "arch"} <= keys


# ---- the table ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needles", [
    (["--max-steps", "0"], ["--max-steps", "must be >= 1, got 0"]),
    (["--max-steps", "-3"], ["--max-steps", "must be >= 1, got -3"]),
    (["--max-steps", "5", "--batch-size", "0"], ["--batch-size", "must be >= 1"]),
    (["--max-steps", "5", "--lr", "nan"], ["--lr", "finite"]),
])
def test_a_bad_training_value_is_refused_before_any_work(argv, needles, sandbox, capsys, monkeypatch):
    monkeypatch.chdir(sandbox)
    before = tree(sandbox)
    code, out, err = run_cli(capsys, ["train", "corpus.txt"] + argv)
    assert_refused(code, out, err, needles[0], argv)
    assert all(n in err for n in needles), err
    assert tree(sandbox) == before and not (sandbox / "runs").exists()


def test_a_run_given_as_the_corpus_is_refused(sandbox, capsys, monkeypatch):
    monkeypatch.chdir(sandbox)
    code, out, err = run_cli(capsys, ["train", "run", "--max-steps", "1"])
    assert_refused(code, out, err, "corpus", "train run")
    assert "run is a seqlab run, not a corpus" in err and "--resume run" in err
    assert not (sandbox / "runs").exists()


def test_a_run_inside_a_corpus_folder_is_skipped(sandbox, tmp_path):
    from seqlab.data.corpus import resolve_paths

    shutil.copytree(sandbox / "run", tmp_path / "texts" / "runs" / "a")
    (tmp_path / "texts" / "book.txt").write_text("a book\n")
    assert resolve_paths([str(tmp_path / "texts")]) == [tmp_path / "texts" / "book.txt"]


def test_a_run_as_corpus_in_a_config_file_is_refused(sandbox, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(sandbox)
    (tmp_path / "c.json").write_text(json.dumps({"data": {"paths": ["run"]}}))
    code, out, err = run_cli(capsys, ["train", "--config", tmp_path / "c.json", "--max-steps", "1"])
    assert code == 2 and "data.paths (CORPUS): run is a seqlab run" in err, err
    assert not (sandbox / "runs").exists()


def test_a_corpus_refused_while_reading_it_leaves_no_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "short.txt").write_text("just a few bytes here\n" * 2)
    for _ in range(2):  # the second try says the same, not "already holds a run"
        code, out, err = run_cli(capsys, ["train", "short.txt", "--max-steps", "1", "--arch", "lstm", "--out", "r"])
        assert code == 2 and "shorter than one context window" in err, err
    assert not (tmp_path / "r").exists()


def test_an_empty_file_compresses_to_a_header_with_no_bits_per_byte(sandbox, capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, out, err = run_cli(capsys, ["compress", sandbox / "run", empty])
    assert code == 0, err
    assert "0 bytes" in err and "no bits/byte figure" in err and "bits/byte," not in err, err
    packed = tmp_path / "empty.txt.sqz"
    assert 0 < packed.stat().st_size < 100
    code, out, err = run_cli(capsys, ["decompress", sandbox / "run", packed, "-o", tmp_path / "back.txt"])
    assert code == 0 and (tmp_path / "back.txt").read_bytes() == b"", err
    assert "no bits/byte figure" in err


def test_config_ranges_hold_for_the_python_api(tmp_path, corpus_file):
    from seqlab.config import SamplingConfig
    from seqlab.errors import SeqlabError
    from seqlab.train import train

    from conftest import tiny_config

    cfg = tiny_config(corpus_file)
    cfg.train.batch_size = 0
    with pytest.raises(SeqlabError, match=r"train.batch_size \(--batch-size\): must be >= 1, got 0"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(SeqlabError, match=r"top_p \(--top-p\): must be in \(0, 1\]"):
        SamplingConfig(top_p=0).validate()


def test_a_model_value_is_checked_where_the_config_is_built(capsys, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    for argv, needle in ((["--arch", "conv", "--set", "model.kernel_size=1"], "model.kernel_size: must be >= 2"),
                         (["--arch", "transformer", "--set", "model.n_head=3"], "must be a multiple of n_head"),
                         (["--arch", "lstm", "--set", "model.dropout=1"], "model.dropout: must be in [0, 1)")):
        code, out, err = run_cli(capsys, ["train", "corpus.txt", "--max-steps", "1"] + argv)
        assert_refused(code, out, err, needle, argv)
    assert not (sandbox / "runs").exists()


def test_a_pipe_is_read_not_judged_by_its_size(tmp_path):
    from seqlab.options import corpus_path, input_file

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # as <(command) or /dev/stdin: its size says 0 until it is read
    assert input_file(str(fifo)) == str(fifo) and corpus_path(str(fifo)) == str(fifo)


@pytest.mark.parametrize("item", ["data=x", "model=3", "train.nope=1", "train.lr="])
def test_a_set_that_names_no_value_is_refused(item, capsys, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    code, out, err = run_cli(capsys, ["train", "corpus.txt", "--max-steps", "1", "--arch", "lstm", "--set", item])
    assert_refused(code, out, err, item.partition("=")[0].rpartition(".")[2] or item, item)
    assert not (sandbox / "runs").exists()


def test_valid_values_still_pass(sandbox, stubbed_parser, monkeypatch):
    """The kinds refuse what they must, not more: the defaults and ordinary values parse."""
    monkeypatch.chdir(sandbox)
    args = stubbed_parser.parse_args(["train", "corpus.txt", "folder", "task:reverse", "--budget", "90s",
                                      "--threads", "0", "--device", "cuda:1", "--tokenizer", "bpe:1024",
                                      "--set", "train.lr=0.01", "--out", "folder"])
    assert args.budget == 90 and args.threads == 0 and args.corpus == ["corpus.txt", "folder", "task:reverse"]
    args = stubbed_parser.parse_args(["compress", "run", "empty.txt", "-o", "new.sqz"])
    assert args.file == "empty.txt"
    args = stubbed_parser.parse_args(["generate", "run", "--temperature", "0", "--seed", "0", "--top-k", "0"])
    assert args.temperature == 0 and args.seed == 0
