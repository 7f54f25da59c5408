"""The network's step in bf16 (formats 23-26, 143-146): exact round trips where the CPU computes bf16 natively,
and a one-line refusal where it does not."""

import pytest
import torch

from seqlab.__main__ import main
from seqlab.compress import Header, compress_bytes, decompress_bytes, header, lockstep
from seqlab.compress.header import BF16_OFFSET, FORMAT, FORMATS
from seqlab.errors import SeqlabError
from seqlab.run import load
from seqlab.train.speed import native_bf16

from conftest import bitcm_copy, structured_text

NATIVE = native_bf16(torch.device("cpu"))


@pytest.fixture(scope="module")
def run(trained_runs, tmp_path_factory):
    """Byte-level, counts.select [order1, warmth] (the default), the bitwise model off: the formats without it
    (test_compress_bitcm.py has its own)."""
    return load(bitcm_copy(trained_runs["transformer"], tmp_path_factory.mktemp("off") / "run", on=False))


def _as_bf16(blob: bytes) -> bytes:
    """The same file with a header that says its network stepped in bf16."""
    h, pos = Header.unpack(blob, "x")
    return Header(h.fingerprint, h.counts_fingerprint, h.torch_version, h.threads, h.n_bytes, h.crc, words=h.words,
                  warmth=h.warmth, lines=h.lines, bf16=True).pack() + blob[pos:]


def test_bf16_formats_are_the_line_start_formats_with_it():
    assert FORMATS[FORMAT + BF16_OFFSET] == FORMATS[FORMAT][:5] + (True,)
    assert {f for f, kind in FORMATS.items() if kind[5]} == set(range(23, 27)) | set(range(143, 147))


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16: test_a_bf16_file_is_refused_... covers it")
def test_a_transformer_steps_in_bf16_and_round_trips_byte_identical(run, monkeypatch):
    """Several segments in lockstep: the file records bf16, its bits differ from the fp32 step's (so bf16 ran), and
    the decoder's bf16 step gives the very probabilities back."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 200)
    data = structured_text(60, seed=7).encode()
    blob = compress_bytes(run, data)
    assert blob[4] == FORMAT + BF16_OFFSET and Header.unpack(blob, "x")[0].bf16
    assert decompress_bytes(run, blob) == data
    monkeypatch.setattr(lockstep, "native_bf16", lambda device: False)
    fp32 = compress_bytes(run, data)
    assert fp32[4] == FORMAT and fp32[9:] != blob[9:]
    assert decompress_bytes(run, fp32) == data


def test_an_lstm_steps_in_fp32(trained_runs):
    data = structured_text(10, seed=2).encode()
    assert not Header.unpack(compress_bytes(load(trained_runs["lstm"]), data), "x")[0].bf16


def test_a_bf16_file_is_refused_by_a_cpu_without_native_bf16(run, monkeypatch, tmp_path, capsys):
    """Runs on every CPU: a bf16 header read where bf16 is not native is refused before decoding, in one line."""
    monkeypatch.setattr(lockstep, "native_bf16", lambda device: False)
    data = structured_text(10, seed=3).encode()
    blob = _as_bf16(compress_bytes(run, data))
    monkeypatch.setattr(header, "native_bf16", lambda device: False)
    with pytest.raises(SeqlabError, match="compressed with the network in bf16, which this CPU does not compute"):
        decompress_bytes(run, blob)
    packed = tmp_path / "x.sqz"
    packed.write_bytes(blob)
    assert main(["decompress", str(run.path), str(packed), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bf16" in err


def test_fp32_asks_for_the_fp32_step_on_any_cpu(run, monkeypatch, tmp_path):
    """--fp32 writes the line-start format without bf16 (what a CPU without native bf16 decodes), through the API and
    the command line, and the file round trips."""
    monkeypatch.setattr(lockstep, "native_bf16", lambda device: True)  # where compress would otherwise take bf16
    data = structured_text(10, seed=5).encode()
    blob = compress_bytes(run, data, fp32=True)
    assert blob[4] == FORMAT and not Header.unpack(blob, "x")[0].bf16
    monkeypatch.setattr(header, "native_bf16", lambda device: False)
    assert decompress_bytes(run, blob) == data
    source = tmp_path / "x.txt"
    source.write_bytes(data)
    assert main(["compress", str(run.path), str(source), "--fp32"]) == 0
    assert (tmp_path / "x.txt.sqz").read_bytes()[4] == FORMAT
