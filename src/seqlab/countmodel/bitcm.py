"""A bitwise context-mixing model (lpaq/zpaq's design) that gives a full distribution over the next byte.

Why: compressors that predict one bit at a time in hashed contexts (lpaq, zpaq -m5, paq) beat PPM-class
counts on text by 10-15%: every context's per-bit probability adapts on its own, and a logistic mixer
weighs them per bit. seqlab mixes distributions over tokens, so this model evaluates all 255 nodes of the
byte's binary tree (the product along a leaf's path is a normalised distribution over the 256 bytes) and
updates only along the byte that came, as a compressor would.

The design, smallest first (docs/quality.md "A bitwise context-mixing expert"):
- contexts: orders 0, 1, 2, 3, 4, 6 of the last bytes; the current word (letters, case-folded), with the
  previous word, and with the two before it; the column (the position in the line with the byte above it,
  and the byte above with the last byte: verse and code line up); each hashed with the nibble already read
  to one slot of 16 entries (lpaq's layout: entry j is the node j of the nibble's 15, one check byte per
  slot, two slots probed), so one lookup serves a nibble's 15 nodes;
- each entry an adaptive probability with a count: rate 1/(n + 1.5) until n reaches LIMIT (paq's StateMap);
- a match model: the last position of the hash of the last MATCH_MIN bytes; its predicted bit's
  probability learnt per match length;
- three logistic mixers over the inputs' stretch(p) (weights selected by the partial byte; by match
  length and how many contexts were seen; by the last byte), a final mixer over them (weights per partial
  byte), then three APM stages averaged with it (partial byte; with the order-2 context; with the last byte).
Every prediction uses only the bytes before it (learn's, then the text's): a scored byte updates the model
after its distribution is written.
"""

import math

import numpy as np
from numba import njit

ORDERS = (0, 1, 2, 3, 4, 6)  # byte contexts; the three word contexts follow, then the column's
N_COLUMN = 2  # the position in the line with the byte above; the byte above with the last byte
N_CTX = len(ORDERS) + 3 + N_COLUMN
PER_CTX = 3  # a context's inputs: its entry's slow and fast probabilities, and its bit history's
N_IN = PER_CTX * N_CTX + 3  # and the match model's, the given distribution's (score's), a bias
MATCH_IN, GIVEN_IN = PER_CTX * N_CTX, PER_CTX * N_CTX + 1
HISTORY_BITS = 6  # an entry's bit history: its last bits (up to 6) after a leading 1; 1: none yet
GIVEN_PRIOR = 0.6  # the given distribution's prior weight in both mixers (the others': 0.3)
LIMIT = 127  # an entry's slow rate stops falling here: it stays 1/(LIMIT + 1.5), it keeps adapting
FAST_LIMIT = 4  # and its fast one's (each entry keeps both probabilities: a stationary and a recent view)
MATCH_MIN = 6  # bytes hashed to find a match
MATCH_SETS = 5 * (N_CTX + 1)  # mixer 2's weight sets: match length bucket x contexts seen
N_REGS = 5  # a stream's registers: current word, previous word, match pointer, match length, the word before
N_BYTE_CTX = 2  # the small contexts of a byte's nodes (after its N_CTX hashes): the last byte, the order-2 hash
# the mixers, one table of weight sets: each mixer's sets (selected in _mixer_rows) from its first row
MIXER_SETS = (256, MATCH_SETS, 257)  # by the partial byte; by match length and contexts seen; by the last byte
MIXER_FROM = tuple(sum(MIXER_SETS[:k]) for k in range(len(MIXER_SETS)))
N_MIXERS = len(MIXER_SETS)
FINAL_RATE = 0.3  # the final mixer's rate, times the mixers'
# the APM stages, one table of rows (selected in _apm_rows), and each one's weight in the final average (the
# mix's own: what is left)
APM_CELLS = 33
APM2_BITS = 16
APM_ROWS = (256, 1 << APM2_BITS, 257 * 256)  # by the partial byte; with the order-2 hash; with the last byte
APM_FROM = tuple(sum(APM_ROWS[:k]) for k in range(len(APM_ROWS)))
APM_WEIGHTS = (0.2, 0.4, 0.2)
MIX_WEIGHT = 1.0 - sum(APM_WEIGHTS)
N_APM = len(APM_ROWS)
# a node's outputs (_node's, for _learn_node): p, the final stretch, the depth, each mixer's dot and weight set's
# row, each APM stage's row
OUT_P, OUT_ST, OUT_DEPTH, OUT_DOT = 0, 1, 2, 3
OUT_SET = OUT_DOT + N_MIXERS
OUT_APM = OUT_SET + N_MIXERS
N_OUT = OUT_APM + N_APM
STRETCH_CLAMP = 8.0
STRETCH = np.clip(np.log((np.arange(4096) + 0.5) / (4096 - np.arange(4096) - 0.5)), -8.0, 8.0)
K1 = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
K2 = -4658895280553007687  # 0xBF58476D1CE4E5B9
K3 = -7723592293110705685  # 0x94D049BB133111EB


