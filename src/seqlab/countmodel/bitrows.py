"""The bitwise model (bitcm.py) read in lockstep: S texts side by side, one byte each per step (compress/lockstep.py).

The slow state is the model's, shared by the rows: its slots' slow probabilities and counts, mixers, APMs, bit-history
maps and match table keep learning from every row. The recent state is each row's own: a small hashed cache per row
holds, for the slots the row touched, the row's fast probabilities and bit histories (read where the row has them,
else the shared slot's: the last row's to learn there). Why: those are the model's strongest inputs,
and a context shared by the rows (the low orders, frequent words) would otherwise see the rows' bits interleaved,
so its recent bits would no longer be its text's: 27 rows in lockstep cost 3.2% more than one stream with them
shared, 0.95% with them the rows' own (docs/compress.md "The bitwise model in compress"). The mixers stay shared:
per row they gained 0.3% more there but put the tests' 2-row file 3.9% above eval, each row's mixer learning from
half its bytes. Each row has its own registers and its own region of the model's buffer. The node kernels are
bitcm's own (`_node`, `_learn_node`), run on the row's view of its slots.

_score_rows and _learn_rows are compiled in each process, not cached (cache=True): numba keys a cached function on
its own file only, but their machine code holds bitcm's kernels, so after a change to bitcm.py alone the cache gave
the old model's rows (and, loaded first, its symbols served bitcm's own stream too). Compiling them costs the first
step about 4 s of CPU against 0.4 s cached (docs/compress.md "The bitwise model in compress").
"""

import math

import numpy as np
from numba import njit

from .bitcm import N_BYTE_CTX, N_CTX, N_IN, N_OUT, N_REGS, ORDERS, BitCM, _after_byte, _claim, _contexts, _depth, \
    _find, _given_nodes, _hash, _learn_node, _node

PRIVATE_BITS = 14  # each row's cache: at most 2^14 slots of 16 entries (57 bytes a slot, 0.9 MB a row)
CACHE_SLOTS = 1 << 20  # and all rows' caches together at most this many slots (60 MB): 2^12 a row for 256 rows


