"""The bitwise model (bitcm.py) read in lockstep: S texts side by side, one byte each per step (compress/lockstep.py).

The tables are the model's, shared by the rows; each row has its own registers and its own region of the model's
buffer. The per-byte kernels are bitcm's own (`_predict`, `_learn_byte`): eval's single stream is one row.
"""

import numpy as np
from numba import njit

from .bitcm import N_BYTE_CTX, N_CTX, N_IN, N_OUT, N_REGS, ORDERS, BitCM, _learn_byte, _predict


@njit(cache=True)
def _score_rows(buf, pos, regs, active, given, logp, prune, chk, prob, fast, count, hist, ism, bits, msm, w, w3, apm,
                xs, outs, node_given, done):
    """Lockstep: write every active row's distribution of its next byte (at buf[pos[row]], its own registers
    regs[row], its mix given[row]) into logp[row], from the tables as they are; nothing is learnt."""
    ctx = np.zeros(N_CTX + N_BYTE_CTX, dtype=np.int64)
    slots1 = np.empty(N_CTX, dtype=np.int64)
    slots2 = np.empty((16, N_CTX), dtype=np.int64)
    lp = np.zeros(512)
    sums = np.zeros(512)
    for row in range(len(pos)):
        if active[row]:
            _predict(buf, pos[row], regs[row], given, row, prune, chk, prob, fast, count, hist, ism, bits, msm, w, w3,
                     apm, ctx, slots1, slots2, xs[row], outs[row], lp, sums, node_given[row], done[row],
                     logp, row)


@njit(cache=True)
def _learn_rows(buf, pos, ends, regs, active, tokens, mtab, mbits, chk, prob, fast, count, hist, ism, icount, bits, msm,
                mcount, w, w3, apm, rates, frates, lr, xs, outs, node_given, done):
    """Lockstep: every active row's byte tokens[row] written at buf[pos[row]] and learnt, in row order (the tables
    are shared: the order is the decoder's too); a token that is no byte (>= 256) is not read. False where a row
    would run past its region's end (ends[row])."""
    ctx = np.zeros(N_CTX + N_BYTE_CTX, dtype=np.int64)
    slots1 = np.empty(N_CTX, dtype=np.int64)
    slots2 = np.empty((16, N_CTX), dtype=np.int64)
    for row in range(len(pos)):
        if active[row] and tokens[row] < 256:
            t = pos[row]
            if t >= ends[row]:
                return False
            buf[t] = tokens[row]
            _learn_byte(buf, t, regs[row], True, mtab, mbits, chk, prob, fast, count, hist, ism, icount, bits, msm,
                        mcount, w, w3, apm, rates, frates, lr, ctx, slots1, slots2, xs[row], outs[row],
                        node_given[row], done[row])
            pos[row] = t + 1
    return True


class BitRows:
    """S texts read by one BitCM side by side, one byte each per step: shared tables (slots, mixers, APMs, match
    table), per row its registers (words, match) and its bytes, written to its own region of the model's buffer
    (PAD bytes before it: 256, "before the text", but the byte it is read after) so match pointers stay valid.
    The encoder and the decoder step it alike: `score` every active row, then, once the step's bytes are known,
    `learn` them in row order."""

    PAD = max(ORDERS) + 2

    def __init__(self, model: BitCM, first: np.ndarray, bound: int):
        """len(first) texts, each at most `bound` bytes, read after its token first[row] (a byte, or BOS: none)."""
        self.model = m = model
        if m.rows_from is None:
            m.rows_from = m.n
        m.n = m.rows_from  # a block's rows over the last block's regions: the buffer stays one block's size
        n_rows, size = len(first), self.PAD + bound
        region = np.full((n_rows, size), 256, dtype=np.int64)
        region[:, self.PAD - 1] = np.where(first < 256, first, 256)
        start = m._append(region.ravel())
        self.pos = start + np.arange(n_rows, dtype=np.int64) * size + self.PAD
        self.ends = self.pos + bound
        self.regs = np.zeros((n_rows, N_REGS), dtype=np.int64)
        self.xs = np.zeros((n_rows, 256, N_IN))
        self.outs = np.zeros((n_rows, 256, N_OUT))
        self.node_given = np.zeros((n_rows, 256))
        self.done = np.zeros((n_rows, 256), dtype=np.bool_)

    def score(self, given: np.ndarray, active: np.ndarray) -> np.ndarray:
        """(S, 256) log-distributions of every active row's next byte, its row of given (S, 256: the mix's
        log-distributions over the bytes) one more input at each node (others' rows: 0)."""
        m = self.model
        logp = np.zeros((len(self.pos), 256))
        _score_rows(m.buf, self.pos, self.regs, active, np.ascontiguousarray(given, dtype=np.float64), logp, m.prune,
                    m.chk, m.prob, m.fast, m.count, m.hist, m.ism, m.bits, m.msm, m.w, m.w3, m.apm,
                    self.xs, self.outs, self.node_given, self.done)
        return logp

    def learn(self, tokens: np.ndarray, active: np.ndarray) -> None:
        """The step's tokens (S,) of the active rows, learnt in row order after `score` gave their rows."""
        m = self.model
        if not _learn_rows(m.buf, self.pos, self.ends, self.regs, active, np.asarray(tokens, dtype=np.int64), m.mtab,
                           m.mbits, m.chk, m.prob, m.fast, m.count, m.hist, m.ism, m.icount, m.bits, m.msm, m.mcount,
                           m.w, m.w3, m.apm, m.rates, m.frates, m.lr, self.xs, self.outs,
                           self.node_given, self.done):
            raise ValueError("a lockstep row runs past its bound")
