"""Probes of compress's network step, each by patching this process (no format, nothing kept): docs/compress.md's
"The worker's step measured apart".

    python bench/compress_probes.py attention RUN [--rows 256]
    python bench/compress_probes.py cache RUN --file F --round int8 [--bytes 100000] [--segment-tokens 390]
    python bench/compress_probes.py waits RUN --file F [--bytes 100000] [--segment-tokens 390]

attention: the bf16 step (lockstep._network_step) with its single-query attention, then with that attention replaced
by a copy of the query, in turn, three rounds: CPU-ms a step (mean, median) over 192 steps after 8; the difference is
what the attention costs in the step (its keys read from memory, where bench/attn_step.py's calls may find them in
cache). cache: compress_gap.py's table with the cache's keys and values rounded after each write (int8 or int4 with a
scale per row, head and position, fp8 e4m3, or none), or with the re-read dropped ("shift": the last half window's keys
and values kept as computed, at their old positions): what a cheaper cache or re-read costs in bits. waits: one
compress of the file's first --bytes, one thread, and how long the main thread waited for the network on the re-read
steps and on the plain ones, with the worker's CPU-seconds on each.
"""

import argparse
import runpy
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

from seqlab.compress import compress_bytes, lockstep  # noqa: E402
from seqlab.models import transformer  # noqa: E402
from seqlab.run import load  # noqa: E402


def attention(args) -> None:
    model = lockstep.with_bf16_linears(load(args.run).model)
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(200, args.rows)))
    flash = F.scaled_dot_product_attention

    def copied_query(q, k, v, **options):
        return q.clone() if q.shape[2] == 1 else flash(q, k, v, **options)

    def steps(attend) -> str:
        transformer.F.scaled_dot_product_attention = attend
        state = model.init_state(args.rows, lockstep.CPU, torch.bfloat16)
        ms = []
        for x in tokens:
            start = time.thread_time()
            _, state = lockstep._network_step(model, x, state, True)
            ms.append(1e3 * (time.thread_time() - start))
        transformer.F.scaled_dot_product_attention = flash
        return f"mean {np.mean(ms[8:]):.2f}, median {np.median(ms[8:]):.2f} CPU-ms a step"

    for _ in range(3):
        print(f"with the attention: {steps(flash)}; without: {steps(copied_query)}", flush=True)


def rounded(t: torch.Tensor, how: str) -> torch.Tensor:
    """t (rows, heads, positions, 32) rounded as `how` says, back in its dtype."""
    if how == "fp8":
        return t.to(torch.float8_e4m3fn).to(t.dtype)
    steps = {"int8": 127, "int4": 7}[how]
    scale = t.float().abs().amax(-1, keepdim=True).clamp_min(1e-12) / steps
    return (t.float() / scale).round().clamp(-steps, steps).mul(scale).to(t.dtype)


def cache(args) -> None:
    if args.round == "shift":
        features = transformer.Transformer.features

        def shifted(self, idx, state=None):
            if state is not None and state.length + idx.shape[1] > self.max_context:
                keep = self.max_context // 2
                for c in state.k + state.v:
                    c[:, :, :keep] = c[:, :, state.length - keep : state.length].clone()
                state.length, state.tokens = keep, state.tokens[:, -keep:]
            return features(self, idx, state)

        transformer.Transformer.features = shifted
    elif args.round != "none":
        forward = transformer.CausalSelfAttention.forward

        def rounding(self, x, cache=None, layer=0, last=0, every_query=False):
            start = cache.length if cache is not None else 0
            out = forward(self, x, cache, layer, last, every_query)  # this call read its own keys unrounded
            if cache is not None:
                for c in (cache.k[layer], cache.v[layer]):
                    c[:, :, start : start + x.shape[1]] = rounded(c[:, :, start : start + x.shape[1]], args.round)
            return out

        transformer.CausalSelfAttention.forward = rounding
    sys.argv = ["compress_gap.py", args.run, "--file", args.file, "--bytes", str(args.bytes), "--segment-tokens",
                str(args.segment_tokens)]
    runpy.run_path(str(BENCH / "compress_gap.py"), run_name="__main__")


def waits(args) -> None:
    steps, waited = [], []  # (a re-read, the worker's CPU-s) in call order; the main thread's waits in the same order
    network_step, result = lockstep._network_step, Future.result

    def timed_step(model, x, state, bf16):
        before, start = state.length, time.thread_time()
        out = network_step(model, x, state, bf16)
        steps.append((out[1].length < before, time.thread_time() - start))
        return out

    def timed_result(self, timeout=None):
        start = time.perf_counter()
        out = result(self, timeout)
        if threading.current_thread() is threading.main_thread() and isinstance(out, tuple):  # a network step's
            waited.append(time.perf_counter() - start)
        return out

    lockstep._network_step, Future.result = timed_step, timed_result
    torch.set_num_threads(1)
    lockstep.SEGMENT_TOKENS = args.segment_tokens
    run = load(args.run)
    start = time.perf_counter()
    compress_bytes(run, Path(args.file).read_bytes()[: args.bytes], 1)
    print(f"{args.bytes:,} bytes: {time.perf_counter() - start:.1f} s wall")
    for reread, name in ((True, "re-read"), (False, "plain")):
        mine = [i for i, (r, _) in enumerate(steps) if r == reread]
        print(f"{name} steps: {len(mine)}, the worker {sum(steps[i][1] for i in mine):.2f} CPU-s, the main thread "
              f"waited {sum(waited[i] for i in mine):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    probes = ap.add_subparsers(dest="probe", required=True)
    for name in ("attention", "cache", "waits"):
        p = probes.add_parser(name)
        p.add_argument("run")
        if name == "attention":
            p.add_argument("--rows", type=int, default=256)
            continue
        p.add_argument("--file", required=True)
        p.add_argument("--bytes", type=int, default=100_000)
        p.add_argument("--segment-tokens", type=int, default=390)
        if name == "cache":
            p.add_argument("--round", required=True, choices=["none", "int8", "int4", "fp8", "shift"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"attention": attention, "cache": cache, "waits": waits}[args.probe](args)


if __name__ == "__main__":
    main()
