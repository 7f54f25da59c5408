"""Do style vectors help? The same model, with and without --style-by dir, on many short documents of two sources.

The sources are two kinds of text already on a Debian machine: the license texts of
/usr/share/common-licenses (English legal prose) and Linux UAPI C headers from /usr/include/linux
(sorted, so the selection is the same every time). Each is cut into short documents of whole lines
(about --doc-bytes each), one file per document, one directory per source: train/licenses,
train/headers. Every tenth document goes to val/licenses or val/headers instead and is held out whole
(--val): scored from its start with nothing of its own text before it, so only the style can say at
once whether prose or C follows; val/licenses reads in the style of train/licenses (models/style.py).

Both runs train the same model, same seed, for the same number of steps (--max-steps; or the same
wall-clock --budget, which on a busy machine buys different numbers of steps); the styled one learns a
vector per directory. Prints held-out bits per byte of both, mixed with the count model (the run's
figure) and of the network alone. The LSTM's state carries across documents through training, so
there the text before a document mostly tells its source already; the style is news only where a
held-out document starts from nothing.

    taskset -c 1 python bench/styles_two_source.py                       # lstm, 800 steps each, 1 thread (4 min)
    taskset -c 1 python bench/styles_two_source.py --arch transformer    # (13 min)
    taskset -c 1 python bench/styles_two_source.py --max-steps 0 --budget 2m
"""

import argparse
import tempfile
from pathlib import Path

from seqlab.config import DataConfig, RunConfig, StyleConfig, TrainConfig, parse_duration
from seqlab.run import read_metrics
from seqlab.train import train

SOURCES = {"licenses": (Path("/usr/share/common-licenses"), "*"), "headers": (Path("/usr/include/linux"), "*.h")}
SEQ_LEN = 64  # tokens per training window; the transformer's context is the same, so every position is trained
MODELS = {  # small enough to learn something in a few minutes on one CPU core
    "lstm": {"n_layer": 1, "n_hidden": 128, "dropout": 0.0},
    "transformer": {"n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": SEQ_LEN, "dropout": 0.0},
}
VAL_EVERY = 10  # every tenth document is held out


def short_documents(folder: Path, pattern: str, doc_bytes: int, max_bytes: int) -> list[bytes]:
    """The folder's files (sorted) cut into runs of whole lines of at least doc_bytes, max_bytes in all."""
    docs, total = [], 0
    for path in sorted(p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink()):
        doc = b""
        for line in path.read_bytes().splitlines(keepends=True):
            doc += line
            if len(doc) >= doc_bytes:
                docs.append(doc)
                total += len(doc)
                doc = b""
                if total >= max_bytes:
                    return docs
    return docs


def build_corpus(root: Path, doc_bytes: int, max_bytes: int) -> tuple[Path, Path]:
    """root/train/SOURCE/NNNNN.txt and root/val/SOURCE/NNNNN.txt for both sources; returns (train, val)."""
    for source, (folder, pattern) in SOURCES.items():
        docs = short_documents(folder, pattern, doc_bytes, max_bytes)
        for split in ("train", "val"):
            (root / split / source).mkdir(parents=True)
        for i, doc in enumerate(docs):
            split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
            (root / split / source / f"{i:05d}.txt").write_bytes(doc)
        n_val = len(docs) // VAL_EVERY
        print(f"{source}: {len(docs) - n_val:,} training and {n_val:,} held-out documents, "
              f"{sum(map(len, docs)):,} bytes", flush=True)
    return root / "train", root / "val"


def run_config(train_dir: Path, val_dir: Path, args, style_by: str) -> RunConfig:
    cfg = RunConfig(arch=args.arch, model=dict(MODELS[args.arch]),
                    data=DataConfig(paths=[str(train_dir)], val_paths=[str(val_dir)]))
    cfg.train = TrainConfig(budget_seconds=0.0 if args.max_steps else args.budget, max_steps=args.max_steps,
                            batch_size=16, seq_len=SEQ_LEN, lr=args.lr, seed=args.seed, threads=args.threads,
                            device="cpu", eval_every_seconds=args.budget / 4, eval_every_steps=args.max_steps // 4)
    cfg.style = StyleConfig(by=style_by, dim=args.style_dim)
    return cfg


def measure(train_dir: Path, val_dir: Path, args, style_by: str, out: Path) -> dict:
    run_dir = train(run_config(train_dir, val_dir, args, style_by), out / (style_by or "plain"), log=lambda *a: None)
    return [r for r in read_metrics(run_dir) if r["event"] == "final"][-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-steps", type=int, default=800, help="train each for exactly N steps (0: use --budget)")
    p.add_argument("--budget", default="2m", help="training wall-clock per model when --max-steps is 0, e.g. 60s, 2m")
    p.add_argument("--arch", default="lstm", choices=sorted(MODELS))
    p.add_argument("--doc-bytes", type=int, default=128, help="bytes of each short document, at least (whole lines)")
    p.add_argument("--max-bytes", type=int, default=150_000, help="bytes of each source at most")
    p.add_argument("--style-dim", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    args.budget = parse_duration(args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, val_dir = build_corpus(Path(tmp) / "corpus", args.doc_bytes, args.max_bytes)
        results = {label: measure(train_dir, val_dir, args, by, Path(tmp))
                   for label, by in (("plain", ""), ("styled", "dir"))}
    each = f"{args.max_steps} steps" if args.max_steps else f"{args.budget:.0f}s"
    print(f"\n{args.arch} {MODELS[args.arch]}, {each} each, seed {args.seed}, {args.threads} thread(s)")
    print(f"{'model':<22} {'steps':>7} {'seconds':>8} {'held-out bpb':>13} {'network alone':>14}")
    for label, r in results.items():
        name = "no styles" if label == "plain" else f"--style-by dir ({args.style_dim})"
        print(f"{name:<22} {r['step']:>7,} {r['elapsed']:>8.0f} {r['val_bpb']:>13.4f} {r['val_bpb_network']:>14.4f}")
    for what, key in (("held-out bpb", "val_bpb"), ("the network's held-out bpb", "val_bpb_network")):
        print(f"styles change {what} by {results['styled'][key] - results['plain'][key]:+.4f} bits per byte")


if __name__ == "__main__":
    main()
