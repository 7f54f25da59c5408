"""The best held-out bits per byte per CPU-minute (issue: quality-per-minute).

    python bench/quality_per_minute.py ../shared/data/tinyshakespeare.txt --budget 10m

Trains, one after the other on the same threads and the same budget:
  - seqlab's default (what `seqlab train CORPUS --budget B` picks), and
  - a nanoGPT-equivalent transformer trained by seqlab, with the hyper-parameters
    of nanoGPT's CPU recipe for Shakespeare characters (its README): n_layer=4,
    n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, lr=1e-3,
    AdamW(0.9, 0.99), weight decay 0.1, warm-up 100 of 2000
    iterations, cosine decay to lr/10, no biases — here spread over the same wall-clock
    budget instead of 2000 iterations,
then prints their held-out bits per byte beside the conditional cost of the same
held-out bytes for gzip, bzip2, xz, zstd, PPMd (pyppmd), bzip3 and zpaq -m5 (the last
three where installed), and writes the bpb-vs-seconds curves as a PNG.

nanoGPT has no count model, so its row is its network alone. The count model does
not change training (it is built from the training split and mixed in when
scoring), so the same nanoGPT run is also scored with seqlab's count model: the row
that says whether the default's choice of architecture is the best one. When the
default is nanoGPT's recipe (it is, at budgets of minutes on 1-2 cores: see
src/seqlab/train/defaults.py), its run is reused rather than trained twice.

Spread: every bits-per-byte figure carries a 95% bootstrap interval over blocks of
4,096 held-out tokens (how much the figure depends on which text was held out; a
compressor's over --compressor-blocks blocks, each costed as size(train + held-out up to
the block's end) less size(train + held-out up to its start): bench/common.py),
and the default is compared with the recipe on the very same bytes as a paired
difference with its interval. --repeats N trains each model N times with seeds
seed, seed+1, ..., interleaved (default, recipe, default, recipe, ...), so a
machine that slows down mid-run slows both, and prints the spread across seeds.
"""

import argparse
import copy
import platform
import time

from common import compressor_blocks, final_record, held_out_bits, print_table, seqlab

from seqlab.__main__ import build_parser
from seqlab.config import parse_duration
from seqlab.run import read_metrics
from seqlab.stats import bootstrap_ratio, paired_difference
from seqlab.train import config_from_args

NANOGPT_CPU = {
    "arch": "transformer",
    "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0, "bias": False},
    "train": {"batch_size": 12, "seq_len": 64, "lr": 1e-3, "min_lr_ratio": 0.1, "warmup_fraction": 0.05,
              "weight_decay": 0.1},
}


def nanogpt_config(corpus, budget, threads):
    cfg = config_from_args(build_parser().parse_args(
        ["train", *corpus, "--budget", budget, "--threads", str(threads), "--arch", "transformer"]))
    cfg.model.update(NANOGPT_CPU["model"])
    for key, value in NANOGPT_CPU["train"].items():
        setattr(cfg.train, key, value)
    return cfg


def same_training(a, b) -> bool:
    """Two configs that train the same network the same way (the count model only changes scoring)."""
    return a.arch == b.arch and a.model == b.model and a.train == b.train and a.data == b.data


