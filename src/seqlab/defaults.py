"""What `seqlab train` picks when it is not told: the architecture and size for the budget and corpus.

Measured on a 2-core CPU (bench/quality_per_minute.py): for budgets of minutes
a one-layer LSTM learns more per CPU-second than a transformer of the same cost
on byte-level text, and the count model mixed in at scoring time covers the
long repeats the LSTM cannot hold. The size follows the compute: a model of N
parameters trains at about THROUGHPUT / N tokens per second, and we pick the
largest width whose budget still buys TOKENS_PER_PARAM tokens per parameter,
capped by the corpus size so a small corpus is not memorised.
"""

import math
from dataclasses import dataclass

THROUGHPUT = 2.7e10  # parameters x tokens per second for an LSTM on 2 cores (measured: 1x512, ~12k tok/s)
TOKENS_PER_PARAM = 3.0
WIDTHS = (128, 192, 256, 384, 512, 640, 768, 1024)
PARAMS_PER_CORPUS_BYTE = 2.5


@dataclass
class Choice:
    arch: str
    model: dict
    train: dict
    reason: str


def lstm_params(width: int, vocab: int = 257) -> int:
    return 4 * (2 * width * width + 2 * width) + vocab * width + vocab


def choose(corpus_bytes: int, budget_seconds: float, cores: int = 2) -> Choice:
    throughput = THROUGHPUT * cores / 2
    fits = [w for w in WIDTHS if throughput * budget_seconds / lstm_params(w) >= TOKENS_PER_PARAM * lstm_params(w)]
    width = max(fits, default=WIDTHS[0])
    capped = [w for w in WIDTHS if w <= width and lstm_params(w) <= PARAMS_PER_CORPUS_BYTE * corpus_bytes]
    chosen = max(capped, default=WIDTHS[0])
    params = lstm_params(chosen)
    tokens = throughput * budget_seconds / params
    why = "the corpus size" if chosen < width else f"{budget_seconds / 60:.3g} minutes on {cores} cores"
    reason = (f"auto: lstm 1x{chosen} ({params / 1e6:.1f}M parameters) — sized for {why}: about "
              f"{tokens / 1e6:.1f}M training tokens ({tokens / max(corpus_bytes, 1):.1f} passes over the corpus); "
              f"a one-layer LSTM learns most per CPU-second at this scale (bench/quality_per_minute.py)")
    dropout = 0.0 if tokens < corpus_bytes else min(0.2, 0.1 * math.log2(1 + tokens / max(corpus_bytes, 1)))
    return Choice("lstm", {"n_layer": 1, "n_hidden": chosen, "dropout": round(dropout, 2)},
                  {"batch_size": 32, "seq_len": 128, "lr": 3e-3}, reason)
