"""The small contexts that select the mixer's weight sets (OnlineMixer's, mixer.py) and its SSE stage's cells:
the order-1 and order-2 contexts (hashed), the bucket with what its context saw, and warmth (how much of its text
the network has read: a text's, or a compressed segment's, cold start).
"""

import numpy as np

from ..config import MIXER_SELECTORS
from .tables import _MUL

SLOT_BITS = 16  # a hashed small context's weight rows: 65,536 (an order-1 context of 4,096 tokens rarely collides)
SEEN_LEVELS = 8  # what the longest seen context saw: 1, 2, 3+ times one token, or more than one token (by count)
WARM = 64  # tokens of its text read: from here on a position counts as warm (the network's window is full)
WARMTH_LEVELS = WARM.bit_length() + 1  # 0, 1, 2-3, 4-7, ..., 32-63, 64+ tokens read (the last row stays zero)
WARMTH_COLUMN = MIXER_SELECTORS.index("warmth")
# the network's weight at warmth 0, 1, 2, ... as a share of its prior (1 from the last on; the experts' are lowered
# by as much of their average prior): chosen on the tuning slice (docs/quality.md)
WARMTH_PRIOR = (1.0, 0.3, 1.0)


def warmth(positions: np.ndarray | None, n: int) -> np.ndarray:
    """(n,) the warmth selector: log2 buckets of each position's place in its text (0, 1, 2-3, ..., 64+ tokens
    before it), the top one for every position where `positions` is None."""
    if positions is None:
        return np.full(n, WARMTH_LEVELS - 1, dtype=np.int64)
    read = np.minimum(np.asarray(positions, dtype=np.int64), WARM)
    return np.where(read > 0, np.log2(np.maximum(read, 1)).astype(np.int64) + 1, 0)  # exact: read <= 64


def small_contexts(contexts: np.ndarray, bucket: np.ndarray, types: np.ndarray, total: np.ndarray,
                   longest: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """(n, len(MIXER_SELECTORS)) slots of the small contexts that select mixing weights and the SSE stage's cells:
    the shortest order's context and the next (hashed to SLOT_BITS), the bucket with what its context saw
    (one token 1, 2 or 3+ times, or several tokens; a run model's question), and the warmth of `positions` (how
    much of its text the network has read: a segment's cold start)."""
    n = len(contexts)
    slots = [_slot(contexts[:, min(j, contexts.shape[1] - 1)]) for j in (0, 1)]
    at = np.arange(n)
    t, c = types[at, longest], total[at, longest]
    seen = np.where(bucket > 0, np.minimum(c, 3).astype(np.int64) + 4 * (t > 1), 0)
    return np.column_stack(slots + [bucket * SEEN_LEVELS + seen, warmth(positions, n)]).astype(np.int64)


def _slot(ids: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((ids * _MUL) >> np.uint64(64 - SLOT_BITS)).astype(np.int64)
