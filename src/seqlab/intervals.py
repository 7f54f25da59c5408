"""Bits per byte with its 95% interval, byte for byte, whatever the tokenizer.

Scoring gives the bits of every token (for a run with a count model, what the stream costs as the count model
adapts while it reads: what a compressor would pay). Each token's bits are spread evenly over its bytes, so two
runs with different tokenizers line up byte for byte on the same text. The scored bytes are then cut into
blocks, whole documents or stretches of a stated number of bytes, and the blocks are resampled
(stats.bootstrap_ratio; stats.paired_difference for two runs on the same bytes), so that what depends on what
came before inside a block stays together.

    per_byte = [byte_bits(tokenizer, scored_tokens, bits) for each document]
    blocks = make_blocks(per_byte, "auto")          # documents, or stretches of bytes
    low, high = bootstrap_ratio(blocks.bits, blocks.bytes)
"""

import math
from dataclasses import dataclass

import numpy as np

from .data.tokenizer import Backward
from .errors import SeqlabError
from .options import Kind
from .stats import LEVEL, N_BOOT, block_sums, bootstrap_ratio, paired_difference, spread_evenly, verdict

AUTO, DOCUMENT = "auto", "document"
# "auto" blocks by document from this many documents up: documents differ (one file is harder than another), and
# stretches that cut a document into pieces sharing its difficulty cover far too rarely (80% for 95% on
# documents of three sources, bench/interval_coverage.py), where 10 whole documents still cover 93%.
MIN_DOCUMENTS = 10
MIN_BLOCK_BYTES = 1024  # "auto" stretches: about 1/100 of the bytes, at least this long ...
MIN_BLOCKS = 10  # ... unless that leaves fewer blocks than this


class _Block(Kind):
    """--block: "auto", "document", or a length in bytes (an integer >= 1)."""

    kind = "block"

    def parse(self, text: str):
        text = text.strip().lower()
        return int(text) if text.lstrip("+-").isdigit() else text

    def problem(self, value, text=None):
        if value in (AUTO, DOCUMENT) or (isinstance(value, int) and value >= 1):
            return None
        return f"expected auto, document or a length in bytes >= 1, got {(text if text is not None else value)!r}"

    def describe(self) -> str:
        return "auto, document or a length in bytes >= 1"


block_kind = _Block()


def byte_bits(tokenizer, scored_tokens: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The bits of each byte of a scored text, in the text's own order (a backward run reads it reversed)."""
    lengths = np.array([len(b) for b in tokenizer.token_bytes])[np.asarray(scored_tokens, np.int64)]
    out = spread_evenly(bits, lengths)
    return out[::-1] if isinstance(tokenizer, Backward) else out


@dataclass
class Blocks:
    bits: np.ndarray  # the bits inside each block
    bytes: np.ndarray  # its bytes
    method: str  # how the blocks were cut, in words


def _power_of_two_below(x: float) -> int:
    return 2 ** int(math.floor(math.log2(max(x, 1.0))))


def auto_length(n_bytes: int) -> int:
    """About 100 blocks (a power of two of bytes), no shorter than MIN_BLOCK_BYTES while that leaves MIN_BLOCKS."""
    return min(max(_power_of_two_below(n_bytes / 100), MIN_BLOCK_BYTES), _power_of_two_below(n_bytes / MIN_BLOCKS))


def make_blocks(per_byte: list[np.ndarray], block=AUTO) -> Blocks:
    """Blocks of the scored bytes (one array of per-byte bits per document, in reading order)."""
    assert per_byte and all(len(d) for d in per_byte), "every document scored holds bytes"
    given = block != AUTO
    if not given:
        block = DOCUMENT if len(per_byte) >= MIN_DOCUMENTS else auto_length(sum(map(len, per_byte)))
    if block == DOCUMENT:
        if len(per_byte) < 2:
            raise SeqlabError("--block document needs at least 2 documents, got 1; give a length in bytes "
                              "(e.g. --block 4096) or leave --block out")
        return Blocks(np.array([d.sum() for d in per_byte]), np.array([len(d) for d in per_byte], float),
                      f"by document ({len(per_byte):,} documents)")
    stream = np.concatenate(per_byte)  # one stream, as it was scored: blocks may span documents
    bits, n_bytes = block_sums(stream, block), block_sums(np.ones(len(stream)), block)
    if len(bits) < 2 and given:  # a single block leaves no interval
        raise SeqlabError(f"--block {block} leaves one block of the {len(stream):,} bytes scored: no interval; "
                          f"give a shorter length or leave --block out")
    return Blocks(bits, n_bytes, f"blocks of {block:,} bytes ({len(bits):,} blocks)")


def describe(blocks: Blocks, paired: bool = False) -> str:
    kind = "paired block bootstrap" if paired else "block bootstrap"
    return f"{LEVEL:.0%} {kind}, {blocks.method}, {N_BOOT} draws, expanded percentile"


def bpb_interval(per_byte: list[np.ndarray], block=AUTO) -> dict:
    """The interval fields of an eval result: bpb_low, bpb_high, interval_method."""
    blocks = make_blocks(per_byte, block)
    low, high = bootstrap_ratio(blocks.bits, blocks.bytes)
    return {"bpb_low": low, "bpb_high": high, "interval_method": describe(blocks)}


def paired(per_byte_a: list[np.ndarray], per_byte_b: list[np.ndarray], block=AUTO) -> dict:
    """A's bits per byte minus B's on the same bytes: {difference, low, high, verdict, interval_method}."""
    if [len(d) for d in per_byte_a] != [len(d) for d in per_byte_b]:
        raise SeqlabError("the two runs did not score the same bytes; give the same FILES to both")
    a, b = make_blocks(per_byte_a, block), make_blocks(per_byte_b, block)
    d, low, high = paired_difference(a.bits, b.bits, a.bytes)
    return {"difference": d, "low": low, "high": high, "verdict": verdict(low, high),
            "interval_method": describe(a, paired=True)}


def mean_over_runs(per_byte_runs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-byte bits averaged over several runs of the same bytes (seeds of one configuration)."""
    return [np.mean(docs, axis=0) for docs in zip(*per_byte_runs)]