@njit(cache=True)
def _hash(a, b):
    x = (a + (b + 1) * K2) * K1
    x ^= (x >> 31) & 0x1FFFFFFFF
    x *= K3
    return x ^ ((x >> 29) & 0x7FFFFFFFF)


@njit(cache=True)
def _stretch(p):
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return min(max(math.log(p / (1.0 - p)), -STRETCH_CLAMP), STRETCH_CLAMP)


@njit(cache=True)
def _squash(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True)
def _find(chk, h, bits):
    """The slot of hash h (one of two probed), or -1."""
    i = (h >> (64 - bits)) & ((1 << bits) - 1)
    c = (h >> 8) & 255
    if chk[i] == c:
        return i
    if chk[i ^ 1] == c:
        return i ^ 1
    return -1


@njit(cache=True)
def _claim(chk, prob, fast, count, hist, h, bits):
    """The slot of hash h, made fresh where it was not there (the less used of the two is replaced)."""
    s = _find(chk, h, bits)
    if s >= 0:
        return s
    i = (h >> (64 - bits)) & ((1 << bits) - 1)
    s = i if count[i, 1] <= count[i ^ 1, 1] else i ^ 1
    chk[s] = (h >> 8) & 255
    prob[s, :] = 32768
    fast[s, :] = 32768
    count[s, :] = 0
    hist[s, :] = 1
    return s


@njit(cache=True)
def _line_start(buf, t):
    """Where the line holding position t starts, and whether a newline is before it (not the text's start: a
    byte 256, "before the text", or 255 bytes without one)."""
    i = t - 1
    while i >= 0 and t - i <= 255 and buf[i] != 10 and buf[i] != 256:
        i -= 1
    return i + 1, i >= 0 and buf[i] == 10


@njit(cache=True)
def _column(buf, t):
    """Position t's column (bytes since the line's start) and the byte above it (the line before's byte at that
    column; 10 past that line's end, 256 when there is no line before)."""
    start, newline = _line_start(buf, t)
    column = t - start
    if not newline:
        return column, 256
    above_start, _ = _line_start(buf, start - 1)
    return column, buf[above_start + column] if above_start + column < start - 1 else 10


@njit(cache=True)
def _contexts(buf, t, regs, ctx):
    """The context hashes before position t (regs: the words), then (from N_CTX) the small contexts of its nodes'
    mixers and APMs."""
    bctx = ctx[N_CTX:]
    for k in range(len(ORDERS)):
        h = np.int64(ORDERS[k] + 1)
        for j in range(1, ORDERS[k] + 1):
            h = _hash(h, buf[t - j] if t - j >= 0 else 256)
        ctx[k] = h
    ctx[len(ORDERS)] = _hash(regs[0], 1000)
    ctx[len(ORDERS) + 1] = _hash(regs[0], regs[1] + 2000)
    ctx[len(ORDERS) + 2] = _hash(_hash(regs[0], regs[1] + 3000), regs[4])
    column, above = _column(buf, t)
    ctx[len(ORDERS) + 3] = _hash(min(column, 127) + 5000, above)
    ctx[len(ORDERS) + 4] = _hash(above + 6000, buf[t - 1] if t >= 1 else 256)
    bctx[0] = buf[t - 1] if t >= 1 else 256
    bctx[1] = _hash(bctx[0], buf[t - 2] if t >= 2 else 256)


