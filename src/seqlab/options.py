"""What each option accepts, declared once: the value's kind and range give the parsing, the help and the error.

    p.add_argument("--max-steps", type=integer(min=1))
    p.add_argument("--temperature", type=number(min=0, max=2), default=0.8)
    p.add_argument("run", type=run_dir)
    p.add_argument("--html", type=output_file)

A bad value ends the command before any work with one line that names the option, e.g.
`seqlab train: error: argument --max-steps: must be >= 1, got 0 (see seqlab train -h)`, and exit status 2
(argparse turns the ArgumentTypeError raised here into the parser's error). The parser's help shows each
option's kind (`describe()`), so the help and the error say the same thing.

The same kinds check config fields (config.py `setting`), so `--batch-size 0`, `--set train.batch_size=0` and a
`--config` file refuse the value with the same words. Paths are checked for what they must be (a corpus, a run,
a file to read, a file to write) with a few stats and no model load. Standard library only: this runs at start-up.
"""

import argparse
import copy
import glob
import json
import math
import os
import re
from pathlib import Path

RUN_CONFIG = "config.json"  # what makes a directory a seqlab run (run.py CONFIG_FILE)
INDEX_INFO = "index.json"  # what makes a directory a seqlab index (vectors/index.py INFO)
HF_HOW_TO = "a folder written by transformers' save_pretrained: config.json, model.safetensors, tokenizer.json"


class Range:
    """A closed or open numeric range and how to say it."""

    def __init__(self, min=None, max=None, min_open=False, max_open=False):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def contains(self, value) -> bool:
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        if self.max is not None and (value >= self.max if self.max_open else value > self.max):
            return False
        return True

    def describe(self) -> str:
        show = lambda v: str(v) if isinstance(v, int) else f"{v:g}"  # noqa: E731
        low = None if self.min is None else f"{'>' if self.min_open else '>='} {show(self.min)}"
        high = None if self.max is None else f"{'<' if self.max_open else '<='} {show(self.max)}"
        if low and high:
            return (f"in {'(' if self.min_open else '['}{show(self.min)}, {show(self.max)}"
                    f"{')' if self.max_open else ']'}")
        return low or high or "any finite number"

    def pydantic(self) -> dict:
        """The same range as pydantic Field keywords (ge, gt, le, lt): the server's schema says what the CLI says."""
        bounds = {}
        if self.min is not None:
            bounds["gt" if self.min_open else "ge"] = self.min
        if self.max is not None:
            bounds["lt" if self.max_open else "le"] = self.max
        return bounds


class Kind:
    """An argparse `type=`: parse(text) -> value, problem(value) -> what is wrong or None, describe() for the help.

    `key` names the config key an option sets; errors then name it too.
    """

    kind = "value"
    key = None

    def __init__(self):
        self.__name__ = self.kind  # argparse names the type in some of its own messages

    def parse(self, text: str):
        return text

    def problem(self, value, text: str | None = None) -> str | None:
        """What is wrong with a parsed value (`text`: as the user typed it, to quote), or None."""
        return None

    def describe(self) -> str:
        return ""

    def __call__(self, text: str):
        try:
            value = self.parse(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(self._note(f"expected {self.phrase()}, got {text!r}")) from None
        problem = self.problem(value, text)
        if problem:
            raise argparse.ArgumentTypeError(self._note(problem))
        return value

    def phrase(self) -> str:
        return f"an {self.kind}" if self.kind[0] in "aeiou" else f"a {self.kind}"

    def with_key(self, key: str) -> "Kind":
        named = copy.copy(self)
        named.key = key
        return named

    def _note(self, message: str) -> str:
        return f"{message} (config key {self.key})" if self.key else message


class Numeric(Kind):
    """A number with a range; nan and inf are never a setting."""

    def __init__(self, **bounds):
        super().__init__()
        self.range = Range(**bounds)

    def problem(self, value, text=None):
        if isinstance(value, bool) or not isinstance(value, self.types):
            return f"expected {self.phrase()}, got {value!r}"
        shown = text.strip() if text is not None else f"{value:g}" if isinstance(value, float) else str(value)
        if not math.isfinite(value):
            return f"must be a finite number, got {shown}"
        if not self.range.contains(value):
            return f"must be {self.range.describe()}, got {shown}"
        return None

    def describe(self) -> str:
        described = self.range.describe()
        return self.phrase() if described == "any finite number" else f"{self.phrase()} {described}"


class integer(Numeric):  # noqa: N801 - reads as a type in add_argument(type=integer(min=1))
    kind = "integer"
    types = (int,)

    def parse(self, text: str) -> int:
        return int(text.strip())


class number(Numeric):  # noqa: N801
    kind = "number"
    types = (int, float)

    def parse(self, text: str) -> float:
        return float(text.strip())


class duration(number):  # noqa: N801
    """Seconds, or with a unit: 90s, 10m, 1.5h."""

    kind = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600}

    def parse(self, text: str) -> float:
        t = text.strip().lower()
        return float(t[:-1]) * self.UNITS[t[-1]] if t and t[-1] in self.UNITS else float(t)

    def phrase(self) -> str:
        return "a duration such as 90s, 10m or 1.5h"

    def describe(self) -> str:
        return f"a duration such as 90s, 10m or 1.5h, {self.range.describe()} seconds"


