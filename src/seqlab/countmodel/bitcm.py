"""A bitwise context-mixing model (lpaq/zpaq's design) that gives a full distribution over the next byte.

Why: compressors that predict one bit at a time in hashed contexts (lpaq, zpaq -m5, paq) beat PPM-class
counts on text by 10-15%: every context's per-bit probability adapts on its own, and a logistic mixer
weighs them per bit. seqlab mixes distributions over tokens, so this model evaluates all 255 nodes of the
byte's binary tree (the product along a leaf's path is a normalised distribution over the 256 bytes) and
updates only along the byte that came, as a compressor would.

The design, smallest first (docs/quality.md "A bitwise context-mixing expert"):
- contexts: orders 0, 1, 2, 3, 4, 6 of the last bytes; the current word (letters, case-folded), with the
  previous word, and with the two before it; the column (the position in the line with the byte above it,
  and the byte above with the last byte: verse and code line up); the current identifier (letters, digits, _,
  case kept) with the byte before it (code's names: `self.x`, `def f`); the line's indentation (its leading
  whitespace with the first byte after it) with the last byte (code's blocks); the classes of the last 6 bytes
  (lower, upper, digit, space, newline, bracket, quote...) with the last byte (the text's shape); the two bytes
  before the last (sparse); paq8's indirect contexts (the last byte with the two bytes that followed its last
  occurrences; the last two bytes with the one byte that followed theirs); the current word with the one two
  before it (skipping one); the current word with its place in the line (words so far); the line's words so far
  with the line before's and the last byte, and the column with the line before's length (where verse lines end);
  each hashed with the nibble already read to one slot of 16 entries (lpaq's layout:
  entry j is the node j of the nibble's 15, one check byte per slot, two slots probed), so one lookup serves a
  nibble's 15 nodes;
- each entry an adaptive probability with a count: rate 1/(n + 1.5) until n reaches LIMIT (paq's StateMap);
- a match model: the last position of the hash of the last MATCH_MIN bytes; its predicted bit's
  probability learnt per match length;
- four logistic mixers over the inputs' stretch(p) (weights selected by the partial byte; by match
  length and how many contexts were seen, at half the others' rate; by the last two bytes' classes with how sure the
  given is at the node; by the partial byte with it; eval's mix one input, and since 2026-12-07 the network's own
  distribution another, its weight 0 at first), a final mixer over them (weights per partial byte), then three APM
  stages averaged with it (partial byte; with the order-2 context; with the last byte).
Every prediction uses only the bytes before it (learn's, then the text's): a scored byte updates the model
after its distribution is written. The numba code (this stream's, and compress's lockstep rows', bitrows.py) is
bitkernel.py's, its contexts' bitcontexts.py's.
"""

import math

import numpy as np

from .bitcontexts import INDIRECT_SIZE, N_BYTE_CTX, N_CTX, N_REGS
from .bitkernel import BIAS_IN, BY_CONFIDENCE, GIVEN_BUCKETS, GIVEN_IN, HISTORY_BITS, MATCH_IN, MIXER_FROM, \
    MIXER_SETS, N_IN, N_MIXERS, N_OUT, SLOT_WIDTH, CH, _run
from .bitmath import APM_CELLS, STRETCH_CLAMP

GIVEN_PRIOR = 0.4  # the given distribution's prior weight in the mixers (the others': 0.3; 0.6 before 2026-12-07)
# the mixers' weights learnt without a given (the training bytes) shrink by this at the first given: they had the
# prediction to themselves (1.0 before 2026-12-07: docs/quality.md "Tried on the tuning slice")
SHRINK_AT_THE_GIVEN = 0.8
LIMIT = 255  # an entry's slow rate stops falling here (its count's most): it stays 1/(LIMIT + 1.5), it keeps adapting
FAST_LIMIT = 16  # and its fast one's (each entry keeps both probabilities: a stationary and a recent view); 127 and 4
# before 2026-12-07 (docs/quality.md "Tried on the tuning slice")
N_BLOCKS = 17  # a byte's nibbles whose slots a view holds: the first, and the second after each high nibble
TABLE_BITS = 22  # 2^22 slots of 16 entries (403 MB): what eval's and compress's model reads the training bytes into
MIN_TABLE_BITS = 16  # a small history's table (6 MB)


def given_probabilities(given: np.ndarray, network: np.ndarray | None) -> np.ndarray:
    """The kernel's given: the mix's log-distributions (n, 256) as probabilities, the network's beside them (n, 512)
    where there are some (exps by numpy, vectorised over a chunk)."""
    given = np.exp(np.asarray(given, dtype=np.float64))
    return given if network is None else np.concatenate([given, np.exp(np.asarray(network, dtype=np.float64))], 1)


def table_bits_for(n_bytes: int) -> int:
    """The slot table's bits for a history of n_bytes: about four slots per byte read, as a 1 MB history has in
    2^22 (fewer lose bits there: docs/quality.md), so that a small corpus's state is small on disk."""
    return min(TABLE_BITS, max(MIN_TABLE_BITS, (4 * n_bytes).bit_length()))


