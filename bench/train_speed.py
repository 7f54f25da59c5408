"""Training tokens/s before and after train/speed.py, side by side, and whether learning stayed the same.

    python bench/train_speed.py --threads 2 --repeats 7
    python bench/train_speed.py --learn 1500 --seeds 2 --threads 1

Speed: for each --arch, two training loops over the bundled corpus on the same threads:
  - before: what training did until now: fp32 and the default (for-loop) AdamW;
  - after: the defaults now: train.precision=auto (bf16 autocast where the CPU has native bf16,
    attention kept fp32) and a fused AdamW;
  - with --compile, also after + torch.compile (its compile time shown apart).
They run in turn, --repeats times (the order flipped every repeat), each for about --tokens
training tokens (train/loop.py's train_step: batches, forward, backward, clipping, the optimizer).
Each repeat gives a ratio after/before of tokens/s (wall) and of tokens per CPU-second (process time,
robust to a shared machine's descheduling when --threads 1); the table shows the median ratio, its
min and max, and a 95% bootstrap interval of the median over repeats.

Learning (--learn STEPS): each setting trains STEPS steps (same batches for a seed) for each of
--seeds seeds, and the held-out bits per byte of the training evaluations (fixed subset) are shown
at equal steps; "after" learns the same if its gap to "before" at a seed is within the gap between
two seeds of "before".
"""

import argparse
import platform
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from unittest.mock import patch

from common import print_table, seqlab

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seqlab.config import RunConfig  # noqa: E402
from seqlab.data.batches import make_batcher  # noqa: E402
from seqlab.models import build_model, model_config  # noqa: E402
from seqlab.run import read_metrics  # noqa: E402
from seqlab.stats import bootstrap_statistic  # noqa: E402
from seqlab.train import loop  # noqa: E402
from seqlab.train.defaults import LADDERS, learning_rate  # noqa: E402
from seqlab.train.speed import uses_bf16  # noqa: E402

SETTINGS = {  # name -> (train.precision, fused AdamW, torch.compile)
    "before": ("fp32", False, False),
    "after": ("auto", True, False),
    "after + compile": ("auto", True, True),
}


def config(arch: str, threads: int, setting: str, seed: int = 1337) -> RunConfig:
    """The default transformer (4x128 recipe) or the default LSTM, with a setting's speed options."""
    cfg = RunConfig(arch=arch)
    if arch == "transformer":
        ladder = LADDERS["cpu"]
        cfg.model = ladder.model(128)
        cfg.train.batch_size, cfg.train.seq_len, cfg.train.lr = ladder.batch, ladder.context, learning_rate(128)
        cfg.train.min_lr_ratio, cfg.train.warmup_fraction = 0.1, 0.05
    precision, _, compile_ = SETTINGS[setting]
    cfg.train.precision, cfg.train.compile, cfg.train.threads, cfg.train.seed = precision, compile_, threads, seed
    cfg.train.device = "cpu"
    return cfg


def with_setting(setting: str):
    """The patches that make training take a setting's optimizer (the fused AdamW is not a config value)."""
    stack = ExitStack()
    stack.enter_context(patch.object(loop, "fused_adamw_supported", lambda device: SETTINGS[setting][1]))
    return stack


def build_loop(cfg: RunConfig, work: Path) -> "loop.TrainLoop":
    """A training loop over the config's data, ready to step (as train() builds it, without writing a run)."""
    quiet = lambda *a: None  # noqa: E731
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    _, tokenizer, data = loop.prepare_data(cfg, work, False, quiet)
    cfg.model = asdict(model_config(cfg.arch, {**cfg.model, "vocab_size": tokenizer.vocab_size}))
    model = build_model(cfg.arch, cfg.model)
    optimizer = loop.make_optimizer(model, cfg.train)
    batcher = make_batcher(model.carries_state, data.train, cfg.train.batch_size, cfg.train.seq_len,
                           cfg.train.seed, tokenizer=tokenizer)
    cfg.train.max_steps = 10**9
    pos = {"step": 0, "elapsed": 0.0, "tokens": 0, "done": False}
    return loop.TrainLoop(cfg, work, model, optimizer, batcher, data, tokenizer, loop.Metrics(work, enabled=False),
                          torch.device("cpu"), pos, None, quiet)


