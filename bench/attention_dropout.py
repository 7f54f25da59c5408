"""What dropout costs a training step of the default transformer on this machine, by where it is applied.

    python bench/attention_dropout.py [--threads 1] [--rounds 7] [--steps 40] [--dropout 0.1]

The auto choice's 4x128 transformer (batch 12 x 64, bf16 autocast where the CPU computes it natively, fused AdamW)
takes training steps on random tokens with: no dropout; dropout on the residuals and embeddings only (what seqlab
trains with); and dropout on the attention weights too (what it trained with before 2026-12-06, restored here by
passing dropout_p to the attention). The three run in turn, --rounds times; the table gives each one's median
thread-CPU milliseconds per step (robust to a shared machine with --threads 1), its ratio to the residuals-only
setting and a 95% bootstrap interval of that ratio over rounds.
"""

import argparse
import time
from contextlib import nullcontext
from unittest.mock import patch

from common import print_table, seqlab  # noqa: F401  (common puts the source tree first on the path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from seqlab.models.transformer import CausalSelfAttention, Transformer, TransformerConfig  # noqa: E402
from seqlab.stats import bootstrap_statistic  # noqa: E402
from seqlab.train.speed import native_bf16  # noqa: E402


def with_attention_dropout(p: float):
    """CausalSelfAttention._attend as it was: dropout_p on the attention weights while training."""
    def attend(self, q, k, v, n_q, n_k):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p if self.training else 0.0)
    return patch.object(CausalSelfAttention, "_attend", attend)


def step_timer(dropout: float, vocab: int = 65):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=vocab, n_layer=4, n_head=4, n_embd=128, block_size=64,
                                          dropout=dropout, bias=False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x, y = torch.randint(0, vocab, (12, 64)), torch.randint(0, vocab, (12, 64))
    bf16 = native_bf16(torch.device("cpu"))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            logits = logits[0] if isinstance(logits, tuple) else logits
            loss = F.cross_entropy(logits.float().view(-1, vocab), y.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=40, help="timed steps per setting per round")
    p.add_argument("--dropout", type=float, default=0.1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    settings = {"none": (0.0, False), "residuals only (seqlab)": (args.dropout, False),
                "residuals + attention weights (before)": (args.dropout, True)}
    steps = {name: step_timer(dropout) for name, (dropout, _) in settings.items()}
    seconds = {name: [] for name in settings}
    for _ in range(args.rounds + 1):  # the first round warms up and is dropped
        for name, (dropout, attention) in settings.items():
            with with_attention_dropout(dropout) if attention else nullcontext():
                start = time.thread_time()
                for _ in range(args.steps):
                    steps[name]()
                seconds[name].append((time.thread_time() - start) / args.steps)
    base = np.array(seconds["residuals only (seqlab)"][1:])
    rows = []
    for name in settings:
        s = np.array(seconds[name][1:])
        ratio = s / base
        low, high = bootstrap_statistic(lambda rows, ratio=ratio: np.median(ratio[rows]), len(ratio), 1)
        rows.append([name, f"{np.median(s) * 1e3:.2f}", f"{768 / np.median(s):,.0f}",
                     f"{np.median(ratio):.2f}x [{low:.2f}, {high:.2f}]"])
    print_table(f"dropout {args.dropout}, transformer 4x128, batch 12 x 64, {args.threads} thread(s), "
                f"bf16 autocast: {native_bf16(torch.device('cpu'))}; {args.rounds} rounds of {args.steps} steps",
                ["dropout on", "ms per step (thread CPU, median)", "tokens per CPU-s", "time vs residuals only"], rows)


if __name__ == "__main__":
    main()