port = integer(min=0, max=65535)  # a TCP port; 0 = any free one
budget = duration(min=0, min_open=True)  # wall-clock training time
seed = integer(min=0, max=2**63 - 1 - 1024)  # per-row seeds are seed + i and must stay within torch's range


class one_of(Kind):  # noqa: N801
    """One of a few names."""

    kind = "choice"

    def __init__(self, *choices):
        super().__init__()
        self.choices = choices

    def problem(self, value, text=None):
        if value not in self.choices:
            return f"{value!r} is not one of: {', '.join(repr(c) if c == '' else c for c in self.choices)}"
        return None

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) if c == "" else c for c in self.choices)


class names(one_of):  # noqa: N801
    """A comma-separated list of distinct names from `choices` (e.g. --archs lstm,qrnn)."""

    kind = "list of names"

    def parse(self, text: str) -> list:
        return list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))

    def problem(self, value, text=None):
        if not value:
            return f"give at least one of: {', '.join(self.choices)}"
        unknown = [v for v in value if v not in self.choices]
        return f"{unknown[0]!r} is not one of: {', '.join(self.choices)}" if unknown else None

    def describe(self) -> str:
        return "comma-separated, from " + ", ".join(self.choices)


class pattern(Kind):  # noqa: N801
    """Text of a given shape: `check(text)` returns what is wrong, or None."""

    def __init__(self, kind: str, check, description: str):
        self.kind = kind
        super().__init__()
        self.check, self.description = check, description

    def problem(self, value, text=None):
        if not isinstance(value, str):
            return f"expected text, got {value!r}"
        return self.check(value)

    def describe(self) -> str:
        return self.description


class _Text(Kind):
    kind = "text"  # any text is a valid value: declared, so a sweep of every option knows it has no bad values


text = _Text()


def _device_problem(value: str):
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        return f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps"
    return None


def _tokenizer_problem(value: str):
    if value == "byte" or value.startswith("hf:"):  # hf:DIR is written by --init
        return None
    m = re.fullmatch(r"bpe:(\d+)", value)
    if not m:
        return f"unknown tokenizer {value!r}; use 'byte' or 'bpe:VOCAB' (e.g. bpe:1024)"
    if int(m.group(1)) < 258:
        return f"bpe vocabulary must be at least 258 (256 bytes + 1 merge + BOS), got {m.group(1)}"
    return None


def _key_value_problem(value: str):
    key, sep, _ = value.partition("=")
    return None if sep and key.strip() else f"expected KEY=VALUE, e.g. train.lr=0.001, got {value!r}"


def _name_problem(value: str):
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        return f"{value!r} is not a plain name (letters, digits, '_', '.', '-'; no '/')"
    return None


device = pattern("device", _device_problem, "auto, cpu, cuda, cuda:N or mps")
tokenizer = pattern("tokenizer", _tokenizer_problem, "byte or bpe:VOCAB, VOCAB >= 258")
key_value = pattern("KEY=VALUE", _key_value_problem, "")
plain_name = pattern("name", _name_problem, "a plain name: letters, digits, '_', '.', '-'")


# ---- paths ------------------------------------------------------------------------------------------------------