def timed_steps(train_loop, n_steps: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) over n_steps training steps."""
    tokens0 = train_loop.pos["tokens"]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        train_loop.train_step()
    tokens = train_loop.pos["tokens"] - tokens0
    return tokens / (time.perf_counter() - wall), tokens / (time.process_time() - cpu)


def interval_of_median(ratios: np.ndarray) -> str:
    low, high = bootstrap_statistic(lambda idx: float(np.median(ratios[idx])), len(ratios), block_len=1)
    return f"{np.median(ratios):.2f}x (min {ratios.min():.2f}, max {ratios.max():.2f}; 95% {low:.2f}-{high:.2f})"


def speed(arch: str, settings: list[str], args, work: Path) -> list[list]:
    loops, compile_s = {}, {}
    for name in settings:
        with with_setting(name):
            loops[name] = build_loop(config(arch, args.threads, name), work)
        t0 = time.perf_counter()
        for _ in range(3):  # warm-up: allocations, oneDNN's kernels, the compiler
            loops[name].train_step()
        compile_s[name] = time.perf_counter() - t0
    step_tokens = loops["before"].tc.batch_size * loops["before"].tc.seq_len
    n_steps = max(2, args.tokens // step_tokens)
    rates = {name: [] for name in settings}
    for rep in range(args.repeats):
        for name in (settings if rep % 2 == 0 else settings[::-1]):
            rates[name].append(timed_steps(loops[name], n_steps))
    rows = []
    base = np.array(rates["before"])
    for name in settings:
        r = np.array(rates[name])
        bf16 = uses_bf16(torch.device("cpu"), loops[name].tc.precision, arch)
        row = [arch, name, "bf16" if bf16 else "fp32", f"{np.median(r[:, 0]):,.0f}", f"{np.median(r[:, 1]):,.0f}"]
        if name == "before":
            rows.append(row + ["", "", ""])
        else:
            rows.append(row + [interval_of_median(r[:, 0] / base[:, 0]), interval_of_median(r[:, 1] / base[:, 1]),
                               f"{compile_s[name]:.0f}s" if SETTINGS[name][2] else ""])
    return rows


def learning(arch: str, steps: int, seeds: int, threads: int, work: Path) -> list[list]:
    curves = {}
    for seed in range(1, seeds + 1):
        for name in ("before", "after"):
            cfg = config(arch, threads, name, seed)
            cfg.train.max_steps, cfg.train.eval_every_steps = steps, max(1, steps // 5)
            with with_setting(name):
                run_dir = seqlab.train(cfg, work / f"{arch}-{name}-{seed}", log=lambda *a: None)
            evals = [r for r in read_metrics(run_dir) if r.get("event") == "eval"]
            curves[name, seed] = {r["step"]: r["val_bpb"] for r in evals}
    rows = []
    for step in sorted(curves["before", 1]):
        row = [arch, step]
        for seed in range(1, seeds + 1):
            row += [f"{curves['before', seed][step]:.4f}", f"{curves['after', seed][step]:.4f}"]
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="transformer,lstm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tokens", type=int, default=20_000, help="training tokens per timed run")
    p.add_argument("--compile", action="store_true", help="also time after + torch.compile")
    p.add_argument("--learn", type=int, default=0, metavar="STEPS", help="also train STEPS steps per setting and seed")
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    archs = args.arch.split(",")
    settings = list(SETTINGS) if args.compile else ["before", "after"]
    where = f"{platform.node()} ({platform.processor() or platform.machine()}, {args.threads} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for arch in archs for row in speed(arch, settings, args, Path(tmp))]
        print_table(f"training speed, {args.repeats} repeats of ~{args.tokens:,} tokens each, on {where}",
                    ["arch", "setting", "matmuls", "tokens/s", "tokens/CPU-s", "ratio (wall)", "ratio (CPU)",
                     "compile"], rows)
        if args.learn:
            header = ["arch", "step"] + [f"{s} seed {i}" for i in range(1, args.seeds + 1) for s in ("before", "after")]
            rows = [row for arch in archs for row in learning(arch, args.learn, args.seeds, args.threads, Path(tmp))]
            print()
            print_table(f"held-out bits per byte (fixed subset) at equal steps, on {where}", header, rows)


if __name__ == "__main__":
    main()
