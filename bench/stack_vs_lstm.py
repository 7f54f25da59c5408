"""Does a stack help a recurrent net reverse sequences longer than any it was trained on?

Trains the `stack` model (LSTM controller + differentiable stack) and a plain
`lstm` with the same controller size on task:reverse (lengths 1-10) for the same
number of steps, then measures the greedy answers on unseen examples of training
lengths and on the held-out examples (lengths 11-16, never seen in training):
exact match (whole answer + newline right) and byte accuracy (the share of its
bytes right, position by position), and exact match per held-out length.

    python bench/stack_vs_lstm.py --steps 2000 --hidden 64 --threads 1
"""

import argparse
import tempfile
from pathlib import Path

from seqlab.config import DataConfig, RunConfig, TrainConfig
from seqlab.data.tasks import exact_match, get_task, splits, task_accuracy
from seqlab.run import load, read_metrics
from seqlab.train import train

TASK = "reverse"


def run_config(arch: str, args) -> RunConfig:
    model = {"n_hidden": args.hidden, "dropout": 0.0}
    if arch == "lstm":
        model["n_layer"] = 1
    else:
        model["memory_width"] = args.memory_width
    return RunConfig(arch=arch, model=model, data=DataConfig(paths=[f"task:{TASK}"]),
                     train=TrainConfig(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                                       lr=args.lr, seed=args.seed, eval_every_steps=max(1, args.steps // 5),
                                       eval_tokens=4096, threads=args.threads, device="cpu"))


def measure(arch: str, args, out: Path) -> dict:
    run_dir = train(run_config(arch, args), out / arch, log=lambda *a: None)
    run = load(run_dir)
    acc = task_accuracy(run.model, run.tokenizer, TASK, run.device)
    _, held_out = splits(TASK)
    per_length = {}
    for n in range(get_task(TASK).held_out_lengths[0], get_task(TASK).held_out_lengths[1] + 1):
        pairs = [(p, a) for p, a in held_out if len(a) == n]
        per_length[n] = exact_match(run.model, run.tokenizer, pairs, run.device)
    final = [r for r in read_metrics(run_dir) if r.get("event") == "final"][-1]
    return {"arch": arch, "params": run.model.num_params(), "seconds": final["elapsed"], "bpb": final["val_bpb"],
            "train_lengths": acc["exact_match_train_lengths"], "held_out": acc["exact_match"],
            "train_lengths_bytes": acc["byte_accuracy_train_lengths"], "held_out_bytes": acc["byte_accuracy"],
            "per_length": per_length}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=64, help="controller / LSTM hidden size (both)")
    p.add_argument("--memory-width", type=int, default=16, help="stack value width")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    args = p.parse_args()

    task = get_task(TASK)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        rows = [measure(arch, args, out) for arch in ("lstm", "stack")]
    (a, b), (c, d) = task.train_lengths, task.held_out_lengths
    print(f"\ntask:{TASK}, {args.steps} steps each, hidden {args.hidden}, batch {args.batch_size}x{args.seq_len}, "
          f"seed {args.seed}; greedy answers: exact match / byte accuracy of answer + newline")
    lengths = " | ".join(f"len {n}" for n in range(c, d + 1))
    print(f"| model | params | train s | held-out bpb | lengths {a}-{b} (unseen examples) | lengths {c}-{d} "
          f"(unseen lengths) | {lengths} (exact) |")
    print("| --- " * (6 + d - c + 1) + "|")
    for r in rows:
        per = " | ".join(f"{r['per_length'][n]:.1%}" for n in range(c, d + 1))
        print(f"| {r['arch']} | {r['params']:,} | {r['seconds']:.0f} | {r['bpb']:.4f} | "
              f"{r['train_lengths']:.1%} / {r['train_lengths_bytes']:.1%} | {r['held_out']:.1%} / "
              f"{r['held_out_bytes']:.1%} | {per} |")


if __name__ == "__main__":
    main()