def is_run(path) -> bool:
    """Is `path` a seqlab run directory (its config.json is a seqlab config, whatever its format version)?"""
    try:
        config = json.loads((Path(path) / RUN_CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "format_version" in config and "arch" in config


def walk_files(root: Path):
    """The files under `root`, recursively, in sorted order; hidden entries and seqlab runs inside it are left out
    (a folder of text that also holds runs/ trains on the text, not on checkpoints)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not is_run(Path(dirpath) / d))
        yield from (Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))


def _empty(path: Path) -> bool:
    """A regular file of 0 bytes (a pipe or /dev/stdin reports 0 too, and is only known by reading it)."""
    return path.is_file() and path.stat().st_size == 0


class PathKind(Kind):
    """A path that must be something: `problem(path)` says what it is instead, in one sentence."""

    def parse(self, text: str) -> str:
        if not text:
            raise ValueError
        return text

    def phrase(self) -> str:
        return "a path"

    def describe(self) -> str:
        return self.description


class _Corpus(PathKind):
    kind = "corpus"
    description = "files, folders read recursively, or globs of text; an empty file is refused"

    def problem(self, value: str, text=None):
        if value.startswith("task:"):  # a built-in synthetic task: data/tasks.py checks its name
            return None
        if glob.has_magic(value):
            return None if glob.glob(value, recursive=True) else f"no files match {value!r}"
        path = Path(value)
        if not path.exists():
            return f"no such file or directory: {value}"
        if is_run(path):
            return (f"{value} is a seqlab run, not a corpus; continue it with `seqlab train --resume {value}`, "
                    f"or give the text it was trained on")
        if path.is_dir():
            return None if next(walk_files(path), None) else f"{value} holds no files; a corpus needs text"
        if _empty(path):
            return f"{value} is empty; a corpus needs text"
        return None


class _Run(PathKind):
    kind = "run"
    description = "a run directory written by seqlab train"

    def problem(self, value: str, text=None):
        path = Path(value)
        if not path.exists():
            return f"no such run directory: {value}"
        if not path.is_dir():
            return f"{value} is a file, not a run directory; give the folder `seqlab train` wrote"
        if not (path / RUN_CONFIG).exists():
            return f"{value} is not a seqlab run (no {RUN_CONFIG}); create one with `seqlab train`"
        if not is_run(path):
            return f"{value} is not a seqlab run (its {RUN_CONFIG} is not a seqlab config)"
        return None


class InputFile(PathKind):
    """A file to read. `empty`: what an empty file means to the verb, or None to refuse it."""

    kind = "file"

    def __init__(self, empty: str | None = None):
        super().__init__()
        self.empty = empty

    @property
    def description(self) -> str:
        return f"a file; an empty one {self.empty}" if self.empty else "a file; an empty one is refused"

    def problem(self, value: str, text=None):
        path = Path(value)
        if not path.exists():
            return f"no such file: {value}"
        if path.is_dir():
            what = "a seqlab run" if is_run(path) else "a directory"
            return f"{value} is {what}; give a file"
        if self.empty is None and _empty(path):
            return f"{value} is empty; there is nothing to read"
        return None


class _RunOrFile(PathKind):
    kind = "run or file"
    description = "a run directory, or a file; an empty file is refused"

    def problem(self, value: str, text=None):
        path = Path(value)
        if not path.exists():
            return f"no such file or run directory: {value}"
        if path.is_dir():
            return None if is_run(path) else f"{value} is a directory but not a seqlab run; give a run or a file"
        if _empty(path):
            return f"{value} is empty; there is nothing to read"
        return None


def _write_problem(value: str, what: str):
    """Refuse to write over a run, whatever the output."""
    if is_run(value):
        return f"{value} is a seqlab run; writing there would damage it: give another {what}"
    return None


class _OutputFile(PathKind):
    kind = "output file"
    description = "a file to write, replaced if it exists; its folder must exist"

    def problem(self, value: str, text=None):
        path = Path(value)
        if path.is_dir():
            return _write_problem(value, "file name") or f"{value} is a directory; give a file name"
        parent = path.parent
        if not parent.is_dir():
            return f"no such directory: {parent} (to write {value} in)"
        return None


class _OutputDir(PathKind):
    kind = "output folder"
    description = "a folder to write in, created if missing"

    def problem(self, value: str, text=None):
        path = Path(value)
        if path.exists() and not path.is_dir():
            return f"{value} is a file; give a folder"
        return _write_problem(value, "folder")


class _OutputPath(PathKind):
    kind = "output path"
    description = "a file or folder to write, never a run"

    def problem(self, value: str, text=None):
        return _write_problem(value, "path")


class _NewRun(PathKind):
    kind = "new run"
    description = "a folder for the new run, created if missing"

    def problem(self, value: str, text=None):
        path = Path(value)
        if path.exists() and not path.is_dir():
            return f"{value} is a file; give a folder for the run"
        if (path / RUN_CONFIG).exists():
            return f"{value} already holds a run; continue it with --resume {value} or pick another --out"
        return None


class _Checkpoint(PathKind):
    kind = "Hugging Face checkpoint"
    description = HF_HOW_TO

    def problem(self, value: str, text=None):
        path = Path(value)
        if not path.exists():
            return f"no such directory: {value}; give {HF_HOW_TO}"
        if not path.is_dir():
            return f"{value} is a file; give {HF_HOW_TO}"
        if is_run(path):
            return f"{value} is a seqlab run, not a Hugging Face checkpoint; continue it with --resume {value}"
        if not (path / "config.json").exists():
            return f"{value} is not a Hugging Face checkpoint (no config.json); give {HF_HOW_TO}"
        return None


class _Index(PathKind):
    kind = "index"
    description = "an index directory written by seqlab index"

    def problem(self, value: str, text=None):
        path = Path(value)
        how = f"build one with `seqlab index RUN FILES... --out {value}`"
        if not path.exists():
            return f"no such index directory: {value}; {how}"
        if not path.is_dir():
            return f"{value} is a file, not an index directory; {how}"
        if is_run(path):
            return f"{value} is a seqlab run, not an index; {how}"
        if not (path / INDEX_INFO).exists():
            return f"{value} is not a seqlab index (no {INDEX_INFO}); {how}"
        return None


corpus_path = _Corpus()
run_dir = _Run()
input_file = InputFile()
run_or_file = _RunOrFile()
output_file = _OutputFile()
output_dir = _OutputDir()
output_path = _OutputPath()
new_run = _NewRun()
hf_checkpoint = _Checkpoint()
index_dir = _Index()
