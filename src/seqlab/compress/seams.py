"""Where a block's segments start (formats 15-18): at a line start near each nominal cut, read after a newline.

Each segment of a block is read cold (compress/lockstep.py): its first context is all the network and the count
model see. From BOS in the middle of a line that context is a lie, and a segment's first tokens cost several bits
each where eval pays a fraction of one. The encoder knows the text, so it moves each segment's start (after the
first) from its nominal position to the first position at most REACH - 1 tokens on whose previous token's bytes end
in a newline, and that segment is read after the tokenizer's newline token instead of BOS: its first context is
then the truth. The moves go into the block's framing, a byte a segment (before the coder's words), so the decoder
knows every segment's start and first context before it steps. A segment with no newline in reach keeps its nominal
start and BOS. docs/compress.md measures what it pays.
"""

import numpy as np

from .header import ByteReader, varints
from .lockstep import Layout

REACH = 127  # a move is 0..REACH-1 tokens, written as move + 1 (0: not moved, read from BOS): one varint byte


def newline_token(tokenizer) -> int | None:
    """The tokenizer's token for b"\\n" alone, or None when it has none (then no segment moves)."""
    ids = np.asarray(tokenizer.encode(b"\n")).tolist()
    return ids[0] if len(ids) == 1 and tokenizer.token_bytes[ids[0]] == b"\n" else None


def line_starts(tokens: np.ndarray, tokenizer) -> tuple[Layout, list[int]]:
    """The block's layout with each segment after the first moved to a line start in reach, and the codes to
    write (one a segment after the first: 0 for not moved, move + 1)."""
    nominal = Layout.nominal(len(tokens), tokenizer.bos_id)
    newline = newline_token(tokenizer)
    codes = [0] * (len(nominal.lengths) - 1)
    if newline is not None:
        ends = np.array([b.endswith(b"\n") for b in tokenizer.token_bytes])
        for i, start in enumerate(nominal.starts()[1:]):
            # the tokens before start .. start + REACH - 1 (never the block's end: a segment keeps a token)
            after = np.flatnonzero(ends[tokens[start - 1 : min(start - 1 + REACH, len(tokens) - 1)]])
            codes[i] = int(after[0]) + 1 if len(after) else 0
    return _layout(nominal, codes, newline, len(tokens)), codes


def write_moves(codes: list[int]) -> bytes:
    return varints(*codes)


def read_moves(reader: ByteReader, n_tokens: int, tokenizer) -> Layout:
    """The layout of a block of n_tokens whose moves follow in reader (as write_moves wrote them)."""
    nominal = Layout.nominal(n_tokens, tokenizer.bos_id)
    codes = [reader.varint() for _ in range(len(nominal.lengths) - 1)]
    if any(c > REACH for c in codes):
        raise ValueError("a segment's move is out of reach")
    return _layout(nominal, codes, newline_token(tokenizer), n_tokens)


def _layout(nominal: Layout, codes: list[int], newline: int | None, n_tokens: int) -> Layout:
    """nominal's segments with segment i + 1 moved by codes[i] - 1 and read after `newline` (codes[i] > 0)."""
    if not codes:
        return nominal
    if newline is None and any(codes):
        raise ValueError("a segment moved to a line start, but the tokenizer has no newline token")
    moves = np.maximum(np.asarray(codes, dtype=np.int64) - 1, 0)
    starts = np.concatenate([[0], nominal.starts()[1:] + moves, [n_tokens]])
    first = nominal.first.copy()
    first[1:][np.asarray(codes) > 0] = newline if newline is not None else first[0]
    return Layout(np.diff(starts).astype(np.int64), first)
