"""Choosing the next token, one row of a batch at a time but computed together.

Each row has its own settings and its own random generator, so a row's output
depends only on its own seed, never on what else shares the batch.
"""

import torch

from .config import SamplingConfig  # declared with the other configs: its ranges are the CLI's and the server's


class Sampler:
    """Picks the next token for B rows; row settings and generators are fixed at creation."""

    def __init__(self, configs: list[SamplingConfig], seeds: list[int], vocab_size: int, device):
        self.device = device
        self.temperature = torch.tensor([c.temperature for c in configs], device=device)[:, None]
        # a top_k beyond the vocabulary is no limit (and may not fit a tensor's int64)
        self.top_k = torch.tensor([min(c.top_k or vocab_size, vocab_size) for c in configs], device=device)[:, None]
        self.top_p = torch.tensor([c.top_p for c in configs], device=device)[:, None]
        self.penalty = torch.tensor([c.repetition_penalty for c in configs], device=device)[:, None]
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.seen = torch.zeros(len(configs), vocab_size, dtype=torch.bool, device=device)

    def observe(self, tokens: torch.Tensor) -> None:
        """Record tokens (B, T) as seen, for the repetition penalty."""
        self.seen.scatter_(1, tokens.to(self.device), True)

    def __call__(self, logits: torch.Tensor, banned: int | None = None) -> torch.Tensor:
        logits = logits.float()
        logits = torch.where(self.seen, torch.where(logits > 0, logits / self.penalty, logits * self.penalty), logits)
        if banned is not None:
            logits[:, banned] = float("-inf")
        greedy = logits.argmax(dim=-1)
        scaled = logits / self.temperature.clamp(min=1e-6)
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        ranks = torch.arange(scaled.shape[1], device=scaled.device)[None, :]
        probs = sorted_logits.softmax(dim=-1)
        cut = (ranks >= self.top_k) | ((probs.cumsum(dim=-1) - probs) > self.top_p)
        probs = probs.masked_fill(cut, 0.0)
        cdf = probs.cumsum(dim=-1)
        u = torch.stack([torch.rand((), generator=g) for g in self.generators]).to(cdf.device)[:, None]
        pick = (cdf < u * cdf[:, -1:]).sum(dim=-1).clamp(max=scaled.shape[1] - 1)
        sampled = order.gather(1, pick[:, None])[:, 0]
        chosen = torch.where(self.temperature[:, 0] == 0, greedy, sampled)
        self.observe(chosen[:, None])
        return chosen


class StopMatcher:
    """Holds back just enough output to cut it exactly before the first stop string."""

    def __init__(self, stops: list[bytes]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = b""
        self.stopped = False

    def feed(self, data: bytes) -> bytes:
        """Return the bytes that are safe to emit now."""
        if self.stopped:
            return b""
        self.pending += data
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[: min(hits)], b""
            return out
        cut = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> bytes:
        out, self.pending = self.pending, b""
        return b"" if self.stopped else out
