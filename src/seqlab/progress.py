"""Progress on a terminal: `bar` for any long verb, and the live training line (both tqdm).

Bars go to stderr and show only when it is a terminal: piped or redirected output
stays clean, and `--json` (or a caller's `with quiet():`) turns them off too.
"""

import sys
import time
from contextlib import contextmanager

from tqdm import tqdm

_quiet = 0  # > 0 inside `quiet()`


@contextmanager
def quiet(on: bool = True):
    """No bars inside this block (the CLI wraps --json runs in it; API callers may too)."""
    global _quiet
    _quiet += bool(on)
    try:
        yield
    finally:
        _quiet -= bool(on)


def showing(enabled: bool | None = None, file=None) -> bool:
    """Whether a bar would show: not turned off, not inside `quiet()`, and writing to a terminal."""
    return enabled is not False and not _quiet and (file or sys.stderr).isatty()


def bar(total=None, desc: str = "", unit: str = "B", enabled: bool | None = None, file=None, **options) -> tqdm:
    """A bar with rate and ETA on a terminal (tqdm); silent when stderr is a pipe or a file, inside `quiet()`,
    or when `enabled` is False (--json). Use it as tqdm: `with bar(total=n_bytes, desc="eval") as b: b.update(k)`.
    `file` is for tests (any stream with isatty)."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not showing(enabled, file), leave=False,
                dynamic_ncols=True, file=file, **options)


def write(message: str) -> None:
    """Print a line without tearing the bars that are showing (tqdm.write)."""
    tqdm.write(message)


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Progress:
    """The training line. On a terminal, a tqdm bar over the budget (seconds, or steps with --max-steps) with the
    step, training loss, held-out bits per byte, tokens/s and the time left; into a pipe or file, the same
    figures as a plain line every 10 s, so a log keeps the run's course."""

    EVERY_PIPED = 10.0

    def __init__(self, budget_seconds, max_steps, enabled=True, stream=None, pos: dict | None = None):
        self.budget, self.max_steps, self.enabled = budget_seconds, max_steps, enabled
        self.stream = stream or sys.stderr
        self.last_print = 0.0
        self.last_tokens, self.last_time = None, None
        self.rate = 0.0
        self.bar = None
        if enabled and showing(file=self.stream):
            done = (pos or {}).get("elapsed" if budget_seconds else "step", 0)
            self.bar = tqdm(total=budget_seconds or max_steps, initial=done, desc="train", file=self.stream,
                            unit="s" if budget_seconds else "step", dynamic_ncols=True, mininterval=0.25, leave=None,
                            bar_format="{desc} {percentage:3.0f}%|{bar:10}| {elapsed}<{remaining}{postfix}")

    def update(self, pos: dict, loss, bytes_per_token: float, val_bpb) -> None:
        now = time.monotonic()
        done = (pos["elapsed"] if self.budget else pos["step"]) >= (self.budget or self.max_steps)
        if not self.enabled or (now - self.last_print < (0.25 if self.bar else self.EVERY_PIPED) and not done):
            return
        if self.last_tokens is not None:
            self.rate = (pos["tokens"] - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_tokens, self.last_time, self.last_print = pos["tokens"], now, now
        parts = [f"step {pos['step']}" + (f"/{self.max_steps}" if self.max_steps else "")]
        if loss is not None:
            parts.append(f"loss {loss:.3f} ({loss / 0.6931471805599453 / bytes_per_token:.3f} bpb)")
        if val_bpb is not None:
            parts.append(f"held-out {val_bpb:.3f} bpb")
        parts.append(f"{self.rate / 1000:.1f}k tok/s" if self.rate else "… tok/s")
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(parts), refresh=False)
            self.bar.update(min(pos["elapsed"] if self.budget else pos["step"], self.bar.total) - self.bar.n)
            return
        elapsed = pos["elapsed"]
        total = self.budget or elapsed / max(pos["step"], 1) * self.max_steps
        parts.append(f"{clock(elapsed)} / {clock(total)} (ETA {clock(total - elapsed)})")
        self.stream.write(" | ".join(parts) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
