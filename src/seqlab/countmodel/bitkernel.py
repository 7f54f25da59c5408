"""The bitwise model's numba code (bitcm.py's model) but its contexts' (bitcontexts.py): the single stream (BitCM)
and compress's lockstep rows (BitRows) run the same loops, `_predict` and `_learn`, the stream being a row without a
cache of its own. Why the rows' loops are here: numba keys a cached function on its own file only, but its machine
code holds every jitted function it calls (rows' loops in another file ran the old model after a change here); the
constants it reads, likewise. So this file holds bitcontexts.py's and bitmath.py's (stretch, squash, the APMs)
SHA-256, checked at import: a change there must change this file, whose cached code is then compiled again.
The arrays travel in tuples (bitcm.BitCM builds them): learnt, rates, and a row's cache and view.
Compiled without numba's runtime (`_nrt=False`, here, in bitcontexts.py and bitmath.py): with it, every array passed
between these functions, alone or in a tuple, was reference-counted by atomic instructions, a third of the model's
time (perf, docs/quality.md); nothing here allocates.
"""

import hashlib
import math
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .bitcontexts import N_CTX, _after_byte, _contexts, _hash
from .bitmath import STRETCH, STRETCH_CLAMP, _apm, _apm_learn, _squash, _stretch

CONTEXTS_SHA256 = "194f4994d5cf41ff75dfce7410fcf8115d8f62e3b01651b58d598d751e0f08a0"
MATH_SHA256 = "225ad144a4800d5d435ffc2242e500985cb497782353a7ba2a28d22695f25d6f"  # bitmath.py's, likewise
for _name, _digest in (("bitcontexts.py", CONTEXTS_SHA256), ("bitmath.py", MATH_SHA256)):
    if hashlib.sha256(Path(__file__).with_name(_name).read_bytes()).hexdigest() != _digest:
        raise ImportError(f"{_name} changed: set its SHA-256 in bitkernel.py, so that numba compiles bitkernel's "
                          "cached code again")
