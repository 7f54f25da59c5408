"""Score several texts in shared forward passes (the dynamic batch of /v1/score).

Each text is cut into the same windows `scoring.token_bits` uses (so every token
is scored once with the same context); windows from all texts are sorted by
length and run together, right-padded. Padding at the right changes nothing
before it because every model is causal; the result matches `token_bits`.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..scoring import plan_windows


@torch.no_grad()
def score_texts(model, token_lists: list[np.ndarray], device, batch_tokens: int = 32768) -> list[np.ndarray]:
    """Bits of tokens[1:] for each token array (tokens[0] is BOS), in one or a few batched forwards."""
    items = [(i, w) for i, tokens in enumerate(token_lists) for w in plan_windows(model, len(tokens), 1)]
    items.sort(key=lambda item: item[1].stop - 1 - item[1].start)
    pieces: list[list[tuple[int, np.ndarray]]] = [[] for _ in token_lists]
    for batch in _batches(items, batch_tokens):
        width = max(w.stop - 1 - w.start for _, w in batch)
        x = torch.zeros(len(batch), width, dtype=torch.long)
        for row, (i, w) in enumerate(batch):
            x[row, : w.stop - 1 - w.start] = torch.from_numpy(token_lists[i][w.start : w.stop - 1])
        logits, _ = model(x.to(device))  # (B, width, V)
        for row, (i, w) in enumerate(batch):
            length, n = w.stop - 1 - w.start, w.stop - w.first
            logp = F.log_softmax(logits[row, length - n : length].float(), dim=-1)
            targets = torch.from_numpy(token_lists[i][w.first : w.stop]).to(device)
            bits = -logp.gather(1, targets[:, None])[:, 0] / math.log(2)
            pieces[i].append((w.first, bits.cpu().numpy()))
    return [np.concatenate([b for _, b in sorted(p, key=lambda t: t[0])]) if p else np.zeros(0) for p in pieces]


def _batches(items, batch_tokens: int):
    """Consecutive (length-sorted) windows, at most about batch_tokens padded tokens per batch."""
    batch = []
    for item in items:
        width = item[1].stop - 1 - item[1].start
        if batch and (len(batch) + 1) * width > batch_tokens:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