def apm_bits_for(table_bits: int) -> int:
    """The APMs' last two stages' rows (2^bits each, float32 cells) for a slot table of 2^table_bits: 2^16 from 2^19
    slots (as before, 35 MB in float64 whatever the history), 2^13 with the smallest table (2.2 MB; 2^10 cost a tiny
    history 0.0034 bits a byte, 2^13 0.0005: docs/quality.md)."""
    return min(16, max(10, table_bits - 3))


class BitCM:
    """A bitwise context-mixing model over bytes: `learn` what came before, `score` a text causally.

    >>> m = BitCM(table_bits=16); m.learn(b"abcabcabc"); m.score(b"abc").shape
    (3, 256)
    """

    def __init__(self, table_bits: int = TABLE_BITS, match_bits: int | None = None, learning_rate: float = 0.0015,
                 limit: int = LIMIT, fast_limit: int = FAST_LIMIT, prune: float = 1e-4):
        """match_bits: the match table's (2^bits positions, 4 bytes each), by default 4 per slot up to 2^20 (what the
        largest table had: a tiny history's 2^14 lost 0.011 bits a byte, docs/quality.md)."""
        match_bits = min(20, table_bits + 2) if match_bits is None else match_bits
        self.bits, self.mbits, self.lr, self.prune = table_bits, match_bits, learning_rate, math.log(prune)
        n = 1 << table_bits
        self.slots = np.empty((n, SLOT_WIDTH), dtype=np.uint16)  # bitkernel's layout: check byte, probabilities,
        self.slots[:, 0] = 0  # counts and bit histories (none read yet)
        self.slots[:, 1:CH] = 32768
        self.slots[:, CH:] = 1 << 8
        self.ism = np.full((N_CTX, 1 << (HISTORY_BITS + 1)), 0.5)  # each context's probability per bit history
        self.icount = np.zeros((N_CTX, 1 << (HISTORY_BITS + 1)), dtype=np.int64)
        self.mtab = np.zeros((1 << match_bits) + INDIRECT_SIZE, dtype=np.int32)  # and the indirect tables' 24 bits
        self.msm = np.full(64, 0.75)
        self.mcount = np.zeros(64, dtype=np.int64)
        # every mixer's weight sets, float32: the dots and updates in SIMD (bitkernel._dot)
        self.w = np.full((sum(MIXER_SETS), N_IN), 0.3, dtype=np.float32)
        self.w[:, :MATCH_IN] = 0.1  # three inputs per context
        self.w[:, GIVEN_IN] = GIVEN_PRIOR
        self.w[:, BIAS_IN + 1 :] = 0.0  # the padding
        # the final mixer's, per partial byte: 1/4 each (with three mixers, 1/3 each had cost C headers 0.0018 bits a
        # byte against 1/4: docs/quality.md "Parts of the bitwise model on new text")
        self.w3 = np.full((256, N_MIXERS), 0.25, dtype=np.float32)
        cells = 1.0 / (1.0 + np.exp(-np.linspace(-STRETCH_CLAMP, STRETCH_CLAMP, APM_CELLS)))
        self.apm = np.tile(cells, (256 + (2 << apm_bits_for(table_bits)), 1)).astype(np.float32)  # bitkernel's stages
        self.rates = 1.0 / (np.minimum(np.arange(1024), limit) + 1.5)
        self.frates = 1.0 / (np.minimum(np.arange(1024), fast_limit) + 1.5)
        self.hrates = 1.0 / (np.arange(1024) + 1.5)  # the bit histories' (their counts stop at 1023): no division
        self.regs = np.zeros(N_REGS, dtype=np.int64)
        # the bytes read: uint16, as compress's rows pad theirs with 256 ("before the text", bitrows.py); 2 bytes a
        # byte in memory and in the kept state (int64 took 8)
        self.buf = np.zeros(1 << 16, dtype=np.uint16)
        self.n = 0  # bytes read
        self.rows_from = None  # where lockstep rows' regions start (bitrows.py)
        self.given_yet = False  # whether a given distribution was an input yet (meet_the_given)
        self.learnt = (self.ism, self.icount, self.msm, self.mcount, self.w, self.w3, self.apm)
        self.rates_by_count = (self.rates, self.frates, self.hrates)
        self.stream = (self.cache(1, 0), self.view(0), np.zeros(512)) + self.nodes(1)

    def cache(self, n_rows: int, pbits: int) -> tuple:
        """n_rows rows' caches of their recent state (2^pbits slots each; pbits 0: none): check hashes, use counts,
        fast probabilities, bit histories."""
        n = 1 << max(pbits, 1)
        return (np.zeros((n_rows, n), dtype=np.int64), np.zeros((n_rows, n), dtype=np.uint8),
                np.zeros((n_rows, n, 16), dtype=np.uint16), np.zeros((n_rows, n, 16), dtype=np.uint8))

    def view(self, pbits: int) -> tuple:
        """The slots a row's nodes read (bitkernel._nibble): the nibbles' slots, the table they are read from (the
        shared one for a row without a cache, else local copies), the last nibble's shared and cache slots."""
        local = self.slots if pbits == 0 else np.empty((N_BLOCKS * N_CTX, SLOT_WIDTH), dtype=np.uint16)
        return np.empty((N_BLOCKS, N_CTX), dtype=np.int64), local, np.empty((2, N_CTX), dtype=np.int64)

    @staticmethod
    def nodes(n_rows: int) -> tuple:
        """n_rows rows' byte as predicted, for learning it: context hashes, nodes' inputs and outputs, the given
        distribution's sums (bitkernel._given_sums), which nodes were evaluated."""
        return (np.zeros((n_rows, N_CTX + N_BYTE_CTX), dtype=np.int64), np.zeros((n_rows, 256, N_IN), dtype=np.float32),
                np.zeros((n_rows, 256, N_OUT)), np.zeros((n_rows, 1024)), np.zeros((n_rows, 256), dtype=np.bool_))

    def _append(self, data) -> int:
        data = np.frombuffer(bytes(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data)
        if self.n + len(data) > len(self.buf):
            grown = np.zeros(max(2 * len(self.buf), self.n + len(data)), dtype=self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        start = self.n
        self.buf[start : start + len(data)] = data
        self.n += len(data)
        return start

    def _run(self, start: int, what: str, given: np.ndarray | None = None,
             network: np.ndarray | None = None) -> np.ndarray:
        """Read the bytes from `start` (learning each), returning what each position's prediction gives: "rows",
        "costs" or nothing ("learn")."""
        n = self.n - start
        rows, costs = np.zeros((n if what == "rows" else 0, 256)), np.zeros(n if what == "costs" else 0)
        given = np.zeros((0, 256)) if given is None else given_probabilities(given, network)
        if len(given):
            self.meet_the_given()
        assert len(given) in (0, n)
        cache, view, lp, *nodes = self.stream
        _run(self.buf, start, self.n, rows, costs, given, self.prune, self.regs, self.mtab, self.mbits, self.slots,
             self.bits, self.learnt, self.rates_by_count, self.lr, tuple(a[0] for a in cache), view, lp,
             *(a[0] for a in nodes))
        return rows if what == "rows" else costs

    def meet_the_given(self) -> None:
        """Before the first byte scored with a given distribution: the mixers' weights, learnt on bytes read without
        one, shrink (SHRINK_AT_THE_GIVEN) to make room for it; the given's own weight is still its prior. Mixers 3 and
        4's sets for each confidence of the given start as the ones learnt without it (bitkernel.GIVEN_BUCKETS)."""
        if not self.given_yet:
            self.w[:, :GIVEN_IN] *= SHRINK_AT_THE_GIVEN
            self.w[:, BIAS_IN] *= SHRINK_AT_THE_GIVEN
            self.spread_sets(BY_CONFIDENCE, GIVEN_BUCKETS)
            self.given_yet = True

    def spread_sets(self, mixers, buckets: int) -> None:
        """Each of `mixers`' weight sets for the given's confidence (its sets, `buckets` blocks of them) start as the
        first block's, the sets learnt without a given."""
        for mixer in mixers:
            first, n = MIXER_FROM[mixer], MIXER_SETS[mixer] // buckets
            self.w[first + n : first + n * buckets] = np.tile(self.w[first : first + n], (buckets - 1, 1))

    def learn(self, data) -> None:
        """Read `data` (bytes, or byte values), learning each byte after predicting it along its path only."""
        self._run(self._append(data), "learn")

    def score(self, data, given: np.ndarray | None = None, network: np.ndarray | None = None) -> np.ndarray:
        """(len(data), 256) natural-log distributions over each byte of `data`, each from the bytes before it;
        the model learns each byte after writing its row. given: (len(data), 256) log-distributions of another
        model (eval's mix), mixed in bit by bit as one more input; network: the network's alone, likewise (with a
        given only)."""
        return self._run(self._append(data), "rows", given, network)

    def costs(self, data, given: np.ndarray | None = None, network: np.ndarray | None = None) -> np.ndarray:
        """(len(data),) the natural-log probability of each byte of `data` alone, as `score` would give it but from
        its path's 8 nodes only (about 51 evaluated for a row): what eval needs. Exact where the row is not: a row
        gives a subtree below the prune uniform probability; so equal to `score`'s rows, and learning as it does,
        with nothing pruned."""
        return self._run(self._append(data), "costs", given, network)

    def ends_with(self, data) -> bool:
        """Whether the bytes read so far end with `data` (a text's context already read)."""
        data = np.asarray(data)
        return len(data) <= self.n and bool(np.array_equal(self.buf[self.n - len(data) : self.n], data))
