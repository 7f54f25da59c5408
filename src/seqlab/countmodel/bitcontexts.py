"""The bitwise model's contexts (numba): what each of a byte's contexts hashes from the bytes before it (orders, words,
the column, the identifier, the indentation) and the registers and match model that follow the bytes. bitkernel.py
predicts and learns from these hashes (slots, mixers, APMs, updates).
Why apart: bitkernel.py was at the 500-line limit. numba keys a cached function on its own file only, but bitkernel's
machine code holds this file's functions and constants: bitkernel.py holds this file's SHA-256 and checks it at import,
so a change here changes bitkernel.py too (its cached code is compiled again). This file imports nothing of seqlab.
"""

import numpy as np
from numba import njit

ORDERS = (0, 1, 2, 3, 4, 6)  # byte contexts; then the three words', the column's two, the identifier's, the indent's,
# the byte classes', the sparse one's (the two bytes before the last), the two indirect ones', the skipping word's,
# the word's place in its line, the line's length in words with the line before's, the column with the line before's
# length
N_COLUMN = 2  # the position in the line with the byte above; the byte above with the last byte
N_CTX = len(ORDERS) + 3 + N_COLUMN + 10
N_CLASSES = 6  # the last bytes whose classes (_byte_class) are a context
MATCH_MIN = 6  # bytes hashed to find a match
N_REGS = 11  # registers: word, previous word, match pointer, match length, the word before, identifier, byte before it,
# the bytes that followed the last byte's last occurrences, and the last two bytes' (the indirect contexts), the
# words the line has had, the words the line before had (up to 15)
# the indirect tables, after the match table's 2^mbits entries: each byte's last followers (257 rows: "before the
# text" too), then each pair of bytes' (257 x 257)
INDIRECT_SIZE = 257 + 257 * 257
N_BYTE_CTX = 3  # the small contexts of a byte's nodes (after its N_CTX hashes): the last byte, the order-2 hash, the
# last two bytes' classes
K1 = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
K2 = -4658895280553007687  # 0xBF58476D1CE4E5B9
K3 = -7723592293110705685  # 0x94D049BB133111EB


@njit(cache=True, _nrt=False)
def _hash(a, b):
    x = (a + (b + 1) * K2) * K1
    x ^= (x >> 31) & 0x1FFFFFFFF
    x *= K3
    return x ^ ((x >> 29) & 0x7FFFFFFFF)


@njit(cache=True, _nrt=False)
def _line_start(buf, t):
    """Where the line holding position t starts, and whether a newline is before it (not the text's start: a
    byte 256, "before the text", or 255 bytes without one)."""
    i = t - 1
    while i >= 0 and t - i <= 255 and buf[i] != 10 and buf[i] != 256:
        i -= 1
    return i + 1, i >= 0 and buf[i] == 10


@njit(cache=True, _nrt=False)
def _column(buf, t):
    """Position t's column (bytes since the line's start), the byte above it (the line before's byte at that column;
    10 past that line's end, 256 when there is no line before), the line's indentation: a hash of its leading
    spaces and tabs (up to 63) with the first byte after them (256: none yet), and the line before's length (255:
    none)."""
    start, newline = _line_start(buf, t)
    column, i = t - start, start
    while i < t and (buf[i] == 32 or buf[i] == 9):
        i += 1
    indent = _hash(min(i - start, 63) + 7000, buf[i] if i < t else 256)
    if not newline:
        return column, 256, indent, 255
    above_start, _ = _line_start(buf, start - 1)
    above = buf[above_start + column] if above_start + column < start - 1 else 10
    return column, above, indent, start - 1 - above_start


@njit(cache=True, _nrt=False)
def _byte_class(b):
    """Byte b's class: lower (or not ASCII), upper, digit, space, newline, opening, closing, quote, other; 256: none."""
    if 97 <= b <= 122 or 128 <= b < 256:
        return 0
    if 65 <= b <= 90:
        return 1
    if 48 <= b <= 57:
        return 2
    if b == 32 or b == 9:
        return 3
    if b == 10 or b == 13:
        return 4
    if b == 40 or b == 91 or b == 123 or b == 60:
        return 5
    if b == 41 or b == 93 or b == 125 or b == 62:
        return 6
    if b == 34 or b == 39 or b == 96:
        return 7
    return 8 if b < 256 else 9


