"""Progress on a terminal: `bar` for any long verb, and the live training line."""

import sys
import time

from tqdm import tqdm


def bar(total=None, desc: str = "", unit: str = "B", enabled: bool | None = None, **options) -> tqdm:
    """A bar with rate and ETA on a terminal (tqdm); silent when stderr is a pipe or a file, or `enabled` is
    False (--json). Use it as tqdm: `with bar(total=n_bytes, desc="eval") as b: ... b.update(k)`."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled, leave=False,
                dynamic_ncols=True, **options)


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Progress:
    """Rewrites one line on a terminal; prints a line every 10 s into a pipe or file."""

    def __init__(self, budget_seconds, max_steps, enabled=True, stream=None):
        self.budget, self.max_steps, self.enabled = budget_seconds, max_steps, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.25 if self.tty else 10.0
        self.last_print = 0.0
        self.last_tokens, self.last_time = None, None
        self.rate = 0.0

    def update(self, pos: dict, loss, bytes_per_token: float, val_bpb) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last_print < self.every:
            return
        if self.last_tokens is not None:
            self.rate = (pos["tokens"] - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_tokens, self.last_time, self.last_print = pos["tokens"], now, now
        elapsed = pos["elapsed"]
        if self.budget:
            total = self.budget
        else:
            total = elapsed / max(pos["step"], 1) * self.max_steps
        parts = [f"step {pos['step']}" + (f"/{self.max_steps}" if self.max_steps else "")]
        if loss is not None:
            parts.append(f"loss {loss:.3f} ({loss / 0.6931471805599453 / bytes_per_token:.3f} bpb)")
        if val_bpb is not None:
            parts.append(f"held-out {val_bpb:.3f} bpb")
        parts.append(f"{self.rate / 1000:.1f}k tok/s" if self.rate else "… tok/s")
        parts.append(f"{clock(elapsed)} / {clock(total)} (ETA {clock(total - elapsed)})")
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.last_print:
            self.stream.write("\n")
            self.stream.flush()