def plot(curves: dict, out: str, compressors: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for name, (t, bpb) in curves.items():
        ax.plot(t, bpb, marker=".", label=name)
    for name, bpb in compressors.items():
        ax.axhline(bpb, linestyle=":", linewidth=1, color="#777777")
        ax.text(0, bpb, f" {name}", fontsize=7, va="bottom", color="#555555")
    ax.set_xlabel("wall-clock seconds of training")
    ax.set_ylabel("held-out bits per byte (fixed subset, network alone)")
    ax.set_ylim(top=min(4.0, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def interval(bits, n_bytes) -> str:
    low, high = bootstrap_ratio(bits, n_bytes)
    return f"{bits.sum() / n_bytes.sum():.4f} [{low:.4f}, {high:.4f}]"


def difference(a, b, n_bytes) -> str:
    d, low, high = paired_difference(a, b, n_bytes)
    return f"{d:+.4f} [{low:+.4f}, {high:+.4f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="+")
    p.add_argument("--budget", default="10m")
    p.add_argument("--out", default="runs/bench-qpm")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both models (default: every core)")
    p.add_argument("--compressor-blocks", type=int, default=16,
                   help="the compressors' held-out cost is measured block by block, for its interval")
    p.add_argument("--repeats", type=int, default=1,
                   help="train each model N times (seeds seed..seed+N-1), interleaved")
    args = p.parse_args()
    parse_duration(args.budget)
    stamp = int(time.time())

    configs = {
        "seqlab default": config_from_args(build_parser().parse_args(
            ["train", *args.corpus, "--budget", args.budget, "--threads", str(args.threads)])),
        "nanoGPT CPU recipe": nanogpt_config(args.corpus, args.budget, args.threads),
    }
    runs = []  # (name, repeat, config, run dir, the name whose run it reuses or None), in training order
    for repeat in range(args.repeats):
        for name, base in configs.items():
            cfg = copy.deepcopy(base)
            cfg.train.seed += repeat
            twin = next((t for t in runs if t[1] == repeat and same_training(t[2], cfg)), None)
            if twin:  # the default is nanoGPT's recipe: training it again would only measure the machine's noise
                print(f"{name}: the same training as {twin[0]}; its run is reused", flush=True)
                runs.append((name, repeat, cfg, twin[3], twin[0]))
                continue
            suffix = f"-seed{cfg.train.seed}" if args.repeats > 1 else ""
            runs.append((name, repeat, cfg, seqlab.train(cfg, f"{args.out}-{stamp}/{name.split()[0].lower()}{suffix}"),
                         None))
    scored = {}  # run dir -> (bits, network bits, bytes) per block of held-out tokens
    for _, _, _, run_dir, _ in runs:
        if run_dir not in scored:
            scored[run_dir] = held_out_bits(seqlab.load(run_dir))

    rows, curves, figures = [], {}, {}
    for name, repeat, cfg, run_dir, twin in runs:
        final = final_record(run_dir)
        bits, network, n_bytes = scored[run_dir]
        params = read_metrics(run_dir)[0]["params"]
        label = name + (f" (seed {cfg.train.seed})" if args.repeats > 1 else "") + (f" ({twin}'s run)" if twin else "")
        row = [label, cfg.arch, f"{params / 1e6:.2f}M", final["step"], interval(network, n_bytes)]
        if name.startswith("nanoGPT"):
            rows.append(row + [interval(network, n_bytes)])
            if not twin:  # with a twin, the default's row is this one
                rows.append([f"nanoGPT recipe + seqlab's count model{label[len(name):]}", *row[1:],
                             interval(bits, n_bytes)])
        else:
            rows.append(row + [interval(bits, n_bytes)])
        figures.setdefault(name, []).append((network.sum() / n_bytes.sum(), bits.sum() / n_bytes.sum()))
        if repeat == 0 and not twin:
            evals = [r for r in read_metrics(run_dir) if r.get("event") == "eval"]
            curves[name] = ([r["elapsed"] for r in evals], [r["val_bpb"] for r in evals])
    compressors = {}
    for name, (bits, n_bytes) in compressor_blocks(args.corpus, configs["seqlab default"].data.val_fraction,
                                                   args.compressor_blocks).items():
        rows.append([name, "compressor", "", "", "", interval(bits, n_bytes)])
        compressors[name] = bits.sum() / n_bytes.sum()
    print()
    print_table(f"held-out bits per byte after {args.budget} on {platform.node()} "
                f"({platform.machine()}, {__import__('os').cpu_count()} cores, threads {args.threads or 'all'}); "
                f"[95% bootstrap interval over blocks of 4,096 held-out tokens]",
                ["model", "arch", "params", "steps", "network alone", "held-out bpb"], rows)

    pairs = []
    for repeat in range(args.repeats):
        (default,), (recipe,) = ([r for r in runs if r[1] == repeat and r[0] == n] for n in configs)
        a, b = scored[default[3]], scored[recipe[3]]
        if default[3] == recipe[3] or len(a[2]) != len(b[2]) or (a[2] != b[2]).any():
            continue  # one run, or held-out blocks that are not the same bytes (other tokenizers)
        pairs.append([f"seed {default[2].train.seed}", difference(a[1], b[1], a[2]), difference(a[0], b[0], a[2])])
    if pairs:
        print()
        print_table("seqlab default minus nanoGPT recipe on the same held-out bytes (bits per byte; negative: the "
                    "default is better) [95% paired bootstrap]",
                    ["repeat", "networks alone", "each with the count model"], pairs)
    if args.repeats > 1:
        print("\nacross seeds (mean, min - max):")
        for name, values in figures.items():
            for i, what in enumerate(("network alone", "with the count model")):
                v = [f[i] for f in values]
                print(f"  {name}, {what}: {sum(v) / len(v):.4f} ({min(v):.4f} - {max(v):.4f}) over {len(v)} runs")
    png = f"{args.out}-{stamp}/curves.png"
    plot(curves, png, compressors)
    print(f"\ncurves: {png}")


if __name__ == "__main__":
    main()
