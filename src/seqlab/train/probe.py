"""Time a few training steps of the candidate sizes on this machine, before the auto choice sizes a model.

The machine a user trains on is not the developers': a laptop, a shared VM, a GPU. The auto
choice (defaults.py) needs tokens per second for each candidate width; instead of assuming
them, `measure` takes them here, for a few seconds at the start of the budget:

- the candidates are the device's ladder (defaults.LADDERS), narrowest first, each timed as
  training runs it (the same optimizer, precision and batch shape, random tokens);
- after each width it checks whether that width still fits the budget that is left; a wider
  one would fit even less, so it stops at the first that does not (a 10-minute budget times
  three or four widths, under a second each);
- on a CPU with several cores it times every width with all of them and with one thread, and
  keeps the faster: on a busy machine one thread can be several times faster than two (threads
  that wait at every barrier for a core someone else holds), on an idle one two are ~1.6x faster.

The same code runs on a GPU; there the candidates differ and thread counts are not tried.
"""

import time
from dataclasses import dataclass, field

import torch

from ..config import TrainConfig
from ..models import build_model
from ..scoring import TorchThreads
from .defaults import VOCAB, Ladder, corpus_allows, fits
from .speed import autocast, uses_bf16

MIN_SECONDS = 0.25  # timed per candidate (at least one step), after a warm-up step
MAX_SHARE = 0.05  # never more of the budget than this
PROBE_MIN_BUDGET = 60.0  # a shorter budget fits none but the smallest width on any CPU: nothing to measure


@dataclass
class Measured:
    """Training tokens per second by width (the best thread count's) and what was tried."""

    rates: dict[int, float] = field(default_factory=dict)
    threads: dict[int, int] = field(default_factory=dict)  # width -> the thread count that gave its rate
    tried: list[int] = field(default_factory=list)  # thread counts tried
    seconds: float = 0.0

    def describe(self, ladder: Ladder, device_type: str) -> str:
        """What was measured, for the auto choice's one line."""
        rates = ", ".join(f"{ladder.describe(w)} {r / 1000:.3g}k" for w, r in self.rates.items())
        where = "this GPU" if device_type == "cuda" else f"this machine ({' and '.join(map(str, self.tried))} " \
            f"thread{'s' * (self.tried != [1])} tried)"
        return f"measured on {where}: {rates} tokens/s (a {self.seconds:.1f} s probe, taken from the budget)"


def time_steps(ladder: Ladder, width: int, device: torch.device, threads: int, precision: str = "auto",
               min_seconds: float = MIN_SECONDS) -> float:
    """Training tokens per second of the ladder's transformer at `width`: optimizer steps as train/loop.py takes
    them (AdamW, autocast, gradient clipping), on random byte tokens, after one warm-up step."""
    from .loop import make_optimizer

    torch.manual_seed(0)
    model = build_model("transformer", {**ladder.model(width), "vocab_size": VOCAB}).to(device).train()
    optimizer = make_optimizer(model, TrainConfig())
    batch = torch.randint(0, VOCAB, (ladder.batch, ladder.context + 1), device=device)
    bf16 = uses_bf16(device, precision, "transformer")

    def step():
        with autocast(device, bf16):
            loss, _ = model.loss(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with TorchThreads(threads):
        step()
        steps, t0 = 0, time.perf_counter()
        while steps < 1 or time.perf_counter() - t0 < min_seconds:
            step()
            steps += 1
        return steps * ladder.batch * ladder.context / (time.perf_counter() - t0)


def measure(ladder: Ladder, budget_seconds: float, corpus_bytes: int, device: torch.device,
            thread_options: list[int], precision: str = "auto", timer=None) -> Measured:
    """Rates of the ladder's widths, narrowest first, up to the first that does not fit what is left of the
    budget (or that the corpus rules out). `timer(ladder, width, device, threads, precision)` -> tokens/s."""
    timer = timer or time_steps
    out, start = Measured(tried=list(thread_options)), time.monotonic()
    for width in ladder.widths:
        if not corpus_allows(ladder, width, corpus_bytes):
            break
        by_threads = {n: timer(ladder, width, device, n, precision) for n in thread_options}
        best = max(by_threads, key=by_threads.get)
        out.rates[width], out.threads[width] = by_threads[best], best
        out.seconds = time.monotonic() - start
        if not fits(ladder, width, out.rates[width] * (budget_seconds - out.seconds)) or \
                out.seconds > MAX_SHARE * budget_seconds:
            break
    return out
