"""Long verbs show a bar with rate and ETA on a terminal, and nothing when piped or with --json."""

import fcntl
import io
import os
import pty
import struct
import sys
import termios

from seqlab import progress
from seqlab.__main__ import main


class Terminal(io.StringIO):
    """A stream that says it is a terminal (what a bar checks), keeping what is written to it."""

    def isatty(self):
        return True


def shown_by(**options) -> str:
    stream = Terminal()
    with progress.bar(total=100, desc="work", file=stream, **options) as b:
        b.update(100)
    return stream.getvalue()


def test_bar_shows_on_a_terminal_only():
    assert "work" in shown_by()
    pipe = io.StringIO()
    with progress.bar(total=100, desc="work", file=pipe) as b:
        b.update(100)
    assert pipe.getvalue() == ""
    assert shown_by(enabled=False) == ""  # --json
    with progress.quiet():
        assert shown_by() == ""
    with progress.quiet(False):
        assert "work" in shown_by()


def test_training_line_is_a_bar_on_a_terminal_and_a_plain_line_in_a_pipe():
    pos = {"step": 50, "elapsed": 5.0, "tokens": 5000}
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        line = progress.Progress(None, 100, stream=stream, pos={"step": 0})
        line.update(pos, 1.5, 1.0, 2.25)
        line.close()
    assert "%|" in tty.getvalue() and "step 50/100" in tty.getvalue() and "held-out 2.250 bpb" in tty.getvalue()
    assert "%|" not in pipe.getvalue() and "\r" not in pipe.getvalue()
    assert pipe.getvalue().startswith("step 50/100 | loss 1.500 (2.164 bpb) | held-out 2.250 bpb")


def run_in_terminal(argv, env) -> str:
    """Run `argv` with a pseudo-terminal (120 columns) as its stdout and stderr; returns what it showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once (nothing of pytest's may run here)
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm draws nothing on 0 rows
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_eval_on_a_terminal_shows_a_bar(trained_runs, corpus_file):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shown = run_in_terminal([sys.executable, "-m", "seqlab", "eval", str(trained_runs["transformer"]),
                             str(corpus_file)], env)
    assert "eval:" in shown and "tok/s" in shown and "%|" in shown, shown
    assert "bits/byte" in shown  # and the table after it


def test_piped_runs_show_no_bar(trained_runs, corpus_file, capsys):
    assert main(["eval", str(trained_runs["transformer"]), str(corpus_file)]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "eval:" not in err


def terminal(monkeypatch) -> Terminal:
    """Make stderr a terminal in this process (the verbs then run in-process: no start-up each). Called in the
    test itself: pytest re-installs its own capture between a fixture's setup and the test."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_long_verbs_show_bars_on_a_terminal(trained_runs, corpus_file, tmp_path, monkeypatch):
    run, stream = str(trained_runs["transformer"]), terminal(monkeypatch)
    text = tmp_path / "text.txt"
    text.write_bytes(corpus_file.read_bytes()[:600])
    verbs = [
        (["score:", "fixes:"], ["surprise", run, text, "--top", 2]),
        (["compress:"], ["compress", run, text, "-o", tmp_path / "t.sqz"]),
        (["decompress:"], ["decompress", run, tmp_path / "t.sqz", "-o", tmp_path / "back.txt"]),
        (["novelty index: reading", "novelty index: sorting"], ["novelty", run, text]),
        (["export: tracing to ONNX", "export: checking with onnxruntime"], ["export", run, tmp_path / "m.onnx"]),
    ]
    for descs, argv in verbs:
        shown = main_output(argv, stream)
        for desc in descs:
            assert desc in shown, (desc, shown[-500:])


def main_output(argv, stream) -> str:
    stream.seek(0)
    stream.truncate()
    assert main([str(a) for a in argv]) == 0
    return stream.getvalue()


def test_json_runs_show_no_bar_on_a_terminal(trained_runs, corpus_file, tmp_path, monkeypatch):
    run, stream = str(trained_runs["transformer"]), terminal(monkeypatch)
    text = tmp_path / "text.txt"
    text.write_bytes(corpus_file.read_bytes()[:300])
    for argv in (["eval", run, text, "--json"], ["surprise", run, text, "--top", 1, "--json"],
                 ["novelty", run, text, "--json"]):
        assert main_output(argv, stream) == ""
    assert "eval:" in main_output(["eval", run, text], stream)  # the same stream shows a bar without --json
