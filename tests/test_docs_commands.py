"""Every shell command in README.md and docs/*.md runs as written, with tiny budgets.

The convention the docs follow:
- Each fenced ```bash block is run, line by line (a line ending in a backslash continues), in a fresh
  sandbox folder per page. The sandbox holds the files the docs name (`FIXTURES`: books/, notes/, code/,
  corpus/, notes.txt, page.html, main.c, data.jsonl, ...), a tiny trained run at runs/latest, and the
  repository's bench/ (a quick benchmark runs as written; one of minutes is marked not run).
- A block right after a line `<!-- not run: REASON -->` is not run (a GPU, ../shared data, a server that
  runs until stopped, a benchmark of minutes, an install). The test lists them with their reasons.
- Budgets shrink, nothing else changes (`tiny`): `--budget T` and `--max-steps N` become `--max-steps 3`,
  and `seqlab train` / `seqlab compare` get small batches, so a training command takes seconds.
- A plain `seqlab ...` line runs in this process (seqlab.__main__.main: no interpreter start-up each);
  a line with shell syntax (pipes, redirection, `&&`, variables, globs) or another program runs in bash,
  with this Python's bin folder first on PATH and HOME set to the sandbox.
"""

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import structured_text, tiny_config

from seqlab.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
SHELL_SYNTAX = set("|&;<>$`*?~(){}")


def blocks(page: Path):
    """(line number, commands, reason not run or None) for each ```bash block of a page."""
    text = page.read_text()
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        line = text.count("\n", 0, match.start()) + 1
        commands = [c.strip() for c in match.group(1).replace("\\\n", " ").splitlines()]
        yield line, [c for c in commands if c and not c.startswith("#")], reason and reason.group(1)


def tiny(command: str) -> str:
    """The same command with a tiny budget (see the module's docstring)."""
    command = re.sub(r"--budget[ =]\S+|--max-steps[ =]\d+", "--max-steps 3", command)
    words = shlex.split(command, comments=True) if command.startswith("seqlab ") else []
    budget = "" if "--max-steps" in words else " --max-steps 3"  # the default budget is minutes
    if words[:2] == ["seqlab", "train"] and "--series" in words:  # a table's windows are the series' own
        command = _before_comment(command) + budget + " --batch-size 4"
    elif words[:2] == ["seqlab", "train"] and "--resume" not in words:
        command = _before_comment(command) + budget + " --batch-size 4 --seq-len 32"
    elif words[:2] == ["seqlab", "compare"]:
        command = _before_comment(command) + budget + " --set train.batch_size=4 --set train.seq_len=32"
    return command


def _before_comment(command: str) -> str:
    """The command without its trailing `# comment`, as written (quotes and globs untouched)."""
    quote = None
    for i, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command.rstrip()