PER_CTX = 3  # a context's inputs: its entry's slow and fast probabilities, and its bit history's
MATCH_IN, GIVEN_IN, BIAS_IN = PER_CTX * N_CTX, PER_CTX * N_CTX + 1, PER_CTX * N_CTX + 2  # the match model's, the
# given distribution's (score's: eval's mix), a bias
NETWORK_IN = BIAS_IN + 1  # the network's own distribution (score's second given), since 2026-12-07
LANES = 8  # a dot's partial sums (_dot): float32 x 8, one SIMD register
N_IN = -(-(NETWORK_IN + 1) // LANES) * LANES  # the mixers' inputs and weights (float32), padded with zeros to LANES
HISTORY_BITS = 6  # an entry's bit history: its last bits (up to 6) after a leading 1; 1: none yet
MATCH_SETS = 5 * (N_CTX + 1)  # mixer 2's weight sets: match length bucket x contexts seen
# the mixers, one table of weight sets: each mixer's sets (selected in _mixer_rows) from its first row
# by the partial byte; by match length and contexts seen; by the last two bytes' classes times GIVEN_BUCKETS of the
# given's confidence at the node; by the partial byte times them (one by the last byte did not pay: docs/quality.md
# "Parts of the bitwise model on new text"; the buckets since 2026-12-07: "Mixer 3's weight sets by the given's
# confidence")
GIVEN_BUCKETS = 4  # none (the training bytes: bitcm.meet_the_given copies their sets), |stretch| < 2, < 4, more
MIXER_SETS = (256, MATCH_SETS, 100 * GIVEN_BUCKETS, 256 * GIVEN_BUCKETS)
BY_CONFIDENCE = (2, 3)  # the mixers whose sets are times GIVEN_BUCKETS (bitcm.meet_the_given copies bucket 0's)
MIXER_RATES = (1.0, 0.5, 1.0, 1.0)  # each mixer's rate, times the model's (mixer 2's x0.5 since 2026-12-07)
MIXER_FROM = tuple(sum(MIXER_SETS[:k]) for k in range(len(MIXER_SETS)))
N_MIXERS = len(MIXER_SETS)
FINAL_RATE = 0.3  # the final mixer's rate, times the mixers'
# the APM stages, one table of rows (selected in _apm_rows), and each one's weight in the final average (the
# mix's own: what is left; 0.2 before 2026-12-07: docs/quality.md "Tried on the tuning slice")
# by the partial byte; with the order-2 hash; with the last byte. The first stage's 256 rows first, then the last
# two stages' 2^k rows each (bitcm.apm_bits_for: sized from the history), the last byte's first: its row (the last
# byte << 8 | the partial byte) folded to k bits (k = 16, the most: exact but the text's start, 256, on byte 0)
N_APM = 3
APM_WEIGHTS = (0.1, 0.4, 0.2)
MIX_WEIGHT = 1.0 - sum(APM_WEIGHTS)
# a node's outputs (_node's, for _learn_node): p, the final stretch, the depth, each mixer's dot and weight set's
# row, each APM stage's row
OUT_P, OUT_ST, OUT_DEPTH, OUT_DOT = 0, 1, 2, 3
OUT_SET = OUT_DOT + N_MIXERS
OUT_APM = OUT_SET + N_MIXERS
N_OUT = OUT_APM + N_APM
# a slot's columns (uint16): each entry j (1-15: a nibble's nodes) has its slow probability in column j, its fast one
# in FAST + j, its count and bit history (count | history << 8) in CH + j; column 0 is the slot's check byte. One row,
# 96 bytes, holds what a context's nodes read: two cache lines, where four arrays took five.
FAST, CH, SLOT_WIDTH = 16, 32, 48


@intrinsic
def _dot(typingctx, w, row, x):
    """w[row] . x (float32, N_IN of each) in LANES partial sums, one SIMD register: lane k sums inputs k, k + LANES,
    ... in order, then the lanes are added in a fixed order. Written as LLVM's vector operations because LLVM keeps
    a float sum's order (numba's loop stayed scalar, one chain) and reorders it only where told it may (fastmath),
    then as it likes for the CPU: this order is every CPU's, so compress's files decode anywhere."""
    def codegen(context, builder, sig, args):
        wt, _, xt = sig.args
        wrow = cgutils.get_item_pointer(context, builder, wt, context.make_array(wt)(context, builder, args[0]),
                                        [args[1], context.get_constant(types.intp, 0)])
        xs = cgutils.get_item_pointer(context, builder, xt, context.make_array(xt)(context, builder, args[2]),
                                      [context.get_constant(types.intp, 0)])
        vector = ir.VectorType(ir.FloatType(), LANES)
        acc = ir.Constant(vector, [0.0] * LANES)
        for i in range(0, N_IN, LANES):
            at = ir.Constant(ir.IntType(64), i)
            wv = builder.load(builder.bitcast(builder.gep(wrow, [at]), vector.as_pointer()), align=4)
            xv = builder.load(builder.bitcast(builder.gep(xs, [at]), vector.as_pointer()), align=4)
            acc = builder.fadd(acc, builder.fmul(wv, xv))
        lane = [builder.extract_element(acc, ir.Constant(ir.IntType(32), k)) for k in range(LANES)]
        while len(lane) > 1:  # pairwise: ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7))
            lane = [builder.fadd(lane[k], lane[k + 1]) for k in range(0, len(lane), 2)]
        return lane[0]
    return types.float32(w, row, x), codegen


@njit(cache=True, _nrt=False)
def _depth(c0):
    d = 0
    while (c0 >> (d + 1)) > 0:
        d += 1
    return d


@intrinsic
def _prefetch_pair(typingctx, table, row):
    """Ask the CPU for the cache lines of table's rows `row` and row ^ 1 (a slot and its probed twin: three lines of
    the slots, 96 bytes a row), so that a nibble's contexts' misses overlap where each waited for the one before."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        first = builder.and_(args[1], context.get_constant(types.intp, -2))
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [first, context.get_constant(types.intp, 0)])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        # named by declare_intrinsic after the pointer type, as this llvmlite spells it (LLVM remangles an old name)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p] + 3 * [i32]))
        base = builder.bitcast(ptr, i8p)
        pair_bytes = 2 * SLOT_WIDTH * (sig.args[0].dtype.bitwidth // 8)  # the slot and its twin
        for offset in range(0, pair_bytes, 64):  # llvm.prefetch(address, read, keep in every level, data)
            builder.call(fn, [builder.gep(base, [ir.Constant(ir.IntType(64), offset)]), ir.Constant(i32, 0),
                              ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(table, row), codegen


@njit(cache=True, _nrt=False)
def _copy(dst, src):
    """dst[:] = src, element by element: numba's slice assignment allocates a temporary, which needs the runtime
    (these kernels are compiled without it: no reference counts)."""
    for k in range(len(dst)):
        dst[k] = src[k]


@njit(cache=True, _nrt=False)
def _find(slots, h, bits):
    """The slot of hash h (one of two probed), or -1."""
    i = (h >> (64 - bits)) & ((1 << bits) - 1)
    c = (h >> 8) & 255
    if slots[i, 0] == c:
        return i
    if slots[i ^ 1, 0] == c:
        return i ^ 1
    return -1


@njit(cache=True, _nrt=False)
def _claim(slots, h, bits):
    """The slot of hash h, made fresh where it was not there (the less used of the two is replaced)."""
    s = _find(slots, h, bits)
    if s >= 0:
        return s
    i = (h >> (64 - bits)) & ((1 << bits) - 1)
    s = i if slots[i, CH + 1] & 255 <= slots[i ^ 1, CH + 1] & 255 else i ^ 1
    slots[s, :CH] = 32768
    slots[s, CH:] = 1 << 8  # count 0, bit history 1 (none)
    slots[s, 0] = (h >> 8) & 255
    return s


@njit(cache=True, _nrt=False)
def _own(cache, h, pbits):
    """The row's cache slot for hash h (one of two probed), or -1."""
    pchk, pused = cache[0], cache[1]
    i = (h >> (64 - pbits)) & ((1 << pbits) - 1)
    if pused[i] > 0 and pchk[i] == h:
        return i
    if pused[i ^ 1] > 0 and pchk[i ^ 1] == h:
        return i ^ 1
    return -1


@njit(cache=True, _nrt=False)
def _own_claim(cache, h, pbits, slots, s):
    """The row's cache slot for hash h, made from shared slot s where it was not there (the less used of the two is
    replaced): the row's recency starts from the state the shared slot holds."""
    pchk, pused, pfast, phist = cache
    p = _own(cache, h, pbits)
    if p < 0:
        i = (h >> (64 - pbits)) & ((1 << pbits) - 1)
        p = i if pused[i] <= pused[i ^ 1] else i ^ 1
        pchk[p] = h
        pused[p] = 0
        _copy(pfast[p], slots[s, FAST:CH])
        for j in range(16):
            phist[p, j] = slots[s, CH + j] >> 8
    pused[p] = min(pused[p] + 1, 255)
    return p


@njit(cache=True, _nrt=False)
def _nibble(slots, bits, ctx, key, claim, cache, pbits, block, view):
    """Every context's slot for nibble `key` (0: the first; the high nibble + 1: the second), found in the shared
    slots (claimed, fresh where missing, when `claim`), into view block `block`. A row without a cache (pbits 0:
    the stream) reads the shared slots themselves; a row with one reads copies (local rows block * N_CTX + i): the
    shared slow probability and count, its own fast probability and bit history where its cache has them."""
    lslots, local, where = view
    for i in range(N_CTX):  # every context's slots asked for first: their misses overlap
        _prefetch_pair(slots, (_hash(ctx[i], key) >> (64 - bits)) & ((1 << bits) - 1))
    for i in range(N_CTX):
        h = _hash(ctx[i], key)
        s = _claim(slots, h, bits) if claim else _find(slots, h, bits)
        where[0, i] = s
        if pbits == 0:
            lslots[block, i] = s
        elif claim:
            where[1, i] = _own_claim(cache, h, pbits, slots, s)
        else:
            where[1, i] = _own(cache, h, pbits) if s >= 0 else -1
    for i in range(N_CTX if pbits > 0 else 0):
        s, o, r = where[0, i], where[1, i], block * N_CTX + i
        lslots[block, i] = r if s >= 0 else -1
        if s >= 0:
            _copy(local[r], slots[s])
        if s >= 0 and o >= 0:
            _copy(local[r, FAST:CH], cache[2][o])
            for j in range(16):
                local[r, CH + j] = (local[r, CH + j] & 255) | (int(cache[3][o, j]) << 8)


@njit(cache=True, _nrt=False)
def _keep(slots, cache, pbits, view):
    """A row with a cache: its learnt view of the last nibble (block 0) back, to the shared slots, and its recent
    state to the row's cache too (the shared slot keeps the last row's: a context only this row reads, as most long
    ones are, stays the row's own there when its cache lets it go). The stream learnt in place."""
    _, local, where = view
    for i in range(N_CTX if pbits > 0 else 0):
        s, o = where[0, i], where[1, i]
        _copy(slots[s], local[i])
        if o >= 0:
            _copy(cache[2][o], local[i, FAST:CH])
            for j in range(16):
                cache[3][o, j] = local[i, CH + j] >> 8


@njit(cache=True, _nrt=False)
def _mixer_rows(c0, seen, length, bctx, given, out):
    """Each mixer's weight set at node c0, a row of the mixers' table, into out (given: the given's stretch there)."""
    out[OUT_SET] = c0
    bucket = 0 if length == 0 else 1 if length < 16 else 2 if length < 24 else 3 if length < 32 else 4
    out[OUT_SET + 1] = MIXER_FROM[1] + bucket * (N_CTX + 1) + seen
    confidence = 0 if given == 0.0 else 1 if abs(given) < 2.0 else 2 if abs(given) < 4.0 else 3
    out[OUT_SET + 2] = MIXER_FROM[2] + bctx[2] + 100 * confidence
    out[OUT_SET + 3] = MIXER_FROM[3] + c0 + 256 * confidence


@njit(cache=True, _nrt=False)
def _apm_rows(c0, bctx, apm, out):
    """Each APM stage's row at node c0, a row of the APMs' table (apm), into out."""
    mask = (len(apm) - 256) // 2 - 1
    out[OUT_APM] = c0
    out[OUT_APM + 1] = 256 + mask + 1 + ((bctx[1] ^ (c0 * 40503)) & mask)
    out[OUT_APM + 2] = 256 + (((bctx[0] << 8) | c0) & mask)


@njit(cache=True, _nrt=False)
def _node(c0, slot_of, view, learnt, buf, regs, bctx, given, network, x, out):
    """Predict node c0 (the partial byte with its leading 1) from its contexts' slots (slot_of, in the view's
    slots): fills its inputs x and its outputs out (OUT_*)."""
    slots = view[1]
    ism, _, msm, _, w, w3, apm = learnt
    d = _depth(c0)
    j = c0 if d < 4 else (1 << (d - 4)) | (c0 & ((1 << (d - 4)) - 1))
    seen = 0
    for i in range(N_CTX):
        s = slot_of[i]
        if s >= 0 and slots[s, CH + j] & 255 > 0:
            seen += 1
            x[PER_CTX * i] = STRETCH[slots[s, j] >> 4]
            x[PER_CTX * i + 1] = STRETCH[slots[s, FAST + j] >> 4]
            x[PER_CTX * i + 2] = STRETCH[int(ism[i, slots[s, CH + j] >> 8] * 4095.0)]
        else:
            x[PER_CTX * i] = x[PER_CTX * i + 1] = 0.0
            x[PER_CTX * i + 2] = STRETCH[int(ism[i, 1] * 4095.0)]
    x[MATCH_IN] = 0.0
    length = regs[3]
    if length > 0:
        predicted = buf[regs[2]] | 256
        if (predicted >> (8 - d)) == c0:
            st = _stretch(msm[min(length, 63)])
            x[MATCH_IN] = st if (predicted >> (7 - d)) & 1 == 1 else -st
    x[GIVEN_IN] = given
    x[BIAS_IN] = 0.5
    x[NETWORK_IN] = network
    for i in range(NETWORK_IN + 1, N_IN):
        x[i] = 0.0
    _mixer_rows(c0, seen, length, bctx, given, out)
    st = 0.0
    for k in range(N_MIXERS):
        out[OUT_DOT + k] = min(max(_dot(w, int(out[OUT_SET + k]), x), -STRETCH_CLAMP), STRETCH_CLAMP)
        st += w3[c0, k] * out[OUT_DOT + k]
    st = min(max(st, -STRETCH_CLAMP), STRETCH_CLAMP)  # the final mixer's
    _apm_rows(c0, bctx, apm, out)
    p = MIX_WEIGHT * _squash(st)
    for k in range(N_APM):
        p += APM_WEIGHTS[k] * _apm(apm, int(out[OUT_APM + k]), st)
    out[OUT_P] = min(max(p, 1.0 / 8192), 1.0 - 1.0 / 8192)
    out[OUT_ST] = st
    out[OUT_DEPTH] = d


@njit(cache=True, _nrt=False)
def _learn_node(c0, y, slot_of, view, learnt, buf, regs, x, out, rates, lr):
    """Update node c0 with its bit y, from its inputs x and outputs `out` (_node's)."""
    slots = view[1]
    ism, icount, msm, mcount, w, w3, apm = learnt
    srates, frates, hrates = rates
    d = int(out[OUT_DEPTH])
    j = c0 if d < 4 else (1 << (d - 4)) | (c0 & ((1 << (d - 4)) - 1))
    for i in range(N_CTX):
        s = slot_of[i]
        n, h = slots[s, CH + j] & 255, slots[s, CH + j] >> 8
        p = slots[s, j]
        p += int((y * 65535 - p) * srates[n])
        slots[s, j] = min(max(p, 32), 65503)
        f = slots[s, FAST + j]
        f += int((y * 65535 - f) * frates[n])
        slots[s, FAST + j] = min(max(f, 32), 65503)
        ism[i, h] += (y - ism[i, h]) * hrates[icount[i, h]]
        icount[i, h] = min(icount[i, h] + 1, 1023)
        h = 2 * h + y
        if h >= 1 << (HISTORY_BITS + 1):
            h = (1 << HISTORY_BITS) | (h & ((1 << HISTORY_BITS) - 1))
        slots[s, CH + j] = min(n + 1, 255) | (h << 8)
    length = regs[3]
    if length > 0:
        predicted = buf[regs[2]] | 256
        if (predicted >> (8 - d)) == c0:
            k = min(length, 63)
            hit = 1.0 if ((predicted >> (7 - d)) & 1) == y else 0.0
            msm[k] += (hit - msm[k]) * srates[mcount[k]]
            mcount[k] = min(mcount[k] + 1, 1023)
    for k in range(N_MIXERS):
        row = int(out[OUT_SET + k])
        e = np.float32(lr * MIXER_RATES[k] * (y - _squash(out[OUT_DOT + k])))
        for i in range(N_IN):  # float32: 8 a ymm register (vmulps), twice float64's
            w[row, i] += e * x[i]
    e = (y - _squash(out[OUT_ST])) * lr * FINAL_RATE
    for k in range(N_MIXERS):
        w3[c0, k] += e * out[OUT_DOT + k]
    for k in range(N_APM):
        _apm_learn(apm, int(out[OUT_APM + k]), out[OUT_ST], y, 0.02)


@njit(cache=True, _nrt=False)
def _given_sums(given, g, sums):
    """sums[c0]: the given distribution's (given[g, :256], probabilities) mass under node c0 (the leaves from 256);
    sums[0]: whether there is one (g >= 0). The network's (given[g, 256:], where given has 512 columns) likewise from
    sums[512]."""
    sums[0] = g >= 0
    sums[512] = g >= 0 and given.shape[1] == 512
    if g < 0:
        return
    for k in range(given.shape[1] // 256):
        at = 512 * k
        for b in range(256):
            sums[at + 256 + b] = given[g, 256 * k + b]
        for c0 in range(255, 0, -1):
            sums[at + c0] = sums[at + 2 * c0] + sums[at + 2 * c0 + 1]


@njit(cache=True, _nrt=False)
def _given_at(sums, c0, at=0):
    """The given distribution's input at node c0: the stretch of its probability of a 1 there (none: 0); at=512: the
    network's."""
    return _stretch(sums[at + 2 * c0 + 1] / max(sums[at + c0], 1e-300)) if sums[at] else 0.0


@njit(cache=True, _nrt=False)
def _evaluate(c0, buf, regs, slots, bits, learnt, cache, pbits, view, ctx, xs, outs, sums):
    """Node c0's probability of a 1 (its inputs and outputs into xs[c0], outs[c0]) from the slots found, none claimed:
    a nibble's first node looks up its contexts' slots first (view block 0 for the first nibble, 1 + the high nibble
    for the second). Nothing is learnt."""
    if c0 == 1 or 16 <= c0 < 32:
        key = 0 if c0 == 1 else c0 - 15
        _nibble(slots, bits, ctx, key, False, cache, pbits, key, view)
    slot_of = view[0][0] if c0 < 16 else view[0][1 + ((c0 >> (_depth(c0) - 4)) & 15)]
    _node(c0, slot_of, view, learnt, buf, regs, ctx[N_CTX:], _given_at(sums, c0), _given_at(sums, c0, 512),
          xs[c0], outs[c0])
    return outs[c0, OUT_P]


@njit(cache=True, _nrt=False)
def _predict(buf, t, regs, given, g, prune, slots, bits, learnt, cache, pbits, view, lp, ctx, xs, outs, sums, done,
             logp, row):
    """Write a row's log-distribution of its byte at buf[t] into logp[row] (the 255 nodes, less those under a node
    whose path's log-probability is below `prune`: uniform there), from the bytes before t and the row's registers
    regs; given[g] (g >= 0): other models' distributions (probabilities: the mix's, then the network's where given
    has 512 columns), inputs at each node. Fills the
    row's context hashes ctx, its nodes' inputs xs, outputs outs, the given's sums and done (which nodes were
    evaluated) for _learn; nothing is learnt. lp: scratch, the nodes' path log-probabilities."""
    lp[1] = 0.0
    _given_sums(given, g, sums)
    _contexts(buf, t, regs, ctx)
    for c0 in range(1, 256):
        done[c0] = lp[c0] >= prune
        if not done[c0]:
            lp[2 * c0 + 1] = lp[2 * c0] = lp[c0] - math.log(2.0)
            continue
        p = _evaluate(c0, buf, regs, slots, bits, learnt, cache, pbits, view, ctx, xs, outs, sums)
        lp[2 * c0 + 1] = lp[c0] + math.log(p)
        lp[2 * c0] = lp[c0] + math.log(1.0 - p)
    for b in range(256):
        logp[row, b] = lp[256 + b]


@njit(cache=True, _nrt=False)
def _predict_path(buf, t, regs, given, g, slots, bits, learnt, cache, pbits, view, ctx, xs, outs, sums, done):
    """The natural-log probability of the byte at buf[t] alone: _predict's, its path's 8 nodes only (none pruned, so
    exact where _predict's row gives a pruned subtree uniform probability), each from the bytes before t, before any
    learns (learning the byte is _learn's, from what this fills as _predict does: done holds the path's nodes)."""
    _given_sums(given, g, sums)
    _contexts(buf, t, regs, ctx)
    byte, c0, lp = buf[t], 1, 0.0
    for d in range(8):
        done[c0] = True
        p = _evaluate(c0, buf, regs, slots, bits, learnt, cache, pbits, view, ctx, xs, outs, sums)
        y = (byte >> (7 - d)) & 1
        lp += math.log(p) if y == 1 else math.log(1.0 - p)
        c0 = 2 * c0 + y
    return lp


@njit(cache=True, _nrt=False)
def _learn(buf, t, regs, predicted, mtab, mbits, slots, bits, learnt, rates, lr, cache, pbits, view, ctx, xs, outs,
           sums, done):
    """Learn a row's byte buf[t] along its path's 8 nodes, then the row's registers after it. predicted: _predict
    filled ctx, xs, outs, sums and done for t (its evaluated nodes learn from those; the others are predicted here
    from the slots claimed, fresh where none was); else every node is predicted here, without a given input."""
    if not predicted:
        sums[0] = sums[512] = 0.0
        done[:] = False
        _contexts(buf, t, regs, ctx)
    byte = buf[t]
    c0 = 1
    for d in range(8):
        if d == 0 or d == 4:
            _nibble(slots, bits, ctx, 0 if d == 0 else (c0 & 15) + 1, True, cache, pbits, 0, view)
        if not done[c0]:
            _node(c0, view[0][0], view, learnt, buf, regs, ctx[N_CTX:], _given_at(sums, c0),
                  _given_at(sums, c0, 512), xs[c0], outs[c0])
        y = (byte >> (7 - d)) & 1
        _learn_node(c0, y, view[0][0], view, learnt, buf, regs, xs[c0], outs[c0], rates, lr)
        c0 = 2 * c0 + y
        if d == 3 or d == 7:
            _keep(slots, cache, pbits, view)
    _after_byte(buf, t, regs, mtab, mbits)


@njit(cache=True, nogil=True, _nrt=False)
def _run(buf, start, stop, rows, costs, given, prune, regs, mtab, mbits, slots, bits, learnt, rates, lr, cache, view,
         lp, ctx, xs, outs, sums, done):
    """The stream (a row without a cache, pbits 0): read buf[start:stop] one byte at a time, writing for each position
    its log-distribution over the 256 bytes into rows[t - start] (_predict), or where rows is empty and costs is not,
    the byte's own natural-log probability into costs[t - start] (_predict_path), then learn the byte (_learn).
    given: (stop - start, 256) distributions over the bytes (probabilities: the caller's numpy took their exps over
    the chunk at once, vectorised), one more input at each node, or (stop - start, 512): the network's beside them,
    another, or (0, 256): none."""
    for t in range(start, stop):
        g = t - start if len(given) else -1
        if len(rows):
            _predict(buf, t, regs, given, g, prune, slots, bits, learnt, cache, 0, view, lp, ctx, xs, outs, sums, done,
                     rows, t - start)
        elif len(costs):
            costs[t - start] = _predict_path(buf, t, regs, given, g, slots, bits, learnt, cache, 0, view, ctx, xs,
                                             outs, sums, done)
        _learn(buf, t, regs, len(rows) + len(costs) > 0, mtab, mbits, slots, bits, learnt, rates, lr, cache, 0, view,
               ctx, xs, outs, sums, done)


@njit(cache=True, nogil=True, _nrt=False)
def _score_rows(buf, pos, regs, active, given, logp, prune, slots, bits, learnt, caches, pbits, view, lp, ctx, xs,
                outs, sums, done):
    """Lockstep: every active row's distribution of its next byte (at buf[pos[row]], its registers regs[row], its
    cache caches[.][row], its mix and the network's given[row]) into logp[row] (_predict); nothing is learnt."""
    for row in range(len(pos)):
        if active[row]:
            cache = (caches[0][row], caches[1][row], caches[2][row], caches[3][row])
            _predict(buf, pos[row], regs[row], given, row, prune, slots, bits, learnt, cache, pbits, view, lp,
                     ctx[row], xs[row], outs[row], sums[row], done[row], logp, row)


@njit(cache=True, nogil=True, _nrt=False)
def _learn_rows(buf, pos, ends, regs, active, tokens, mtab, mbits, slots, bits, learnt, rates, lr, caches, pbits,
                view, lp, ctx, xs, outs, sums, done):
    """Lockstep: every active row's byte tokens[row] written at buf[pos[row]] and learnt (_learn), in row order (the
    slow state is shared: the order is the decoder's too); a token that is no byte (>= 256) is not read. False where
    a row would run past its region's end (ends[row])."""
    for row in range(len(pos)):
        if not active[row] or tokens[row] >= 256:
            continue
        t = pos[row]
        if t >= ends[row]:
            return False
        buf[t] = tokens[row]
        cache = (caches[0][row], caches[1][row], caches[2][row], caches[3][row])
        _learn(buf, t, regs[row], True, mtab, mbits, slots, bits, learnt, rates, lr, cache, pbits, view, ctx[row],
               xs[row], outs[row], sums[row], done[row])
        pos[row] = t + 1
    return True
