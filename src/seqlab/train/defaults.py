"""What `seqlab train` picks when it is not told: the architecture and size for the budget and corpus.

Measured side by side on this project's 2-core CPU (bench/quality_per_minute.py,
10-minute budgets, the count model mixed in at scoring time for both): nanoGPT's
small-context transformer recipe (4 layers, context 64, batch 12; lr 1e-3 then)
learns more per CPU-second than a one-layer LSTM of the same cost on byte-level
text. It takes thousands of small steps where the LSTM takes hundreds of large
ones. The count model covers the long repeats its 64-token window cannot hold.

The width follows the compute *of this machine*: before training, train/probe.py
times a few optimizer steps of the candidate widths here (seconds, taken from the
budget), and we pick the largest width whose measured tokens/s still buy
TOKENS_PER_PARAM tokens per parameter in the budget. That ratio was calibrated so
that 10 minutes on the developers' 2 cores (24k tokens/s at 4x128) gives nanoGPT's
128, the measured point; wider models for longer budgets follow from the rule, not
from measurements. The size is capped by the corpus so a small corpus is not memorised.
The rule is the same on every device; only the candidates (`LADDERS`) differ.

The learning rate is nanoGPT's recipe's one change: 3e-3 at width 128, not 1e-3.
Side by side at the same 7,200 steps of 4x128 on one core each, it left the
network 3% fewer held-out bits per byte on both corpora we tried (tinyshakespeare
2.2117 against 2.2839, C headers 1.1205 against 1.1588). Wider models take
less, as 1/width (muP's rule for Adam), which gives 1e-3 at 384, the rate
nanoGPT tuned for its 6x384 character model; narrower ones keep 3e-3.
"""

from dataclasses import dataclass

TOKENS_PER_PARAM = 10.0
PARAMS_PER_CORPUS_BYTE = 2.5
LR_AT_128 = 3e-3  # measured; wider models take LR_AT_128 * 128 / width
VOCAB = 257  # the byte tokenizer's; the probe and the size estimate assume it


@dataclass(frozen=True)
class Ladder:
    """The transformer sizes the auto choice picks from on one kind of device, and their training shape."""

    widths: tuple[int, ...]
    layers: int
    context: int
    batch: int
    heads: int = 4  # at every width, unless head_dim is given
    head_dim: int = 0  # heads = width // head_dim

    def n_head(self, width: int) -> int:
        return width // self.head_dim if self.head_dim else self.heads

    def params(self, width: int, vocab: int = VOCAB) -> int:
        """Weights of the transformer: blocks of 12 w^2, token and position tables (the head is tied)."""
        return self.layers * 12 * width * width + vocab * width + self.context * width

    def model(self, width: int, dropout: float = 0.0) -> dict:
        return {"n_layer": self.layers, "n_head": self.n_head(width), "n_embd": width, "block_size": self.context,
                "dropout": dropout, "bias": False}

    def describe(self, width: int) -> str:
        return f"{self.layers}x{width}"


LADDERS = {
    "cpu": Ladder(widths=(64, 96, 128, 192, 256, 384, 512), layers=4, context=64, batch=12),
    # nanoGPT's GPU recipe for Shakespeare characters (6x384, context 256, batch 64) and its neighbours. The rule
    # and the probe are the CPU's; these candidates have not yet been measured on a GPU (issue [gpu]).
    "cuda": Ladder(widths=(192, 256, 384, 512, 768, 1024), layers=6, context=256, batch=64, head_dim=64),
}


def ladder_for(device_type: str) -> Ladder:
    return LADDERS.get(device_type, LADDERS["cpu"])


@dataclass
class Choice:
    arch: str
    model: dict
    train: dict
    reason: str


def learning_rate(width: int) -> float:
    return LR_AT_128 * min(1.0, 128 / width)


def fits(ladder: Ladder, width: int, tokens: float) -> bool:
    """Whether `tokens` training tokens are enough for the width: TOKENS_PER_PARAM per parameter."""
    return tokens >= TOKENS_PER_PARAM * ladder.params(width)


def corpus_allows(ladder: Ladder, width: int, corpus_bytes: int) -> bool:
    return width == ladder.widths[0] or ladder.params(width) <= PARAMS_PER_CORPUS_BYTE * corpus_bytes


def choose(corpus_bytes: int, budget_seconds: float, rates: dict[int, float], device_type: str = "cpu",
           max_steps: int = 0, measured: str = "") -> Choice:
    """The size for the budget from measured training rates (width -> tokens/s on this machine).

    With max_steps the tokens are known (steps x batch x context) and the rates are not needed.
    A width that was not measured counts as not fitting (the probe stops at the first that does not fit).
    """
    ladder = ladder_for(device_type)

    def tokens(w: int) -> float:
        return max_steps * ladder.batch * ladder.context if max_steps else rates.get(w, 0.0) * budget_seconds

    width = max((w for w in ladder.widths if fits(ladder, w, tokens(w))), default=ladder.widths[0])
    chosen = max(w for w in ladder.widths if w <= width and corpus_allows(ladder, w, corpus_bytes))
    params = ladder.params(chosen)
    passes = tokens(chosen) / max(corpus_bytes, 1)
    if chosen < width:
        why = "the corpus size"
    elif max_steps:
        why = f"{max_steps:,} steps"
    else:
        minutes = f"{budget_seconds / 60:.3g}"
        why = f"{minutes} minute{'s' * (minutes != '1')}"
    lr = learning_rate(chosen)
    if max_steps or rates:
        estimate = f"about {tokens(chosen) / 1e6:.1f}M training tokens ({passes:.1f} passes over the corpus), "
    else:
        estimate = "too short a budget to measure this machine: the smallest size, "
    reason = (f"auto: transformer {ladder.describe(chosen)}, context {ladder.context} ({params / 1e6:.2f}M parameters) "
              f"— sized for {why}: {estimate}lr {lr:.2g}" + (f"; {measured}" if measured else "") +
              "; nanoGPT's small-context recipe plus the count model learns most per CPU-second at this scale "
              "(bench/quality_per_minute.py)")
    # measured without dropout at ~9-14 passes (tinyshakespeare, 10 minutes on 2 cores); more passes over a
    # small corpus call for some
    dropout = 0.0 if passes < 20 else 0.1 if passes < 80 else 0.2
    return Choice("transformer", ladder.model(chosen, dropout),
                  {"batch_size": ladder.batch, "seq_len": ladder.context, "lr": lr, "min_lr_ratio": 0.1,
                   "warmup_fraction": 0.05, "weight_decay": 0.1},
                  reason)
