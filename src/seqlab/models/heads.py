"""The output layer: a full softmax tied to the embedding, or an adaptive softmax for large vocabularies.

An adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs") scores the frequent
tokens plus one entry per rare cluster in a small head; a rare cluster's own tokens are scored, through a
narrower projection, only at the positions whose target falls in it. Training uses that cheap path
(`AdaptiveHead.loss`); `forward` returns full log-probabilities over the vocabulary, so every verb that
reads logits works unchanged (log_softmax of log-probabilities is the identity).

Clusters are ranges of positions, so the tokens must be ordered by frequency. BPE ids are not (the 256
byte tokens come first, many never seen, then merges in merge order), so the head keeps a fixed
permutation `rank` (token id -> position, most frequent first), set once from the training split's counts
and saved with the weights: cutoffs then mean "the N most frequent tokens" for any tokenizer.
"""

import numpy as np
import torch
from torch import nn

from ..config import SOFTMAXES
from ..errors import SeqlabError

DIV_VALUE = 4.0  # each rarer cluster's projection is this many times narrower (the paper's choice)


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