@njit(cache=True)
def _after_byte(buf, t, regs, mtab, mbits):
    """Word hashes and the match model after byte buf[t] (regs: N_REGS's)."""
    c = buf[t]
    if 65 <= c <= 90:
        c += 32
    if 97 <= c <= 122 or c >= 128:
        regs[0] = _hash(regs[0], c)
    elif regs[0] != 0:
        regs[4], regs[1], regs[0] = regs[1], regs[0], 0
    if regs[3] > 0 and buf[regs[2]] == buf[t]:
        regs[3] = min(regs[3] + 1, 65535)
        regs[2] += 1
    else:
        regs[3] = 0
    if t + 1 >= MATCH_MIN:
        h = np.int64(7)
        for j in range(MATCH_MIN):
            h = _hash(h, buf[t - j])
        slot = (h >> (64 - mbits)) & ((1 << mbits) - 1)
        if regs[3] == 0:
            ptr = mtab[slot]
            if ptr > 0:
                n = 0
                while n < 32 and ptr - 1 - n >= 0 and buf[ptr - 1 - n] == buf[t - n]:
                    n += 1
                if n >= MATCH_MIN:
                    regs[2], regs[3] = ptr, n
        mtab[slot] = t + 1


@njit(cache=True)
def _match_bucket(length):
    if length == 0:
        return 0
    if length < 16:
        return 1
    if length < 24:
        return 2
    if length < 32:
        return 3
    return 4


@njit(cache=True)
def _mixer_rows(c0, seen, length, bctx, out):
    """Each mixer's weight set at node c0, a row of the mixers' table, into out."""
    out[OUT_SET] = c0
    out[OUT_SET + 1] = MIXER_FROM[1] + _match_bucket(length) * (N_CTX + 1) + seen
    out[OUT_SET + 2] = MIXER_FROM[2] + bctx[0]


@njit(cache=True)
def _apm_rows(c0, bctx, out):
    """Each APM stage's row at node c0, a row of the APMs' table, into out."""
    out[OUT_APM] = c0
    out[OUT_APM + 1] = APM_FROM[1] + ((bctx[1] ^ (c0 * 40503)) & ((1 << APM2_BITS) - 1))
    out[OUT_APM + 2] = APM_FROM[2] + bctx[0] * 256 + c0


@njit(cache=True)
def _node(c0, slot_of, prob, fast, count, hist, ism, buf, regs, msm, w, w3, apm, bctx, given, x, out):
    """Predict node c0 (the partial byte with its leading 1) from its contexts' slots: fills its inputs x and
    its outputs out (OUT_*)."""
    d = _depth(c0)
    j = c0 if d < 4 else (1 << (d - 4)) | (c0 & ((1 << (d - 4)) - 1))
    seen = 0
    for i in range(N_CTX):
        s = slot_of[i]
        if s >= 0 and count[s, j] > 0:
            seen += 1
            x[PER_CTX * i] = STRETCH[prob[s, j] >> 4]
            x[PER_CTX * i + 1] = STRETCH[fast[s, j] >> 4]
            x[PER_CTX * i + 2] = STRETCH[int(ism[i, hist[s, j]] * 4095.0)]
        else:
            x[PER_CTX * i] = x[PER_CTX * i + 1] = 0.0
            x[PER_CTX * i + 2] = STRETCH[int(ism[i, 1] * 4095.0)]
    x[MATCH_IN] = 0.0
    length = regs[3]
    if length > 0:
        predicted = buf[regs[2]] | 256
        if (predicted >> (8 - d)) == c0:
            bit = (predicted >> (7 - d)) & 1
            st = _stretch(msm[min(length, 63)])
            x[MATCH_IN] = st if bit == 1 else -st
    x[GIVEN_IN] = given
    x[N_IN - 1] = 0.5
    _mixer_rows(c0, seen, length, bctx, out)
    st = 0.0
    for k in range(N_MIXERS):
        row = int(out[OUT_SET + k])
        dot = 0.0
        for i in range(N_IN):
            dot += w[row, i] * x[i]
        out[OUT_DOT + k] = min(max(dot, -STRETCH_CLAMP), STRETCH_CLAMP)
        st += w3[c0, k] * out[OUT_DOT + k]
    st = min(max(st, -STRETCH_CLAMP), STRETCH_CLAMP)  # the final mixer's
    _apm_rows(c0, bctx, out)
    p = MIX_WEIGHT * _squash(st)
    for k in range(N_APM):
        p += APM_WEIGHTS[k] * _apm(apm, int(out[OUT_APM + k]), st)
    out[OUT_P] = min(max(p, 1.0 / 8192), 1.0 - 1.0 / 8192)
    out[OUT_ST] = st
    out[OUT_DEPTH] = d