@njit(cache=True, _nrt=False)
def _classes(buf, t):
    """The classes of the N_CLASSES bytes before position t, as one number (base 10, the last byte's the lowest)."""
    h = np.int64(0)
    for j in range(N_CLASSES, 0, -1):
        h = h * 10 + _byte_class(buf[t - j] if t - j >= 0 else 256)
    return h


@njit(cache=True, _nrt=False)
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
    column, above, indent, above_length = _column(buf, t)
    last, before_last, classes = buf[t - 1] if t >= 1 else 256, buf[t - 2] if t >= 2 else 256, _classes(buf, t)
    ctx[len(ORDERS) + 3] = _hash(min(column, 127) + 5000, above)
    ctx[len(ORDERS) + 4] = _hash(above + 6000, last)
    ctx[len(ORDERS) + 5] = _hash(regs[5] + 9000, regs[6])  # code's names: `self.x`, `def f`, `class="`
    ctx[len(ORDERS) + 6] = _hash(indent, last)  # code's blocks: `    return`, `<li>`
    ctx[len(ORDERS) + 7] = _hash(classes + 10000, last)  # the text's shape
    ctx[len(ORDERS) + 8] = _hash(_hash(11000, before_last), buf[t - 3] if t >= 3 else 256)
    ctx[len(ORDERS) + 9] = _hash(last + 12000, regs[7] & 0xFFFF)  # paq8's indirect: what followed this byte
    ctx[len(ORDERS) + 10] = _hash(_hash(last + 13000, before_last), regs[8] & 0xFF)  # these two
    ctx[len(ORDERS) + 11] = _hash(regs[0], regs[4] + 14000)  # the current word with the one two before it
    ctx[len(ORDERS) + 12] = _hash(regs[0], min(regs[9], 15) + 17000)  # verse: the word's place in its line
    ctx[len(ORDERS) + 13] = _hash(_hash(min(regs[9], 15) + 20000, regs[10]), last)  # where verse's lines end
    ctx[len(ORDERS) + 14] = _hash(min(column, 127) + 25000, min(above_length, 127))  # verse: the line's end is near
    bctx[0] = last
    bctx[1] = _hash(last, before_last)
    bctx[2] = classes % 100  # the last two bytes' classes


@njit(cache=True, _nrt=False)
def _indirect(buf, t, regs, followers):
    """paq8's indirect model: byte buf[t] is written as the last follower of the byte before it and of the two before
    it (followers: INDIRECT_SIZE's tables), then the followers of buf[t] and of the last two bytes are read into
    regs[7], regs[8]."""
    b, prev = buf[t], buf[t - 1] if t >= 1 else 256
    pair = 257 + (buf[t - 2] if t >= 2 else 256) * 257 + prev
    followers[prev] = ((followers[prev] << 8) | b) & 0xFFFFFF
    followers[pair] = ((followers[pair] << 8) | b) & 0xFFFF
    regs[7], regs[8] = followers[b], followers[257 + prev * 257 + b]


@njit(cache=True, _nrt=False)
def _after_byte(buf, t, regs, mtab, mbits):
    """Word and identifier hashes, the indirect tables and the match model after byte buf[t] (regs: N_REGS's)."""
    b = buf[t]
    _indirect(buf, t, regs, mtab[1 << mbits :])
    named = 97 <= b <= 122 or 65 <= b <= 90 or 48 <= b <= 57 or b == 95 or b >= 128
    regs[5], regs[6] = (_hash(regs[5], b), regs[6]) if named else (0, b)
    c = b + 32 if 65 <= b <= 90 else b  # case-folded
    if 97 <= c <= 122 or c >= 128:
        regs[0] = _hash(regs[0], c)
    elif regs[0] != 0:
        regs[4], regs[1], regs[0], regs[9] = regs[1], regs[0], 0, regs[9] + 1
    if b == 10:  # a newline: the line's words, ended or not, become the line before's
        regs[9], regs[10] = 0, min(regs[9], 15)
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
