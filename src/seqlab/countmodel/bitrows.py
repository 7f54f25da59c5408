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
the stream's own: bitkernel's `_predict` and `_learn`, run on the row's view of its slots (the stream is a row
without a cache), so numba caches them as it does the stream's.
"""

import numpy as np

from .bitcm import BitCM, given_probabilities
from .bitcontexts import N_REGS, ORDERS
from .bitkernel import _learn_rows, _score_rows

PRIVATE_BITS = 14  # each row's cache: at most 2^14 slots of 16 entries (57 bytes a slot, 0.9 MB a row)
CACHE_SLOTS = 1 << 20  # and all rows' caches together at most this many slots (60 MB): 2^12 a row for 256 rows


def cache_bits(n_rows: int) -> int:
    """Each row's cache of n_rows (2^bits slots): PRIVATE_BITS, less where the rows would hold more than CACHE_SLOTS.
    2^14 against 2^12 a row: compress 0.96% above eval on tinyshakespeare's 27 rows, against 1.16%."""
    return min(PRIVATE_BITS, (CACHE_SLOTS // max(n_rows, 1)).bit_length() - 1)


class BitRows:
    """S texts read by one BitCM side by side, one byte each per step: shared slow state (slots' slow probabilities
    and counts, mixers, APMs, match table), per row its registers (words, match), its cache of recent state (fast
    probabilities, bit histories: 2^private_bits slots; 0: none, the row reads and writes the shared slots, as the
    stream does) and its
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
        self.caches, self.view, self.lp = m.cache(n_rows, self.pbits), m.view(self.pbits), np.zeros(512)
        self.nodes = m.nodes(n_rows)

    def score(self, given: np.ndarray, active: np.ndarray, network: np.ndarray | None = None) -> np.ndarray:
        """(S, 256) log-distributions of every active row's next byte, its row of given (S, 256: the mix's
        log-distributions over the bytes) one more input at each node, and its row of network (the network's alone)
        another (others' rows: 0)."""
        m = self.model
        m.meet_the_given()
        logp = np.zeros((len(self.pos), 256))
        _score_rows(m.buf, self.pos, self.regs, active, given_probabilities(given, network), logp, m.prune,
                    m.slots, m.bits, m.learnt, self.caches, self.pbits, self.view, self.lp, *self.nodes)
        return logp

    def learn(self, tokens: np.ndarray, active: np.ndarray) -> None:
        """The step's tokens (S,) of the active rows, learnt in row order after `score` gave their rows."""
        m = self.model
        if not _learn_rows(m.buf, self.pos, self.ends, self.regs, active, np.asarray(tokens, dtype=np.int64), m.mtab,
                           m.mbits, m.slots, m.bits, m.learnt, m.rates_by_count, m.lr, self.caches, self.pbits,
                           self.view, self.lp, *self.nodes):
            raise ValueError("a lockstep row runs past its bound")


FLOOR = 1e-6  # a byte tokenizer's other tokens' (BOS) probability where the bitwise model scores a byte


def byte_rows(logp: np.ndarray, is_byte: np.ndarray, vocab: int, floor: float = FLOOR) -> np.ndarray:
    """(n, vocab) token log-distributions from the bitwise model's (n_bytes, 256) rows, for a byte tokenizer's ids
    (0-255 the bytes; the others, BOS, get `floor`): positions where is_byte is False get a uniform row."""
    rows = np.full((len(is_byte), vocab), -np.log(vocab))
    rows[is_byte, :256] = logp + bytes_share(vocab, floor)
    rows[is_byte, 256:] = np.log(floor)
    return rows


def bytes_share(vocab: int, floor: float = FLOOR) -> float:
    """The log of what the other tokens' floor leaves the 256 bytes of a byte tokenizer's vocab: added to the bitwise
    model's log-probabilities of bytes (its rows', or a byte's alone)."""
    return np.log1p(-floor * (vocab - 256))