@njit(cache=True)
def _apm(table, row, st):
    pos = (st + STRETCH_CLAMP) * (APM_CELLS - 1) / (2 * STRETCH_CLAMP)
    lo = min(int(pos), APM_CELLS - 2)
    f = pos - lo
    return table[row, lo] * (1 - f) + table[row, lo + 1] * f


@njit(cache=True)
def _apm_learn(table, row, st, y, rate):
    pos = (st + STRETCH_CLAMP) * (APM_CELLS - 1) / (2 * STRETCH_CLAMP)
    lo = min(int(pos), APM_CELLS - 2)
    f = pos - lo
    table[row, lo] += (y - table[row, lo]) * rate * (1 - f)
    table[row, lo + 1] += (y - table[row, lo + 1]) * rate * f


@njit(cache=True)
def _learn_node(c0, y, slot_of, prob, fast, count, hist, ism, icount, buf, regs, msm, mcount, w, w3, apm, x, out,
                rates, frates, lr):
    """Update node c0 with its bit y, from its inputs x and outputs `out` (_node's)."""
    d = int(out[OUT_DEPTH])
    j = c0 if d < 4 else (1 << (d - 4)) | (c0 & ((1 << (d - 4)) - 1))
    for i in range(N_CTX):
        s = slot_of[i]
        n = count[s, j]
        p = prob[s, j]
        p += int((y * 65535 - p) * rates[n])
        prob[s, j] = min(max(p, 32), 65503)
        f = fast[s, j]
        f += int((y * 65535 - f) * frates[n])
        fast[s, j] = min(max(f, 32), 65503)
        h = hist[s, j]
        ism[i, h] += (y - ism[i, h]) / (icount[i, h] + 1.5)
        if icount[i, h] < 1023:
            icount[i, h] += 1
        h = 2 * h + y
        if h >= 1 << (HISTORY_BITS + 1):
            h = (1 << HISTORY_BITS) | (h & ((1 << HISTORY_BITS) - 1))
        hist[s, j] = h
        if n < 255:
            count[s, j] = n + 1
    length = regs[3]
    if length > 0:
        predicted = buf[regs[2]] | 256
        if (predicted >> (8 - d)) == c0:
            k = min(length, 63)
            hit = 1.0 if ((predicted >> (7 - d)) & 1) == y else 0.0
            msm[k] += (hit - msm[k]) * rates[mcount[k]]
            if mcount[k] < 1023:
                mcount[k] += 1
    for k in range(N_MIXERS):
        row = int(out[OUT_SET + k])
        e = y - _squash(out[OUT_DOT + k])
        for i in range(N_IN):
            w[row, i] += lr * e * x[i]
    e = (y - _squash(out[OUT_ST])) * lr * FINAL_RATE
    for k in range(N_MIXERS):
        w3[c0, k] += e * out[OUT_DOT + k]
    for k in range(N_APM):
        _apm_learn(apm, int(out[OUT_APM + k]), out[OUT_ST], y, 0.02)


@njit(cache=True)
def _given_nodes(given, g, sums, node_given):
    """node_given[c0]: the stretch of the given distribution's (given[g]; g < 0: none, 0) probability of a 1 at
    node c0."""
    node_given[:] = 0.0
    if g < 0:
        return
    for b in range(256):
        sums[256 + b] = math.exp(given[g, b])
    for c0 in range(255, 0, -1):
        sums[c0] = sums[2 * c0] + sums[2 * c0 + 1]
        node_given[c0] = _stretch(sums[2 * c0 + 1] / max(sums[c0], 1e-300))


