"""What `seqlab train` picks when it is not told: the architecture and size for the budget and corpus.

Measured side by side on this project's 2-core CPU (bench/quality_per_minute.py,
10-minute budgets, the count model mixed in at scoring time for both): nanoGPT's
small-context transformer recipe (4 layers, context 64, batch 12; lr 1e-3 then)
learns more per CPU-second than a one-layer LSTM of the same cost on byte-level
text. It takes thousands of small steps where the LSTM takes hundreds of large
ones, and it uses a second core better: 1.65x its one-core tokens/s, where the
LSTM gained 1.35x in parameters x tokens/s. The count model covers the long
repeats its 64-token window cannot hold.

The width follows the compute: a model of N parameters trains at about
THROUGHPUT / N tokens per second, and we pick the largest width whose budget
still buys TOKENS_PER_PARAM tokens per parameter. That ratio is calibrated so
that 10 minutes on 1-2 cores gives nanoGPT's 128 (the measured point); wider
models for longer budgets follow from it, not from measurements. The size is
capped by the corpus so a small corpus is not memorised.

The learning rate is nanoGPT's recipe's one change: 3e-3 at width 128, not 1e-3.
Side by side at the same 7,200 steps of 4x128 on one core each, it left the
network 3% fewer held-out bits per byte on both corpora we tried (tinyshakespeare
2.2117 against 2.2839, C headers 1.1205 against 1.1588). Wider models take
less, as 1/width (muP's rule for Adam), which gives 1e-3 at 384, the rate
nanoGPT tuned for its 6x384 character model; narrower ones keep 3e-3.
"""

from dataclasses import dataclass

THROUGHPUT_PER_CORE = 1.2e10  # parameters x tokens per second, one core (measured: 4x128, 14.3k tok/s)
SECOND_CORE_GAIN = 0.7  # a second thread adds this much (measured: 24k tok/s on 2 against 14.3k on 1)
TOKENS_PER_PARAM = 10.0
WIDTHS = (64, 96, 128, 192, 256, 384, 512)
LAYERS, HEADS, CONTEXT = 4, 4, 64
PARAMS_PER_CORPUS_BYTE = 2.5
LR_AT_128 = 3e-3  # measured; wider models take LR_AT_128 * 128 / width


@dataclass
class Choice:
    arch: str
    model: dict
    train: dict
    reason: str


def transformer_params(width: int, vocab: int = 257) -> int:
    """Weights of the default transformer: blocks of 12 w^2, token and position tables (the head is tied)."""
    return LAYERS * 12 * width * width + vocab * width + CONTEXT * width


def learning_rate(width: int) -> float:
    return LR_AT_128 * min(1.0, 128 / width)


def throughput(cores: int) -> float:
    return THROUGHPUT_PER_CORE * (1 + SECOND_CORE_GAIN * min(max(cores - 1, 0), 1))


def choose(corpus_bytes: int, budget_seconds: float, cores: int = 2) -> Choice:
    rate = throughput(cores)
    fits = [w for w in WIDTHS if rate * budget_seconds >= TOKENS_PER_PARAM * transformer_params(w) ** 2]
    width = max(fits, default=WIDTHS[0])
    capped = [w for w in WIDTHS if w <= width and transformer_params(w) <= PARAMS_PER_CORPUS_BYTE * corpus_bytes]
    chosen = max(capped, default=WIDTHS[0])
    params = transformer_params(chosen)
    tokens = rate * budget_seconds / params
    passes = tokens / max(corpus_bytes, 1)
    minutes = f"{budget_seconds / 60:.3g}"
    why = "the corpus size" if chosen < width else \
        f"{minutes} minute{'s' * (minutes != '1')} on {cores} core{'s' * (cores > 1)}"
    lr = learning_rate(chosen)
    reason = (f"auto: transformer {LAYERS}x{chosen}, context {CONTEXT} ({params / 1e6:.2f}M parameters) — sized for "
              f"{why}: about {tokens / 1e6:.1f}M training tokens ({passes:.1f} passes over the corpus), lr {lr:.2g}; "
              f"nanoGPT's small-context recipe plus the count model learns most per CPU-second at this scale "
              f"(bench/quality_per_minute.py)")
    # measured without dropout at ~9-14 passes (tinyshakespeare, 10 minutes on 2 cores); more passes over a
    # small corpus call for some
    dropout = 0.0 if passes < 20 else 0.1 if passes < 80 else 0.2
    return Choice("transformer",
                  {"n_layer": LAYERS, "n_head": HEADS, "n_embd": chosen, "block_size": CONTEXT, "dropout": dropout,
                   "bias": False},
                  {"batch_size": 12, "seq_len": CONTEXT, "lr": lr, "min_lr_ratio": 0.1,
                   "warmup_fraction": 0.05, "weight_decay": 0.1},
                  reason)