def in_process(command: str) -> list[str] | None:
    """argv for main() when the line is a plain seqlab command, else None (bash runs it)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    words = list(lexer)
    if words[:1] != ["seqlab"] or any(set(w) <= SHELL_SYNTAX for w in words) or set(command) & set("$`*?~"):
        return None
    return words[1:]


# ---- the sandbox ----------------------------------------------------------------------------------------------

def shakespeare(start: int, n: int) -> str:
    from seqlab.data.corpus import default_corpus_path

    return Path(default_corpus_path()).read_text()[start : start + n]


def c_code(seed: int, n_functions: int) -> str:
    import random

    rng = random.Random(seed)
    names = ["count", "index", "total", "limit", "offset", "size"]
    out = ["#include <stdio.h>\n\n"]
    for i in range(n_functions):
        a, b = rng.sample(names, 2)
        out.append(f"static int f{i}(int {a}, int {b})\n{{\n    if ({a} > {b}) {{\n        return {a} - {b};\n"
                   f"    }}\n    return ({a} + {b}) * {rng.randint(2, 9)};\n}}\n\n")
    return "".join(out)


FIXTURES = {
    "books/part1.txt": lambda: shakespeare(0, 8000),
    "books/part2.txt": lambda: shakespeare(8000, 8000),
    "notes/a.md": lambda: "# Notes\n\n" + structured_text(60, seed=1),
    "notes/b.md": lambda: "# More\n\n" + structured_text(60, seed=2),
    "code/util.c": lambda: c_code(1, 40),
    "code/main.c": lambda: c_code(2, 40),
    "corpus/poems/sonnets.txt": lambda: shakespeare(20000, 4000),
    "corpus/poems/songs.txt": lambda: shakespeare(24000, 4000),
    "corpus/code/a.c": lambda: c_code(3, 30),
    "corpus/code/b.c": lambda: c_code(4, 30),
    "notes.txt": lambda: shakespeare(30000, 1200),
    "other.txt": lambda: shakespeare(32000, 1500),
    "sample.txt": lambda: shakespeare(2000, 600),
    "play.txt": lambda: shakespeare(40000, 2000),
    "scene.txt": lambda: shakespeare(44000, 300).replace("the", "teh", 1),
    "page.html": lambda: "<html><body>\n" + "".join(f"<p>line <b>{i}</b> of the page</p>\n" for i in range(8))
    + "<p>a tag <b>never closed</p>\n</body></html>\n",
    "main.c": lambda: c_code(5, 3).replace("return (", "return ((", 1),
    "big.log": lambda: "".join(f"2026-12-0{1 + i % 9} 10:{i % 60:02d}:00 INFO request {i} served in {i % 7} ms\n"
                               for i in range(60)),
    "data.jsonl": lambda: "".join('{"id": %d, "text": %s}\n' % (i, __import__("json").dumps(line))
                                  for i, line in enumerate(shakespeare(50000, 6000).split("\n\n"))),
}


@pytest.fixture(scope="module")
def sandbox_template(tmp_path_factory) -> Path:
    from seqlab.train import train
    from seqlab.train.cli import link_latest

    root = tmp_path_factory.mktemp("docs-sandbox")
    for name, make in FIXTURES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(make())
    (root / "bench").symlink_to(ROOT / "bench")  # `python bench/X.py ...` runs the repository's benchmarks
    cfg = tiny_config(root / "books", "transformer", steps=30)
    run = train(cfg, root / "runs" / "tiny", log=lambda *a: None)
    cfg.data.paths = ["books"]  # relative, as a user's run would record it (the sandbox moves)
    (run / "config.json").write_text(cfg.describe())
    link_latest(run)
    return root


def run_page(page: Path, template: Path, tmp_path: Path, monkeypatch) -> list[str]:
    """Run every runnable command of `page` in a fresh sandbox; returns the failures."""
    sandbox = tmp_path / "sandbox"
    shutil.copytree(template, sandbox, symlinks=True)
    monkeypatch.chdir(sandbox)
    env = {**os.environ, "HOME": str(sandbox), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    failures = []
    for line, commands, reason in blocks(page):
        for command in commands if reason is None else []:
            argv, small = in_process(tiny(command)), tiny(command)
            if argv is not None:
                out = io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    code = main(argv)
                output = out.getvalue()
            else:
                done = subprocess.run(["bash", "-c", small], cwd=sandbox, env=env, capture_output=True, text=True,
                                      timeout=120)
                code, output = done.returncode, done.stdout + done.stderr
            if code not in (0, None):
                failures.append(f"{page.name}:{line}: `{command}` (ran as `{small}`) exited {code}:\n"
                                f"{output[-1500:]}")
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_of_the_page_runs(page, sandbox_template, tmp_path, monkeypatch):
    failures = run_page(page, sandbox_template, tmp_path, monkeypatch)
    assert not failures, "\n\n".join(failures)


def test_commands_not_run_say_why_and_are_listed(capsys):
    skipped = [(page.relative_to(ROOT), line, reason, len(commands))
               for page in PAGES for line, commands, reason in blocks(page) if reason is not None]
    runnable = sum(len(c) for page in PAGES for _, c, reason in blocks(page) if reason is None)
    assert all(reason for *_, reason, _ in skipped)
    assert runnable >= 20  # the README's tour and the guides are run, not only described
    with capsys.disabled():
        print(f"\ndocs commands: {runnable} run, {sum(n for *_, n in skipped)} not run:")
        for page, line, reason, n in skipped:
            print(f"  {page}:{line} ({n} command(s)): {reason}")


def test_the_convention_itself(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```bash\nseqlab eval runs/latest \\\n  --json   # a comment\n```\n\n"
                    "<!-- not run: needs a GPU -->\n```bash\nseqlab train --device cuda\n```\n")
    assert list(blocks(page)) == [(3, ["seqlab eval runs/latest    --json   # a comment"], None),
                                  (9, ["seqlab train --device cuda"], "needs a GPU")]
    assert tiny("seqlab train books/ --budget 10m   # ten minutes") == \
        "seqlab train books/ --max-steps 3 --batch-size 4 --seq-len 32"
    assert tiny("seqlab train --resume runs/latest --budget 1m") == "seqlab train --resume runs/latest --max-steps 3"
    assert tiny("seqlab train code/ --out runs/code") == \
        "seqlab train code/ --out runs/code --max-steps 3 --batch-size 4 --seq-len 32"
    assert in_process("seqlab eval runs/latest --json  # figure") == ["eval", "runs/latest", "--json"]
    assert in_process("seqlab eval runs/latest > out.txt") is None
    assert in_process("seqlab train notes/*.md") is None
    assert tiny("seqlab train notes/ code/*.c  # all C") == \
        "seqlab train notes/ code/*.c --max-steps 3 --batch-size 4 --seq-len 32"
