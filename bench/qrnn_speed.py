"""QRNN vs LSTM training speed at equal hidden size and depth, measured side by side.

    python bench/qrnn_speed.py                       # 2 x 512, batch 32 x 128 tokens (the training defaults)
    python bench/qrnn_speed.py --hidden 256 --layers 3 --threads 2

One training step = forward, cross-entropy, backward, AdamW update, as seqlab train
does it. The architectures take turns, round after round, so load from other
processes on a shared machine falls on both alike; the figure per arch is its
median step time. The speed ratio is the LSTM's median seconds over the QRNN's,
with a 95% interval from resampling the rounds as pairs (stats.ratio_interval)
and the range of the round-by-round ratios. The LSTM runs
on torch's native nn.LSTM kernel.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from seqlab.models import build_model
from seqlab.stats import ratio_interval


def step_seconds(model, optimizer, x, y) -> float:
    start = time.perf_counter()
    logits, _ = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=12, help="timed steps per arch (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    archs = ["lstm", "qrnn"]
    models = {a: build_model(a, {"n_hidden": args.hidden, "n_layer": args.layers, "vocab_size": 257}).train()
              for a in archs}
    optims = {a: torch.optim.AdamW(m.parameters(), lr=1e-3) for a, m in models.items()}
    x = torch.randint(0, 257, (args.batch, args.seq_len))
    y = torch.randint(0, 257, (args.batch, args.seq_len))
    times = {a: [] for a in archs}
    for r in range(args.rounds + 2):
        for a in archs:
            t = step_seconds(models[a], optims[a], x, y)
            if r >= 2:
                times[a].append(t)
    tokens = args.batch * args.seq_len
    speed = {a: tokens / statistics.median(times[a]) for a in archs}
    print(f"{args.layers} layers x {args.hidden} hidden, batch {args.batch} x {args.seq_len} tokens, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} steps")
    ratio, low, high = ratio_interval(times["lstm"], times["qrnn"])  # QRNN's speed over the LSTM's
    rounds = [t_lstm / t_qrnn for t_lstm, t_qrnn in zip(times["lstm"], times["qrnn"])]
    print(f"{'arch':<6} {'params':>10} {'train tokens/s':>15}")
    for a in archs:
        print(f"{a:<6} {models[a].num_params():>10,} {speed[a]:>15,.0f}")
    print(f"qrnn / lstm speed: {ratio:.2f}x (95% interval {low:.2f}-{high:.2f}x over {args.rounds} alternating "
          f"rounds; round by round {min(rounds):.2f}-{max(rounds):.2f}x)")


if __name__ == "__main__":
    main()
