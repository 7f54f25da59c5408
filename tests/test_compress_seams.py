"""Segments at line starts (formats 15-18): where they move to, what they are read after, and exact round trips."""

import io
import random

import numpy as np
import pytest

from seqlab.compress import Header, codec, compress_bytes, decompress_bytes, lockstep, seams
from seqlab.compress.header import FORMATS, ByteReader
from seqlab.run import load

from conftest import structured_text


@pytest.fixture(scope="module")
def run(trained_runs):
    return load(trained_runs["lstm"])  # byte-level, counts.select [order1, warmth] (the default)


def _moves(blob: bytes, run) -> tuple[int, lockstep.Layout]:
    """The first block's token count and its layout, read from the file as the decoder reads them."""
    header, pos = Header.unpack(blob, "x")
    reader = ByteReader(io.BytesIO(blob[pos:]))
    n_tokens, _ = reader.varint(), reader.varint()
    return n_tokens, seams.read_moves(reader, n_tokens, run.tokenizer)


def test_segments_move_to_line_starts_read_after_a_newline_and_round_trip(run, monkeypatch):
    """A file of many lines, several segments: each start after the first lands on a line start, at or after its
    nominal cut and within reach, is read after the newline token, and the file decodes byte-identical."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(120, seed=4).encode()
    blob = compress_bytes(run, data)
    assert FORMATS[blob[4]] == (True, False, True, True) and Header.unpack(blob, "x")[0].lines
    assert decompress_bytes(run, blob) == data
    n_tokens, layout = _moves(blob, run)
    nominal = lockstep.Layout.nominal(n_tokens, run.tokenizer.bos_id)
    assert len(layout.lengths) == len(nominal.lengths) >= 5 and layout.lengths.sum() == n_tokens == len(data)
    newline = run.tokenizer.encode(b"\n")[0]
    starts = layout.starts()
    assert layout.first[0] == run.tokenizer.bos_id and (layout.first[1:] == newline).all()
    assert all(data[s - 1 : s] == b"\n" for s in starts[1:])  # every moved start follows a newline
    moves = starts[1:] - nominal.starts()[1:]
    assert (moves >= 0).all() and (moves < seams.REACH).all() and moves.any()
    for s, m in zip(starts[1:], moves):  # the first line start at or after the cut: no newline skipped
        assert b"\n" not in data[s - m - 1 : s - 1]


def test_a_segment_with_no_newline_in_reach_keeps_its_nominal_start_and_bos(run, monkeypatch):
    """A long stretch without a newline around a cut: that segment is not moved and is read from BOS, the others
    still move, and the file decodes byte-identical."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    rng = random.Random(2)
    lines = structured_text(30, seed=1).encode()
    unbroken = bytes(rng.choice(b"abcdefgh ") for _ in range(700))  # covers the second cut, far past REACH
    data = lines[:450] + unbroken + structured_text(40, seed=3).encode()
    blob = compress_bytes(run, data)
    assert decompress_bytes(run, blob) == data
    n_tokens, layout = _moves(blob, run)
    nominal = lockstep.Layout.nominal(n_tokens, run.tokenizer.bos_id)
    cut = nominal.starts()[2]
    assert 450 + seams.REACH < cut < 450 + 700 - seams.REACH  # the second cut is deep inside the unbroken text
    assert layout.starts()[2] == cut and layout.first[2] == run.tokenizer.bos_id
    assert layout.first[1] != run.tokenizer.bos_id and data[layout.starts()[1] - 1] == ord("\n")


def test_the_moves_cost_a_byte_a_segment_and_the_format_before_still_decodes(run, monkeypatch):
    """Format 15's blocks carry one byte a segment after the first; the same run's format-11 file (segments at the
    nominal cuts, from BOS: what it wrote before) still decodes, and codes other bits."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(120, seed=6).encode()
    segments = lockstep.segments_for(len(data))
    new = compress_bytes(run, data)
    monkeypatch.setattr(codec, "LINE_STARTS", False)
    old = compress_bytes(run, data)
    assert (old[4], new[4]) == (11, 15)
    monkeypatch.setattr(codec, "LINE_STARTS", True)
    assert decompress_bytes(run, old) == data and decompress_bytes(run, new) == data
    layout, codes = seams.line_starts(np.asarray(run.tokenizer.encode(data)), run.tokenizer)
    assert len(codes) == segments - 1 and len(seams.write_moves(codes)) == segments - 1


def test_a_damaged_move_is_refused(run, monkeypatch):
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(60, seed=8).encode()
    blob = bytearray(compress_bytes(run, data))
    _, pos = Header.unpack(bytes(blob), "x")
    reader = ByteReader(io.BytesIO(bytes(blob[pos:])))
    reader.varint(), reader.varint()
    at = pos + reader.stream.tell()
    blob[at : at + 2] = bytes([0x80, 0x01])  # the first move as 128, out of reach
    with pytest.raises(Exception, match="truncated or damaged"):
        decompress_bytes(run, bytes(blob))
