"""Full, adaptive and sampled softmax on a BPE vocabulary: training tokens/s, output-layer time, held-out bits/byte.

    python bench/adaptive_softmax.py --threads 1              # bpe:8192 on Debian's copyright files, ~1.5 min
    python bench/adaptive_softmax.py --vocab 16384 --arch lstm --steps 60 --batch 16

The corpus is every /usr/share/doc/*/copyright file (duplicates dropped, sorted, capped
at --max-bytes), so the figure can be re-measured on any Debian-like machine. One model
configuration is built three times, --softmax full, adaptive and sampled (negative sampling
of the tied table), from the same seed; all train on the same batches, taking turns step by step (the order
rotating), so load from other processes on a shared machine falls on all alike. A step is what `seqlab train`
does: model.loss, backward, clipped AdamW on the same schedule. The output layer is then timed alone (forward and
backward of the loss from fixed features), and every model scores the same held-out sample.
Speed-ups are ratios of median seconds with a 95% interval from resampling the steps (or
output-layer repeats) as pairs (stats.ratio_interval), and the range of the pair-by-pair ratios.
"""

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.config import DataConfig, RunConfig, TrainConfig
from seqlab.models import build_model
from seqlab.stats import ratio_interval
from seqlab.train.loop import eval_subset, held_out_bpb, lr_at, make_optimizer, prepare_data

MODELS = {  # small enough that the output layer is a large share of the work, as it is at big vocabularies
    "transformer": {"n_layer": 2, "n_head": 4, "n_embd": 256, "block_size": 128, "dropout": 0.0},
    "lstm": {"n_layer": 1, "n_hidden": 512, "dropout": 0.0},
}


def copyright_corpus(out: Path, max_bytes: int) -> Path:
    """Debian's copyright files, each text once, in path order, up to max_bytes, as one file."""
    seen, parts, total = set(), [], 0
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")):
        data = path.read_bytes()
        digest = hashlib.sha1(data).digest()
        if digest in seen or total + len(data) > max_bytes:
            continue
        seen.add(digest)
        parts.append(data)
        total += len(data)
    out.write_bytes(b"\n".join(parts))
    return out


def train_step(model, optimizer, x, y, progress: float, tc: TrainConfig) -> float:
    """One step as seqlab train takes it; returns its seconds."""
    start = time.perf_counter()
    for group in optimizer.param_groups:
        group["lr"] = lr_at(progress, tc)
    loss, _ = model.loss(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    optimizer.step()
    return time.perf_counter() - start


def output_layer_seconds(model, x, y) -> float:
    """Forward + backward of the loss from features x (N, C): the output layer's share of a step."""
    head = model.output_layer()
    x = x.detach().requires_grad_()
    start = time.perf_counter()
    if model.config.softmax == "full":
        loss = F.cross_entropy(head(x), y)
    else:
        loss = head.loss(x, y)
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=list(MODELS), default="transformer")
    p.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size")
    p.add_argument("--max-bytes", type=int, default=1_500_000, help="corpus size cap")
    p.add_argument("--steps", type=int, default=30, help="training steps of each model")
    p.add_argument("--n-embd", type=int, default=0, help="lstm: embedding width (0: the hidden size)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-tokens", type=int, default=8192, help="held-out tokens scored per model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = copyright_corpus(Path(tmp) / "copyright.txt", args.max_bytes)
        cfg = RunConfig(arch=args.arch, data=DataConfig(paths=[str(corpus)], tokenizer=f"bpe:{args.vocab}"))
        _, tokenizer, data = prepare_data(cfg, Path(tmp), resume=False)
    tc = TrainConfig(max_steps=args.steps, batch_size=args.batch, seq_len=args.seq_len)
    kinds = ["full", "adaptive", "sampled"]
    models, optims = {}, {}
    for kind in kinds:
        torch.manual_seed(tc.seed)  # the same body weights for both
        shape = {**MODELS[args.arch], **({"n_embd": args.n_embd} if args.n_embd else {})}
        models[kind] = build_model(args.arch, {**shape, "vocab_size": tokenizer.vocab_size, "softmax": kind}).train()
        optims[kind] = make_optimizer(models[kind], tc)
    head = models["adaptive"].output_layer()
    counts = np.bincount(data.train, minlength=tokenizer.vocab_size)
    head.order_by_frequency(counts)  # as seqlab train does
    models["sampled"].output_layer().set_noise(counts)

    rng = np.random.default_rng(tc.seed)
    step_times = {k: [] for k in kinds}
    for step in range(args.steps):
        starts = rng.integers(0, len(data.train) - args.seq_len - 1, args.batch)
        chunk = torch.from_numpy(data.train[starts[:, None] + np.arange(args.seq_len + 1)].astype(np.int64))
        x, y = chunk[:, :-1], chunk[:, 1:]
        for kind in kinds[step % 3:] + kinds[: step % 3]:  # rotate who goes first
            step_times[kind].append(train_step(models[kind], optims[kind], x, y, step / args.steps, tc))

    head_times = {k: [] for k in kinds}
    with torch.no_grad():
        features = {k: models[k].features(x)[0].flatten(0, 1) for k in kinds}
    for _ in range(9):
        for kind in kinds:
            head_times[kind].append(output_layer_seconds(models[kind], features[kind], y.flatten()))

    token_lengths = np.array([len(b) for b in tokenizer.token_bytes])
    segments = eval_subset(data, args.eval_tokens)
    bpb = {k: held_out_bpb(models[k], segments, token_lengths, torch.device("cpu")) for k in kinds}

    tokens = args.batch * args.seq_len
    warm = slice(2, None)  # the first steps pay for allocation
    speed = {k: tokens / statistics.median(step_times[k][warm]) for k in kinds}
    head_ms = {k: 1000 * statistics.median(head_times[k]) for k in kinds}
    cutoffs = head.softmax.cutoffs[:-1]
    print(f"{args.arch} {shape}, bpe:{tokenizer.vocab_size} on {data.train_bytes:,} training bytes "
          f"of Debian copyright files; adaptive cutoffs {cutoffs}; batch {args.batch} x {args.seq_len} tokens, "
          f"{args.steps} steps each, {torch.get_num_threads()} threads")
    print(f"{'softmax':<9} {'params':>11} {'train tokens/s':>15} {'output layer ms/step':>21} "
          f"{'held-out bpb':>13}")
    for k in kinds:
        print(f"{k:<9} {models[k].num_params():>11,} {speed[k]:>15,.0f} {head_ms[k]:>21.1f} {bpb[k]:>13.4f}")
    for kind in kinds[1:]:
        for what, times in ("training tokens/s", {k: v[warm] for k, v in step_times.items()}), ("output layer",
                                                                                                 head_times):
            ratio, low, high = ratio_interval(times["full"], times[kind])
            pairs = [f / a for f, a in zip(times["full"], times[kind])]
            print(f"speed-up of {kind} over full, {what}: {ratio:.2f}x (95% interval {low:.2f}-{high:.2f}x over "
                  f"{len(pairs)} rotating rounds; round by round {min(pairs):.2f}-{max(pairs):.2f}x)")
    print(f"held-out bpb after {args.steps} steps: " + ", ".join(f"{bpb[k]:.4f} {k}" for k in kinds)
          + f" ({time.perf_counter() - t_start:.0f}s in all)")


if __name__ == "__main__":
    main()
