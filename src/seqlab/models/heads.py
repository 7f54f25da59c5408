"""The output layer: a full softmax tied to the embedding, an adaptive softmax for large vocabularies, or the tied
table trained by negative sampling.

An adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs") scores the frequent
tokens plus one entry per rare cluster in a small head; a rare cluster's own tokens are scored, through a
narrower projection, only at the positions whose target falls in it. Training uses that cheap path
(`AdaptiveHead.loss`); `forward` returns full log-probabilities over the vocabulary, so every verb that
reads logits works unchanged (log_softmax of log-probabilities is the identity).

Clusters are ranges of positions, so the tokens must be ordered by frequency. BPE ids are not (the 256
byte tokens come first, many never seen, then merges in merge order), so the head keeps a fixed
permutation `rank` (token id -> position, most frequent first), set once from the training split's counts
and saved with the weights: cutoffs then mean "the N most frequent tokens" for any tokenizer.

Negative sampling (`sampled`; Mikolov et al. 2013, word2vec's objective with the network's features as the
context) trains the tied table at a cost that does not grow with the vocabulary: each position scores its target's
row and NEGATIVES rows drawn from the training split's unigram distribution ** 0.75, a logistic loss on each.
Its optimum is score(w) = log P(w | context) - log(NEGATIVES * noise(w)), so `forward` adds log noise(w) back (the
constant log NEGATIVES cancels in a softmax): the softmax of that is the model's estimate of P(w | context), and
every verb that reads logits works unchanged (an estimate, not the full softmax's fit: its bits per byte are higher).
It is there for the table: a word-level run's rows as word vectors (docs/vectors.md).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SOFTMAXES
from ..errors import SeqlabError

DIV_VALUE = 4.0  # each rarer cluster's projection is this many times narrower (the paper's choice)
NEGATIVES = 10  # rows drawn per position by negative sampling (word2vec's 5-20 for small corpora)
NOISE_POWER = 0.75  # the noise distribution is unigram ** 0.75 (word2vec's)


def default_cutoffs(vocab_size: int) -> list[int]:
    """Head = the most frequent 1/8 of the vocabulary; then two clusters, up to 1/2 and the rest."""
    return [max(1, vocab_size // 8), max(2, vocab_size // 2)]


def output_layer(config, n_in: int, embed: nn.Embedding, bias: bool = True) -> nn.Module:
    """The last layer of a model whose config has vocab_size, softmax and cutoffs."""
    if config.softmax == "full":
        head = nn.Linear(n_in, config.vocab_size, bias=bias)
        head.weight = embed.weight  # weight tying
        return head
    if config.softmax == "adaptive":  # untied: its head and cluster projections have their own shapes
        return AdaptiveHead(n_in, config.vocab_size, config.cutoffs or default_cutoffs(config.vocab_size), bias)
    if config.softmax == "sampled":
        return SampledHead(embed, bias)
    raise SeqlabError(f"model.softmax={config.softmax!r} is not known; choose one of: {', '.join(SOFTMAXES)}")


class AdaptiveHead(nn.Module):
    def __init__(self, n_in: int, vocab_size: int, cutoffs: list[int], bias: bool = True):
        super().__init__()
        if not (cutoffs and all(a < b for a, b in zip([0] + cutoffs, cutoffs)) and cutoffs[-1] < vocab_size):
            raise SeqlabError(f"model.cutoffs must be increasing token counts between 1 and {vocab_size - 1} "
                              f"(the vocabulary has {vocab_size}); got {cutoffs}, e.g. --set model.cutoffs="
                              f"{','.join(map(str, default_cutoffs(vocab_size)))}")
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(n_in, vocab_size, cutoffs, div_value=DIV_VALUE, head_bias=bias)
        self.register_buffer("rank", torch.arange(vocab_size))  # token id -> position in frequency order

    def order_by_frequency(self, counts: np.ndarray) -> None:
        """Fix the permutation from training-split token counts (V,): most frequent first, ties by id."""
        order = torch.from_numpy(np.argsort(-counts, kind="stable").copy())
        rank = torch.empty_like(self.rank)
        rank[order] = torch.arange(len(order), device=rank.device)
        self.rank.copy_(rank)

    def forward(self, x):
        """x (..., n_in) -> log-probabilities (..., V) in token-id order."""
        log_probs = self.softmax.log_prob(x.reshape(-1, x.shape[-1]))  # (N, V) in frequency order
        return log_probs[:, self.rank].view(*x.shape[:-1], -1)

    def loss(self, x, targets):
        """Mean negative log-likelihood in nats of targets (...) given x (..., n_in), scoring only needed clusters."""
        return self.softmax(x.reshape(-1, x.shape[-1]), self.rank[targets.reshape(-1)]).loss


class SampledHead(nn.Module):
    """The tied table trained by negative sampling; `forward` gives logits whose softmax estimates P(w | context)."""

    def __init__(self, embed: nn.Embedding, bias: bool = True):
        super().__init__()
        self.embed = embed  # the same module as the model's input embedding: tied
        vocab_size = embed.weight.shape[0]
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None
        self.register_buffer("noise", torch.full((vocab_size,), 1.0 / vocab_size))  # set from the split's counts

    def set_noise(self, counts: np.ndarray) -> None:
        """The noise distribution from training-split token counts (V,): unigram ** 0.75, normalised."""
        weights = torch.from_numpy(counts.astype(np.float64)) ** NOISE_POWER
        self.noise.copy_((weights / weights.sum()).to(self.noise))

    def scores(self, x, ids):
        """x (N, E), ids (N, K) -> each row's score x . row + bias (N, K)."""
        rows = self.embed.weight[ids]  # (N, K, E)
        out = torch.einsum("ne,nke->nk", x, rows)
        return out if self.bias is None else out + self.bias[ids]

    def forward(self, x):
        """x (..., E) -> logits (..., V): the negative-sampling score plus log noise."""
        offset = torch.log(self.noise.clamp_min(torch.finfo(self.noise.dtype).tiny))  # a never-seen token: ~-87
        return F.linear(x, self.embed.weight, offset if self.bias is None else self.bias + offset)

    def loss(self, x, targets):
        """Mean over positions of the negative-sampling loss in nats: -log sigmoid(target's score) - sum over
        NEGATIVES noise draws of log sigmoid(-score)."""
        x = x.reshape(-1, x.shape[-1])  # (N, E)
        noise = torch.multinomial(self.noise, x.shape[0] * NEGATIVES, replacement=True).view(-1, NEGATIVES)
        ids = torch.cat([targets.reshape(-1, 1), noise], dim=1)  # (N, 1 + NEGATIVES)
        s = self.scores(x, ids).float()
        return -(F.logsigmoid(s[:, 0]) + F.logsigmoid(-s[:, 1:]).sum(1)).mean()
