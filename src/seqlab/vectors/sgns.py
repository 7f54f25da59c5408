"""Word2vec's inner loop over free word rows, compiled: skipgram.py's rows step without torch.

A step takes `batch` pairs (centre c, context o) in order, each with `negatives` words drawn from the unigram
distribution ** 0.75, and moves the rows by plain SGD on the summed loss
-log sigmoid(v_c . u_o) - sum_n log sigmoid(-v_c . u_n): with g = rate (label - sigmoid(v_c . u_w)) per word w,
u_w += g v_c and v_c += g u_w summed over the step, every term computed from the rows as the step found them.
That is the step skipgram.train_skipgram takes with torch's sparse SGD; here it is a loop with no autograd and
no sparse tensors, several times faster on a CPU. Imported where used, not at seqlab's import: importing numba
costs every verb's start ~0.3 s.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def train_steps(rows, outputs, centres, contexts, cumulative, negatives, batch, first, last, begin, end, seed):
    """Steps of `batch` pairs over centres/contexts, rows (V, dim) and outputs (V, dim) moved in place;
    `cumulative` is the noise distribution's running sum (ending at 1); the rate falls linearly from first to
    last over the whole run, of which these pairs are the share from `begin` to `end` (a step keeps its first
    pair's rate). Returns each step's loss per pair."""
    np.random.seed(seed)
    n, dim, width = len(centres), rows.shape[1], negatives + 1
    steps = (n + batch - 1) // batch
    losses = np.empty(steps, np.float64)
    words = np.empty((batch, width), np.int64)
    grads = np.empty((batch, width), np.float32)
    change = np.empty((batch, dim), np.float32)
    for step in range(steps):
        at = step * batch
        size = min(batch, n - at)
        rate = first + (last - first) * (begin + (end - begin) * at / n)
        loss = 0.0
        for i in range(size):  # every term from the rows as the step found them
            c = centres[at + i]
            for k in range(width):
                w = contexts[at + i] if k == 0 else np.searchsorted(cumulative, np.random.random(), side="right")
                dot = 0.0
                for d in range(dim):
                    dot += rows[c, d] * outputs[w, d]
                p = 1.0 / (1.0 + math.exp(-dot))
                label = 1.0 if k == 0 else 0.0
                loss -= math.log(max(p if k == 0 else 1.0 - p, 1e-30))
                words[i, k], grads[i, k] = w, rate * (label - p)
        for i in range(size):
            for d in range(dim):
                total = 0.0
                for k in range(width):
                    total += grads[i, k] * outputs[words[i, k], d]
                change[i, d] = total
        for i in range(size):
            c = centres[at + i]
            for k in range(width):
                for d in range(dim):
                    outputs[words[i, k], d] += grads[i, k] * rows[c, d]
        for i in range(size):
            c = centres[at + i]
            for d in range(dim):
                rows[c, d] += change[i, d]
        losses[step] = loss / size
    return losses