def cache_bits(n_rows: int) -> int:
    """Each row's cache of n_rows (2^bits slots): PRIVATE_BITS, less where the rows would hold more than CACHE_SLOTS.
    2^14 against 2^12 a row: compress 0.96% above eval on tinyshakespeare's 27 rows, against 1.16%."""
    return min(PRIVATE_BITS, (CACHE_SLOTS // max(n_rows, 1)).bit_length() - 1)


@njit(cache=True)
def _own(pchk, pused, h, pbits):
    """The row's cache slot for hash h (one of two probed), or -1."""
    i = (h >> (64 - pbits)) & ((1 << pbits) - 1)
    if pused[i] > 0 and pchk[i] == h:
        return i
    if pused[i ^ 1] > 0 and pchk[i ^ 1] == h:
        return i ^ 1
    return -1


@njit(cache=True)
def _own_claim(pchk, pused, pfast, phist, h, pbits, fast, hist, s):
    """The row's cache slot for hash h, made from shared slot s where it was not there (the less used of the two is
    replaced): the row's recency starts from the state the shared slot holds."""
    p = _own(pchk, pused, h, pbits)
    if p < 0:
        i = (h >> (64 - pbits)) & ((1 << pbits) - 1)
        p = i if pused[i] <= pused[i ^ 1] else i ^ 1
        pchk[p] = h
        pused[p] = 0
        pfast[p, :] = fast[s, :]
        phist[p, :] = hist[s, :]
    if pused[p] < 255:
        pused[p] += 1
    return p


@njit(cache=True)
def _view(slots, owns, block, prob, fast, count, hist, pfast, phist, lslots, lprob, lfast, lcount, lhist):
    """The row's view of a nibble's slots (shared slot slots[i], the row's cache slot owns[i] or -1) in rows
    block * N_CTX + i of the local tables: the shared slow probability and count, the row's fast probability and
    bit history where it has them. lslots[block, i]: the local row, or -1 where the shared slot is missing."""
    for i in range(N_CTX):
        s = slots[i]
        r = block * N_CTX + i
        lslots[block, i] = r if s >= 0 else -1
        if s < 0:
            continue
        lprob[r, :] = prob[s, :]
        lcount[r, :] = count[s, :]
        if owns[i] >= 0:
            lfast[r, :] = pfast[owns[i], :]
            lhist[r, :] = phist[owns[i], :]
        else:
            lfast[r, :] = fast[s, :]
            lhist[r, :] = hist[s, :]


@njit(cache=True)
def _keep(slots, owns, prob, fast, count, hist, pfast, phist, lprob, lfast, lcount, lhist):
    """The learnt view (rows 0..N_CTX-1 of the local tables) back: slow state to the shared slots, recent state to
    the row's cache and to the shared slot too (the last row's: a context only this row reads, as most long ones
    are, stays the row's own there when its cache lets it go)."""
    for i in range(N_CTX):
        s = slots[i]
        prob[s, :] = lprob[i, :]
        count[s, :] = lcount[i, :]
        fast[s, :] = lfast[i, :]
        hist[s, :] = lhist[i, :]
        if owns[i] >= 0:
            pfast[owns[i], :] = lfast[i, :]
            phist[owns[i], :] = lhist[i, :]


@njit  # not cached: see the module's docstring
def _score_rows(buf, pos, regs, active, given, logp, prune, chk, prob, fast, count, hist, ism, bits, msm, w, w3, apm,
                pchk, pused, pfast, phist, pbits, xs, outs, node_given, done):
    """Lockstep: write every active row's distribution of its next byte (at buf[pos[row]], its registers regs[row],
    its cache, its mix given[row]) into logp[row], as bitcm's _predict does for one stream (the 255 nodes, less
    those under a path below `prune`); nothing is learnt."""
    ctx = np.zeros(N_CTX + N_BYTE_CTX, dtype=np.int64)
    slots = np.empty(N_CTX, dtype=np.int64)
    owns = np.empty(N_CTX, dtype=np.int64)
    lslots = np.empty((17, N_CTX), dtype=np.int64)
    lprob = np.empty_like(prob[: 17 * N_CTX])
    lfast = np.empty_like(fast[: 17 * N_CTX])
    lcount = np.empty_like(count[: 17 * N_CTX])
    lhist = np.empty_like(hist[: 17 * N_CTX])
    lp = np.zeros(512)
    sums = np.zeros(512)
    for row in range(len(pos)):
        if not active[row]:
            continue
        t = pos[row]
        _given_nodes(given, row, sums, node_given[row])
        _contexts(buf, t, regs[row], ctx)
        lp[1] = 0.0
        for c0 in range(1, 256):
            done[row, c0] = lp[c0] >= prune
            if not done[row, c0]:
                lp[2 * c0 + 1] = lp[2 * c0] = lp[c0] - math.log(2.0)
                continue
            if c0 == 1 or 16 <= c0 < 32:  # a nibble whose nodes are evaluated: the row's view of its slots
                key = 0 if c0 == 1 else c0 - 15
                for i in range(N_CTX):
                    h = _hash(ctx[i], key)
                    slots[i] = _find(chk, h, bits)
                    owns[i] = _own(pchk[row], pused[row], h, pbits) if pbits > 0 and slots[i] >= 0 else -1
                _view(slots, owns, key, prob, fast, count, hist, pfast[row], phist[row], lslots, lprob, lfast, lcount,
                      lhist)
            slot_of = lslots[0] if c0 < 16 else lslots[1 + ((c0 >> (_depth(c0) - 4)) & 15)]
            _node(c0, slot_of, lprob, lfast, lcount, lhist, ism, buf, regs[row], msm, w, w3, apm, ctx[N_CTX:],
                  node_given[row, c0], xs[row, c0], outs[row, c0])
            p = outs[row, c0, 0]
            lp[2 * c0 + 1] = lp[c0] + math.log(p)
            lp[2 * c0] = lp[c0] + math.log(1.0 - p)
        for b in range(256):
            logp[row, b] = lp[256 + b]


@njit  # not cached: see the module's docstring
def _learn_rows(buf, pos, ends, regs, active, tokens, mtab, mbits, chk, prob, fast, count, hist, ism, icount, bits, msm,
                mcount, w, w3, apm, rates, frates, lr, pchk, pused, pfast, phist, pbits, xs, outs,
                node_given, done):
    """Lockstep: every active row's byte tokens[row] written at buf[pos[row]] and learnt along its path, in row order
    (the slow state is shared: the order is the decoder's too), as bitcm's _learn_byte does for one stream, on the
    row's view of its slots; a token that is no byte (>= 256) is not read. False where a row would run past its
    region's end (ends[row])."""
    ctx = np.zeros(N_CTX + N_BYTE_CTX, dtype=np.int64)
    slots = np.empty(N_CTX, dtype=np.int64)
    owns = np.empty(N_CTX, dtype=np.int64)
    lslots = np.empty((1, N_CTX), dtype=np.int64)
    lprob = np.empty_like(prob[: N_CTX])
    lfast = np.empty_like(fast[: N_CTX])
    lcount = np.empty_like(count[: N_CTX])
    lhist = np.empty_like(hist[: N_CTX])
    for row in range(len(pos)):
        if not active[row] or tokens[row] >= 256:
            continue
        t = pos[row]
        if t >= ends[row]:
            return False
        buf[t] = tokens[row]
        _contexts(buf, t, regs[row], ctx)
        c0 = 1
        for d in range(8):
            if d == 0 or d == 4:
                key = 0 if d == 0 else (c0 & 15) + 1
                for i in range(N_CTX):
                    h = _hash(ctx[i], key)
                    slots[i] = _claim(chk, prob, fast, count, hist, h, bits)
                    owns[i] = _own_claim(pchk[row], pused[row], pfast[row], phist[row], h, pbits, fast, hist,
                                         slots[i]) if pbits > 0 else -1
                _view(slots, owns, 0, prob, fast, count, hist, pfast[row], phist[row], lslots, lprob, lfast, lcount,
                      lhist)
            if not done[row, c0]:
                _node(c0, lslots[0], lprob, lfast, lcount, lhist, ism, buf, regs[row], msm, w, w3, apm, ctx[N_CTX:],
                      node_given[row, c0], xs[row, c0], outs[row, c0])
            y = (tokens[row] >> (7 - d)) & 1
            _learn_node(c0, y, lslots[0], lprob, lfast, lcount, lhist, ism, icount, buf, regs[row], msm, mcount, w, w3,
                        apm, xs[row, c0], outs[row, c0], rates, frates, lr)
            c0 = 2 * c0 + y
            if d == 3 or d == 7:
                _keep(slots, owns, prob, fast, count, hist, pfast[row], phist[row], lprob, lfast, lcount, lhist)
        _after_byte(buf, t, regs[row], mtab, mbits)
        pos[row] = t + 1
    return True


class BitRows:
    """S texts read by one BitCM side by side, one byte each per step: shared slow state (slots' slow probabilities
    and counts, mixers, APMs, match table), per row its registers (words, match), its cache of recent state (fast
    probabilities, bit histories: 2^private_bits slots; 0: none, every row's recency in the shared slots) and its
    bytes, written to its own region of the model's buffer (PAD bytes before it: 256, "before the text", but the
    byte it is read after) so match pointers stay valid. The encoder and the decoder step it alike: `score` every
    active row, then, once the step's bytes are known, `learn` them in row order."""

    PAD = max(ORDERS) + 2

    def __init__(self, model: BitCM, first: np.ndarray, bound: int, private_bits: int | None = None):
        """len(first) texts, each at most `bound` bytes, read after its token first[row] (a byte, or BOS: none);
        private_bits: each row's cache (2^bits slots), by default cache_bits(len(first))."""
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
        self.pbits = cache_bits(n_rows) if private_bits is None else private_bits
        cache = 1 << max(self.pbits, 1)
        self.pchk = np.zeros((n_rows, cache), dtype=np.int64)
        self.pused = np.zeros((n_rows, cache), dtype=np.uint8)
        self.pfast = np.zeros((n_rows, cache, 16), dtype=m.fast.dtype)
        self.phist = np.zeros((n_rows, cache, 16), dtype=m.hist.dtype)
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
                    self.pchk, self.pused, self.pfast, self.phist, self.pbits, self.xs, self.outs, self.node_given,
                    self.done)
        return logp

    def learn(self, tokens: np.ndarray, active: np.ndarray) -> None:
        """The step's tokens (S,) of the active rows, learnt in row order after `score` gave their rows."""
        m = self.model
        if not _learn_rows(m.buf, self.pos, self.ends, self.regs, active, np.asarray(tokens, dtype=np.int64), m.mtab,
                           m.mbits, m.chk, m.prob, m.fast, m.count, m.hist, m.ism, m.icount, m.bits, m.msm, m.mcount,
                           m.w, m.w3, m.apm, m.rates, m.frates, m.lr, self.pchk, self.pused,
                           self.pfast, self.phist, self.pbits, self.xs, self.outs, self.node_given, self.done):
            raise ValueError("a lockstep row runs past its bound")


def byte_rows(logp: np.ndarray, is_byte: np.ndarray, vocab: int, floor: float = 1e-6) -> np.ndarray:
    """(n, vocab) token log-distributions from the bitwise model's (n_bytes, 256) rows, for a byte tokenizer's ids
    (0-255 the bytes; the others, BOS, get `floor`): positions where is_byte is False get a uniform row."""
    rows = np.full((len(is_byte), vocab), -np.log(vocab))
    rows[is_byte, :256] = logp + np.log1p(-floor * (vocab - 256))
    rows[is_byte, 256:] = np.log(floor)
    return rows
