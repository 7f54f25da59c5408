"""The network's step as compress takes it (lockstep._network_step), fp32 against bf16, in turn, per thread.

    python bench/compress_step.py RUN [--rows 256] [--steps 128] [--rounds 2]

Steps a batch of --rows random byte tokens through the run's network from an empty cache, as compress's
segments in lockstep do (the cache re-read from its last half window when it fills), one torch thread, and
prints CPU-ms per step (time.thread_time: the machine may be shared) and the median plain step (no re-read),
fp32 then bf16 (autocast, a bf16 cache, the linear layers' weights cast to bf16 once: step_in_bf16's and
with_bf16_linears'), --rounds times in turn.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.compress import lockstep  # noqa: E402
from seqlab.run import load  # noqa: E402


def steps_in(model, tokens: torch.Tensor, bf16: bool) -> np.ndarray:
    """CPU-seconds of each step of tokens (steps, rows)."""
    rows = tokens.shape[1]
    state = model.init_state(rows, lockstep.CPU, torch.bfloat16) if bf16 else model.init_state(rows, lockstep.CPU)
    out = []
    for x in tokens:
        t = time.thread_time()
        _, state = lockstep._network_step(model, x, state, bf16)
        out.append(time.thread_time() - t)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load(args.run).model
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(args.steps, args.rows)))
    twin = lockstep.with_bf16_linears(model)
    for _ in range(args.rounds):
        for bf16 in (False, True):
            ms = 1e3 * steps_in(twin if bf16 else model, tokens, bf16)
            print(f"{'bf16' if bf16 else 'fp32'}, {args.rows} rows: {ms.mean():.2f} CPU-ms a step, median "
                  f"{np.median(ms):.2f} ({args.rows / ms.mean():.1f} tokens per CPU-ms)", flush=True)


if __name__ == "__main__":
    main()
