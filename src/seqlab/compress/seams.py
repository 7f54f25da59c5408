"""Where a block's segments start (formats 15-18): at line starts, each read after a newline.

Each segment of a block is read cold (compress/lockstep.py): its first context is all the network and the count
model see. From BOS in the middle of a line that context is a lie, and a segment's first tokens cost several bits
each where eval pays a fraction of one. The encoder knows the text, so every segment but the last ends at the first
line end at or after its `span`-th token (a chain: each starts where the one before ends, after a newline), and each
after the first is read after the tokenizer's newline token instead of BOS: its first context is then the truth.

The decoder learns where a segment ends as it reads it (the first newline token at or after its span-th), so a
block's framing needs only the span (a varint, 0 for the nominal cuts from BOS): the encoder picks the longest span
whose last segment is at least as long as every other, so that the others have all ended, and so the last one's
start is known, before it has to stop. A block where no span gives such a chain with each segment ending within
REACH tokens past its span and the last no more than REACH longer than a nominal segment (a stretch without
newlines, no newline token in the vocabulary, one segment) keeps the nominal cuts.
"""

import numpy as np

from .header import ByteReader, varints
from .lockstep import REACH, Layout  # REACH: a segment ends at most this many tokens past its span, or the
# block keeps the nominal cuts (lockstep sizes the bitwise model's rows by it)


def newline_token(tokenizer) -> int | None:
    """The tokenizer's token for b"\\n" alone, or None when it has none (then no segment moves)."""
    ids = np.asarray(tokenizer.encode(b"\n")).tolist()
    return ids[0] if len(ids) == 1 and tokenizer.token_bytes[ids[0]] == b"\n" else None


def _line_ends(tokenizer) -> np.ndarray:
    """bool (vocab,): the tokens whose bytes end in a newline (a line starts after each)."""
    return np.array([b.endswith(b"\n") for b in tokenizer.token_bytes])


def line_starts(tokens: np.ndarray, tokenizer) -> tuple[Layout, bytes]:
    """The block's layout, segments at line starts where they can be, and the framing bytes that say so."""
    n, bos = len(tokens), tokenizer.bos_id
    nominal = Layout.nominal(n, bos)
    newline, segments = newline_token(tokenizer), len(nominal.lengths)
    if newline is None or segments < 2:
        return nominal, varints(0)
    after = np.flatnonzero(_line_ends(tokenizer)[tokens[:-1]]) + 1  # positions right after a newline (< n)
    best, lo, hi = None, 1, int(nominal.lengths[0])
    while lo <= hi:  # the longest span whose last segment is at least as long as every other
        span = (lo + hi) // 2
        starts = _chain(after, span, segments)
        if starts is not None and n - starts[-1] >= np.diff(starts).max():
            best, lo = (span, starts), span + 1
        else:
            hi = span - 1
    if best is None or n - best[1][-1] > nominal.lengths[0] + REACH:  # no chain, or one that reads too many steps
        return nominal, varints(0)
    span, starts = best
    first = np.full(segments, newline, dtype=np.int64)
    first[0] = bos
    return Layout(np.diff(np.append(starts, n)).astype(np.int64), first), varints(span)


def _chain(after: np.ndarray, span: int, segments: int) -> np.ndarray | None:
    """Every segment's start when each ends at the first line start at or after its span-th token, or None where
    one finds none within REACH tokens past it."""
    starts = [0]
    for _ in range(segments - 1):
        k = np.searchsorted(after, starts[-1] + span)
        if k == len(after) or after[k] - starts[-1] - span >= REACH:
            return None
        starts.append(int(after[k]))
    return np.array(starts, dtype=np.int64)


def read_layout(reader: ByteReader, n_tokens: int, tokenizer) -> Layout:
    """The layout of a block of n_tokens whose framing follows in reader (as line_starts wrote it)."""
    span = reader.varint()
    nominal = Layout.nominal(n_tokens, tokenizer.bos_id)
    if span == 0:
        return nominal
    newline = newline_token(tokenizer)
    if newline is None or len(nominal.lengths) < 2 or span > nominal.lengths[0]:
        raise ValueError("segments at line starts that this block cannot have")
    return Chain(n_tokens, len(nominal.lengths), span, newline, tokenizer.bos_id, _line_ends(tokenizer))


class Chain(Layout):
    """A decoder's layout of segments at line starts: each but the last ends at its first newline token at or after
    its span-th (learnt from the tokens as they are read); the last's length is what the others leave."""

    def __init__(self, n_tokens: int, segments: int, span: int, newline: int, bos: int, line_ends: np.ndarray):
        first = np.full(segments, newline, dtype=np.int64)
        first[0] = bos
        # until a segment's end is read, its length is the most it can be
        most = max(span + REACH, n_tokens - (segments - 1) * span)
        super().__init__(np.full(segments, most, dtype=np.int64), first)
        self.n_tokens, self.span, self.line_ends = n_tokens, span, line_ends
        self.open = np.ones(segments, dtype=bool)  # lengths not known yet

    def read(self, step: int, tokens: np.ndarray) -> None:
        ends = self.open[:-1] & (step + 1 >= self.span) & self.line_ends[tokens[:-1]]
        self.lengths[:-1][ends] = step + 1
        self.open[:-1] &= ~ends
        if self.open[:-1].any() and step + 1 >= self.span + REACH:
            raise ValueError("a segment runs past its reach")
        if self.open[-1] and not self.open[:-1].any():
            self.lengths[-1] = self.n_tokens - self.lengths[:-1].sum()
            self.open[-1] = False
            if self.lengths[-1] < step + 1:
                raise ValueError("the last segment ends before the others")
