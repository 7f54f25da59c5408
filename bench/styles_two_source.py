"""Do style vectors help? The same model, with and without --style-by, on a two-source corpus.

The corpus is two kinds of text already on a Debian machine, one directory each: the license texts
of /usr/share/common-licenses (English legal prose) and as many bytes of Linux UAPI C headers from
/usr/include/linux (sorted, so the selection is the same every time). Both runs train the same model
for the same wall-clock budget (or, with --max-steps, the same number of steps: on a busy machine
a budget buys different numbers of steps from run to run); the styled one learns a vector per directory (--style-by dir) and
reads each held-out document in its own directory's style. Prints held-out bits per byte of both,
mixed with the count model (the run's figure) and of the network alone.

    python bench/styles_two_source.py --budget 2m [--arch lstm] [--threads 1]
    python bench/styles_two_source.py --max-steps 600
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from seqlab.config import DataConfig, RunConfig, StyleConfig, TrainConfig, parse_duration
from seqlab.run import read_metrics
from seqlab.train import train

LICENSES = Path("/usr/share/common-licenses")
HEADERS = Path("/usr/include/linux")
MODELS = {  # small enough to learn something in a minute or two on one CPU core
    "lstm": {"n_layer": 1, "n_hidden": 128, "dropout": 0.0},
    "transformer": {"n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.0},
}


def copy_capped(files: list[Path], target: Path, max_bytes: int) -> int:
    target.mkdir(parents=True)
    total = 0
    for path in files:
        size = path.stat().st_size
        if total + size > max_bytes:
            break
        shutil.copyfile(path, target / path.name)
        total += size
    return total


def build_corpus(root: Path, max_bytes: int) -> Path:
    """root/licenses and root/headers, about the same number of bytes each (at most max_bytes)."""
    licenses = sorted(p for p in LICENSES.iterdir() if p.is_file() and not p.is_symlink())
    prose = copy_capped(licenses, root / "licenses", max_bytes)
    headers = sorted(p for p in HEADERS.glob("*.h") if p.is_file() and not p.is_symlink())
    code = copy_capped(headers, root / "headers", prose)
    print(f"corpus: {prose:,} bytes of licenses, {code:,} bytes of C headers", flush=True)
    return root


def run_config(corpus: Path, args, style_by: str) -> RunConfig:
    cfg = RunConfig(arch=args.arch, model=dict(MODELS[args.arch]), data=DataConfig(paths=[str(corpus)]))
    cfg.train = TrainConfig(budget_seconds=0.0 if args.max_steps else args.budget, max_steps=args.max_steps,
                            batch_size=16, seq_len=64, lr=args.lr, seed=args.seed, threads=args.threads, device="cpu",
                            eval_every_seconds=args.budget / 4, eval_every_steps=args.max_steps // 4)
    cfg.style = StyleConfig(by=style_by, dim=args.style_dim)
    return cfg


def measure(corpus: Path, args, style_by: str, out: Path) -> dict:
    run_dir = train(run_config(corpus, args, style_by), out / (style_by or "plain"), log=lambda *a: None)
    return [r for r in read_metrics(run_dir) if r["event"] == "final"][-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="2m", help="training wall-clock per model, e.g. 60s, 2m (default 2m)")
    p.add_argument("--arch", default="lstm", choices=sorted(MODELS))
    p.add_argument("--max-steps", type=int, default=0, help="train each for exactly N steps instead of --budget")
    p.add_argument("--style-dim", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-bytes", type=int, default=150_000, help="bytes of each source at most")
    args = p.parse_args()
    args.budget = parse_duration(args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(Path(tmp) / "corpus", args.max_bytes)
        results = {label: measure(corpus, args, by, Path(tmp)) for label, by in (("plain", ""), ("styled", "dir"))}
    each = f"{args.max_steps} steps" if args.max_steps else f"{args.budget:.0f}s"
    print(f"\n{args.arch} {MODELS[args.arch]}, {each} each, {args.threads} thread(s)")
    print(f"{'model':<22} {'steps':>7} {'seconds':>8} {'held-out bpb':>13} {'network alone':>14}")
    for label, r in results.items():
        name = "no styles" if label == "plain" else f"--style-by dir ({args.style_dim})"
        print(f"{name:<22} {r['step']:>7,} {r['elapsed']:>8.0f} {r['val_bpb']:>13.4f} {r['val_bpb_network']:>14.4f}")
    gain = results["plain"]["val_bpb_network"] - results["styled"]["val_bpb_network"]
    print(f"styles change the network's held-out bpb by {-gain:+.4f} bits per byte")


if __name__ == "__main__":
    main()
