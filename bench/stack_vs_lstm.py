"""Does a stack help a recurrent net reverse sequences longer than any it was trained on? And a curriculum?

Trains the `stack` model (LSTM controller + differentiable stack) and a plain `lstm` with the same controller
size on task:reverse (lengths 1-10) for the same number of steps, each without and with `--curriculum`
(shortest examples first, the next length let in once the training error is below the threshold), over
--seeds seeds. Then measures the greedy answers on unseen examples of training lengths and on the held-out
examples (lengths 11-16, never seen in training): exact match (whole answer + newline right) and byte
accuracy (the share of its bytes right, position by position), and exact match per held-out length.

Two uncertainties, reported apart: each run's exact match is a rate over 500 examples, with its 95% Wilson
interval; the summary gives the mean over seeds with the spread between seeds (sd, range), the uncertainty
of training itself.

    python bench/stack_vs_lstm.py --steps 2000 --hidden 64 --threads 1 --seeds 3 --jobs 2
"""

import argparse
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from seqlab.config import CurriculumConfig, DataConfig, RunConfig, TrainConfig
from seqlab.data.tasks import answer_scores, format_rate, get_task, splits, task_accuracy
from seqlab.run import load, read_metrics
from seqlab.stats import seed_spread
from seqlab.train import train

TASK = "reverse"
MODES = ("plain", "curriculum")


def run_config(arch: str, mode: str, seed: int, args) -> RunConfig:
    model = {"n_hidden": args.hidden, "dropout": 0.0}
    if arch == "lstm":
        model["n_layer"] = 1
    else:
        model["memory_width"] = args.memory_width
    curriculum = CurriculumConfig(enabled=mode == "curriculum", threshold=args.threshold,
                                  check_every_steps=args.check_every)
    return RunConfig(arch=arch, model=model, data=DataConfig(paths=[f"task:{TASK}"]), curriculum=curriculum,
                     train=TrainConfig(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                                       lr=args.lr, seed=seed, eval_every_steps=max(1, args.steps // 5),
                                       eval_tokens=4096, threads=args.threads, device="cpu"))


def measure(arch: str, mode: str, seed: int, args, out: Path) -> dict:
    run_dir = train(run_config(arch, mode, seed, args), out / f"{arch}-{mode}-{seed}", log=lambda *a: None)
    run = load(run_dir)
    acc = task_accuracy(run.model, run.tokenizer, TASK, run.device)
    _, held_out = splits(TASK)
    low, high = get_task(TASK).held_out_lengths
    per_length = {n: answer_scores(run.model, run.tokenizer, [(p, a) for p, a in held_out if len(a) == n],
                                   run.device)["exact_match"] for n in range(low, high + 1)}
    records = read_metrics(run_dir)
    final = [r for r in records if r.get("event") == "final"][-1]
    lengthened = [r for r in records if r.get("event") == "curriculum"]
    return {"arch": arch, "mode": mode, "seed": seed, "params": run.model.num_params(), "seconds": final["elapsed"],
            "bpb": final["val_bpb"], "train_lengths": acc["exact_match_train_lengths"],
            "train_lengths_interval": acc["exact_match_train_lengths_interval"], "held_out": acc["exact_match"],
            "held_out_interval": acc["exact_match_interval"], "held_out_bytes": acc["byte_accuracy"],
            "per_length": per_length, "examples": acc["examples"],
            "reached": lengthened[-1]["max_length"] if lengthened else None,
            "all_lengths_at": next((r["step"] for r in lengthened
                                    if r["max_length"] == get_task(TASK).train_lengths[1]), None)}


def curriculum_cell(r: dict) -> str:
    if r["mode"] == "plain":
        return "–"
    top = get_task(TASK).train_lengths[1]
    if r["all_lengths_at"] is not None:
        return f"all by step {r['all_lengths_at']}"
    return f"up to {r['reached'] or get_task(TASK).train_lengths[0]} of {top}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=64, help="controller / LSTM hidden size (both)")
    p.add_argument("--memory-width", type=int, default=16, help="stack value width")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1337, help="the first seed; then --seed + 1, ...")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.1, help="curriculum: training error that lets a length in")
    p.add_argument("--check-every", type=int, default=50, help="curriculum: steps between checks")
    p.add_argument("--archs", default="lstm,stack")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    p.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    args = p.parse_args()

    task = get_task(TASK)
    (a, b), (c, d) = task.train_lengths, task.held_out_lengths
    seeds = [args.seed + i for i in range(args.seeds)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        runs = [(arch, mode, seed) for arch in args.archs.split(",") for mode in MODES for seed in seeds]
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(measure, *zip(*runs), [args] * len(runs), [out] * len(runs)))
    print(f"\ntask:{TASK}, {args.steps} steps each, hidden {args.hidden}, batch {args.batch_size}x{args.seq_len}, "
          f"seeds {', '.join(map(str, seeds))}; curriculum threshold {args.threshold} checked every "
          f"{args.check_every} steps; exact match of the greedy answer + newline, 95% Wilson interval over "
          f"{rows[0]['examples']} examples")
    print(f"\n| model | curriculum | seed | train s | held-out bpb | lengths {a}-{b} (unseen examples) | "
          f"lengths {c}-{d} (unseen lengths) | bytes right, {c}-{d} |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- | ---: |")
    for r in rows:
        print(f"| {r['arch']} | {curriculum_cell(r)} | {r['seed']} | {r['seconds']:.0f} | {r['bpb']:.4f} | "
              f"{format_rate(r['train_lengths'], r['train_lengths_interval'])} | "
              f"{format_rate(r['held_out'], r['held_out_interval'])} | {r['held_out_bytes']:.1%} |")

    lengths = " | ".join(f"len {n}" for n in range(c, d + 1))
    print("\nover seeds: mean exact match and the spread between seeds (sd, range: training randomness; each "
          "run's own Wilson interval, the sampling of examples, is in the table above)")
    print(f"| model | curriculum | lengths {a}-{b} | lengths {c}-{d}: mean | sd between seeds | range | {lengths} |")
    print("| --- " * (6 + d - c + 1) + "|")
    for arch in args.archs.split(","):
        for mode in MODES:
            group = [r for r in rows if r["arch"] == arch and r["mode"] == mode]
            held = seed_spread([r["held_out"] for r in group])
            train_lengths = seed_spread([r["train_lengths"] for r in group])
            per = " | ".join(f"{seed_spread([r['per_length'][k] for r in group])['mean']:.1%}"
                             for k in range(c, d + 1))
            print(f"| {arch} | {mode} | {train_lengths['mean']:.1%} | {held['mean']:.1%} | {100 * held['sd']:.1f} pts "
                  f"| {held['min']:.1%}-{held['max']:.1%} | {per} |")


if __name__ == "__main__":
    main()