@njit(cache=True)
def _predict(buf, t, regs, given, g, prune, chk, prob, fast, count, hist, ism, bits, msm, w, w3, apm,
             ctx, slots1, slots2, xs, outs, lp, sums, node_given, done, logp, row):
    """Write position t's log-distribution over the 256 bytes into logp[row] (the 255 nodes, less those under a node
    whose path's log-probability is below `prune`: uniform there), from the bytes before t in buf and the stream's
    registers regs; given[g] (g >= 0): another model's log-distribution, one more input at each node. Fills the
    nodes' inputs xs, outputs outs, node_given and done (which nodes were evaluated) for _learn_byte."""
    _given_nodes(given, g, sums, node_given)
    _contexts(buf, t, regs, ctx)
    for i in range(N_CTX):
        slots1[i] = _find(chk, _hash(ctx[i], 0), bits)
    lp[1] = 0.0
    for c0 in range(1, 256):
        done[c0] = lp[c0] >= prune
        if not done[c0]:
            lp[2 * c0 + 1] = lp[2 * c0] = lp[c0] - math.log(2.0)
            continue
        if 16 <= c0 < 32:  # a high nibble whose low nibble's nodes are evaluated: its slots
            for i in range(N_CTX):
                slots2[c0 - 16, i] = _find(chk, _hash(ctx[i], c0 - 15), bits)
        slot_of = slots1 if c0 < 16 else slots2[(c0 >> (_depth(c0) - 4)) & 15]
        _node(c0, slot_of, prob, fast, count, hist, ism, buf, regs, msm, w, w3, apm, ctx[N_CTX:], node_given[c0],
              xs[c0], outs[c0])
        p = outs[c0, 0]
        lp[2 * c0 + 1] = lp[c0] + math.log(p)
        lp[2 * c0] = lp[c0] + math.log(1.0 - p)
    for b in range(256):
        logp[row, b] = lp[256 + b]


@njit(cache=True)
def _learn_byte(buf, t, regs, predicted, mtab, mbits, chk, prob, fast, count, hist, ism, icount, bits, msm, mcount,
                w, w3, apm, rates, frates, lr, ctx, slots1, slots2, xs, outs, node_given, done):
    """Learn byte buf[t] along its path's 8 nodes, then the stream's registers after it. predicted: _predict filled
    xs, outs, node_given and done for t (its evaluated nodes learn from those; the others are predicted here from
    the slots claimed, fresh where none was); else every node is predicted here, without a given input."""
    if not predicted:
        node_given[:] = 0.0
    _contexts(buf, t, regs, ctx)
    byte = buf[t]
    for i in range(N_CTX):
        slots1[i] = _claim(chk, prob, fast, count, hist, _hash(ctx[i], 0), bits)
    c0 = 1
    for d in range(8):
        if d == 4:
            for i in range(N_CTX):
                slots2[0, i] = _claim(chk, prob, fast, count, hist, _hash(ctx[i], (c0 & 15) + 1), bits)
        slot_of = slots1 if d < 4 else slots2[0]
        if not predicted or not done[c0]:
            _node(c0, slot_of, prob, fast, count, hist, ism, buf, regs, msm, w, w3, apm, ctx[N_CTX:],
                  node_given[c0], xs[c0], outs[c0])
        y = (byte >> (7 - d)) & 1
        _learn_node(c0, y, slot_of, prob, fast, count, hist, ism, icount, buf, regs, msm, mcount, w, w3, apm,
                    xs[c0], outs[c0], rates, frates, lr)
        c0 = 2 * c0 + y
    _after_byte(buf, t, regs, mtab, mbits)


@njit(cache=True)
def _run(buf, start, stop, full, logp, given, prune, regs, mtab, mbits, chk, prob, fast, count, hist, ism, icount,
         bits, msm, mcount, w, w3, apm, rates, frates, lr):
    """Read buf[start:stop] one byte at a time (one stream: one row of _rows): where `full`, write each position's
    log-distribution over the 256 bytes into logp[t - start] (_predict), then learn the byte (_learn_byte).
    given: (stop - start, 256) log-distributions over the bytes, one more input at each node, or (0, 256): none."""
    ctx = np.zeros(N_CTX + N_BYTE_CTX, dtype=np.int64)
    slots1 = np.empty(N_CTX, dtype=np.int64)
    slots2 = np.empty((16, N_CTX), dtype=np.int64)
    xs = np.zeros((256, N_IN))
    outs = np.zeros((256, N_OUT))
    lp = np.zeros(512)
    sums = np.zeros(512)
    node_given = np.zeros(256)
    done = np.zeros(256, dtype=np.bool_)
    for t in range(start, stop):
        if full:
            _predict(buf, t, regs, given, t - start if len(given) else -1, prune, chk, prob, fast, count, hist, ism,
                     bits, msm, w, w3, apm, ctx, slots1, slots2, xs, outs, lp, sums, node_given, done,
                     logp, t - start)
        _learn_byte(buf, t, regs, full, mtab, mbits, chk, prob, fast, count, hist, ism, icount, bits, msm, mcount,
                    w, w3, apm, rates, frates, lr, ctx, slots1, slots2, xs, outs, node_given, done)


