"""Segments at line starts (formats 15-18): where they start, what they are read after, and exact round trips."""

import io
import random

import numpy as np
import pytest

from seqlab.compress import Header, codec, compress_bytes, decompress_bytes, lockstep, seams
from seqlab.compress.header import FORMATS, ByteReader, varints
from seqlab.run import load

from conftest import bitcm_copy, structured_text


@pytest.fixture(scope="module")
def run(trained_runs, tmp_path_factory):
    """Byte-level, counts.select [order1, warmth] (the default), the bitwise model off: the formats without it
    (test_compress_bitcm.py has its own)."""
    return load(bitcm_copy(trained_runs["lstm"], tmp_path_factory.mktemp("off") / "run", on=False))


def _framing(blob: bytes) -> tuple[int, int, int]:
    """The first block's token count, its span (0: the nominal cuts) and where the span is in the file."""
    _, pos = Header.unpack(blob, "x")
    reader = ByteReader(io.BytesIO(blob[pos:]))
    n_tokens, _ = reader.varint(), reader.varint()
    at = pos + reader.stream.tell()
    return n_tokens, reader.varint(), at


def test_segments_start_at_line_starts_read_after_a_newline_and_round_trip(run, monkeypatch):
    """A file of many lines, several segments: each start after the first lands on a line start, each segment but
    the last ends at its first line end at or after the span the file records, the last is the longest, every
    segment after the first is read after the newline token, and the file decodes byte-identical."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(120, seed=4).encode()
    blob = compress_bytes(run, data)
    assert FORMATS[blob[4]] == (True, False, True, True, False, False) and Header.unpack(blob, "x")[0].lines
    assert decompress_bytes(run, blob) == data
    tokens = np.asarray(run.tokenizer.encode(data))
    layout, framing = seams.line_starts(tokens, run.tokenizer)
    n_tokens, span, _ = _framing(blob)
    nominal = lockstep.Layout.nominal(n_tokens, run.tokenizer.bos_id)
    assert framing == varints(span) and 0 < span <= nominal.lengths[0]
    assert len(layout.lengths) == len(nominal.lengths) >= 5 and layout.lengths.sum() == n_tokens == len(data)
    newline = run.tokenizer.encode(b"\n")[0]
    assert layout.first[0] == run.tokenizer.bos_id and (layout.first[1:] == newline).all()
    starts = layout.starts()
    assert all(data[s - 1 : s] == b"\n" for s in starts[1:]) and (starts[1:] != nominal.starts()[1:]).any()
    for s, n in zip(starts[:-1], layout.lengths[:-1]):  # the first line end at or after the span: none skipped
        assert n >= span and b"\n" not in data[s + span - 1 : s + n - 1]
    assert layout.lengths[-1] >= layout.lengths[:-1].max()


def test_a_block_with_no_newline_in_reach_keeps_the_nominal_cuts(run, monkeypatch):
    """A long stretch without a newline: no chain of line starts reaches past it, so the block keeps the nominal
    cuts, each segment from BOS (its framing says 0), and the file decodes byte-identical."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    monkeypatch.setattr(seams, "REACH", 64)
    rng = random.Random(2)
    unbroken = bytes(rng.choice(b"abcdefgh ") for _ in range(700))
    data = structured_text(30, seed=1).encode()[:450] + unbroken + structured_text(40, seed=3).encode()
    blob = compress_bytes(run, data)
    assert decompress_bytes(run, blob) == data
    assert _framing(blob)[1] == 0
    layout, framing = seams.line_starts(np.asarray(run.tokenizer.encode(data)), run.tokenizer)
    nominal = lockstep.Layout.nominal(len(data), run.tokenizer.bos_id)
    assert framing == b"\0" and (layout.lengths == nominal.lengths).all()
    assert (layout.first == run.tokenizer.bos_id).all()


def test_the_format_before_still_decodes_and_the_framing_is_a_span(run, monkeypatch):
    """The same run's format-11 file (segments at the nominal cuts, from BOS: what it wrote before) still decodes,
    and codes other bits; format 15 adds one varint a block, the span."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(120, seed=6).encode()
    new = compress_bytes(run, data)
    monkeypatch.setattr(codec, "LINE_STARTS", False)
    old = compress_bytes(run, data)
    assert (old[4], new[4]) == (11, 15) and old[5:] != new[5:]
    monkeypatch.setattr(codec, "LINE_STARTS", True)
    assert decompress_bytes(run, old) == data and decompress_bytes(run, new) == data
    assert 0 < _framing(new)[1] < 1 << 14  # two bytes


def test_a_damaged_span_is_refused(run, monkeypatch):
    """A span longer than a nominal segment cannot have been written: the layout refuses it, and decompress says
    the file is damaged, in one line."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(60, seed=8).encode()
    blob = bytearray(compress_bytes(run, data))
    n_tokens, span, at = _framing(bytes(blob))
    assert span > 0 and len(varints(span)) == len(varints(n_tokens))
    blob[at : at + len(varints(span))] = varints(n_tokens)  # longer than any segment
    with pytest.raises(ValueError, match="cannot have"):
        seams.read_layout(ByteReader(io.BytesIO(bytes(blob[at:]))), n_tokens, run.tokenizer)
    with pytest.raises(Exception, match="truncated or damaged"):
        decompress_bytes(run, bytes(blob))


def test_a_bpe_run_cuts_after_tokens_that_end_a_line_and_round_trips(corpus_file, tmp_path, monkeypatch):
    """A BPE run: segments start after a token whose bytes end in a newline, are read after the tokenizer's own
    newline token, and the file decodes byte-identical."""
    from seqlab.train import train

    from conftest import tiny_config

    cfg = tiny_config(corpus_file, "lstm", steps=30)
    cfg.data.tokenizer = "bpe:300"
    bpe = load(train(cfg, tmp_path / "bpe", log=lambda *a: None))
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 100)
    data = structured_text(150, seed=12).encode()
    blob = compress_bytes(bpe, data)
    assert decompress_bytes(bpe, blob) == data
    tokens = np.asarray(bpe.tokenizer.encode(data))
    layout, framing = seams.line_starts(tokens, bpe.tokenizer)
    assert len(layout.lengths) >= 3 and framing == varints(_framing(blob)[1]) != b"\0"
    newline = seams.newline_token(bpe.tokenizer)
    assert newline is not None and (layout.first[1:] == newline).all()
    ends = [bpe.tokenizer.token_bytes[tokens[s - 1]] for s in layout.starts()[1:]]
    assert all(e.endswith(b"\n") for e in ends)