@njit(cache=True)
def _depth(c0):
    d = 0
    while (c0 >> (d + 1)) > 0:
        d += 1
    return d


class BitCM:
    """A bitwise context-mixing model over bytes: `learn` what came before, `score` a text causally.

    >>> m = BitCM(table_bits=16); m.learn(b"abcabcabc"); m.score(b"abc").shape
    (3, 256)
    """

    def __init__(self, table_bits: int = 22, match_bits: int = 20, learning_rate: float = 0.0015, limit: int = LIMIT,
                 fast_limit: int = FAST_LIMIT, prune: float = 1e-4):
        self.bits, self.mbits, self.lr, self.prune = table_bits, match_bits, learning_rate, math.log(prune)
        n = 1 << table_bits
        self.chk = np.zeros(n, dtype=np.uint8)
        self.prob = np.full((n, 16), 32768, dtype=np.uint16)
        self.fast = np.full((n, 16), 32768, dtype=np.uint16)
        self.hist = np.ones((n, 16), dtype=np.uint8)
        self.ism = np.full((N_CTX, 1 << (HISTORY_BITS + 1)), 0.5)  # each context's probability per bit history
        self.icount = np.zeros((N_CTX, 1 << (HISTORY_BITS + 1)), dtype=np.int64)
        self.count = np.zeros((n, 16), dtype=np.uint8)
        self.mtab = np.zeros(1 << match_bits, dtype=np.int64)
        self.msm = np.full(64, 0.75)
        self.mcount = np.zeros(64, dtype=np.int64)
        self.w = np.full((sum(MIXER_SETS), N_IN), 0.3)  # every mixer's weight sets
        self.w[:, :MATCH_IN] = 0.1  # three inputs per context
        self.w[:, GIVEN_IN] = GIVEN_PRIOR
        self.w3 = np.full((256, N_MIXERS), 1.0 / N_MIXERS)  # the final mixer's, over the mixers', per partial byte
        cells = 1.0 / (1.0 + np.exp(-np.linspace(-STRETCH_CLAMP, STRETCH_CLAMP, APM_CELLS)))
        self.apm = np.tile(cells, (sum(APM_ROWS), 1))  # every APM stage's rows
        self.rates = 1.0 / (np.minimum(np.arange(1024), limit) + 1.5)
        self.frates = 1.0 / (np.minimum(np.arange(1024), fast_limit) + 1.5)
        self.regs = np.zeros(N_REGS, dtype=np.int64)
        self.buf = np.zeros(1 << 16, dtype=np.int64)
        self.n = 0  # bytes read
        self.rows_from = None  # where lockstep rows' regions start (bitrows.py)

    def _append(self, data) -> int:
        data = np.frombuffer(bytes(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data)
        if self.n + len(data) > len(self.buf):
            grown = np.zeros(max(2 * len(self.buf), self.n + len(data)), dtype=np.int64)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        start = self.n
        self.buf[start : start + len(data)] = data
        self.n += len(data)
        return start

    def _run(self, start: int, full: bool, given: np.ndarray | None = None) -> np.ndarray:
        logp = np.zeros((self.n - start if full else 0, 256))
        given = np.zeros((0, 256)) if given is None else np.ascontiguousarray(given, dtype=np.float64)
        assert len(given) in (0, self.n - start)
        _run(self.buf, start, self.n, full, logp, given, self.prune, self.regs, self.mtab, self.mbits, self.chk,
             self.prob, self.fast, self.count, self.hist, self.ism, self.icount, self.bits, self.msm, self.mcount,
             self.w, self.w3, self.apm, self.rates, self.frates, self.lr)
        return logp

    def learn(self, data) -> None:
        """Read `data` (bytes, or byte values), learning each byte after predicting it along its path only."""
        self._run(self._append(data), full=False)

    def score(self, data, given: np.ndarray | None = None) -> np.ndarray:
        """(len(data), 256) natural-log distributions over each byte of `data`, each from the bytes before it;
        the model learns each byte after writing its row. given: (len(data), 256) log-distributions of another
        model (eval's mix), mixed in bit by bit as one more input."""
        return self._run(self._append(data), True, given)

    def ends_with(self, data) -> bool:
        """Whether the bytes read so far end with `data` (a text's context already read)."""
        data = np.asarray(data)
        return len(data) <= self.n and bool(np.array_equal(self.buf[self.n - len(data) : self.n], data))
