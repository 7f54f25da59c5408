"""seqlab compress with the count model's bitwise model (counts.bitcm): lockstep rows over shared tables, coding
with the distribution eval scores with, and files refused by a run with the other setting."""

import json
import shutil

import pytest

from seqlab.compress import Header, compress_bytes, decompress_bytes, lockstep
from seqlab.compress.header import FORMATS
from seqlab.errors import SeqlabError
from seqlab.run import load

from conftest import coded_and_eval_bits, lines_said_twice, structured_text


def _bitcm_copy(run_dir, out, on: bool = True):
    """A copy of a trained byte-level run with counts.bitcm set in its config.json (how a user turns it on)."""
    shutil.copytree(run_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["counts"]["bitcm"] = on
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def runs(trained_runs, tmp_path_factory):
    """(the run with counts.bitcm off, the same run with it on)."""
    base = tmp_path_factory.mktemp("bitcm")
    plain = load(trained_runs["lstm"])
    on = load(_bitcm_copy(trained_runs["lstm"], base / "on"))
    assert on.tokenizer.kind == "byte" and on.count_model.history_bytes is not None
    return plain, on


def test_segments_round_trip_with_the_bitwise_model_in_its_format(runs, monkeypatch):
    """Several segments, each a row of the bitwise model over shared tables: byte-identical back, in format 23
    (15 with it), and coded differently from the run without it (it is used, not silently dropped)."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    plain, on = runs
    data = structured_text(80, seed=11).encode()
    assert lockstep.segments_for(len(data)) >= 4
    blob = compress_bytes(on, data)
    assert FORMATS[blob[4]] == (True, False, True, True, True) and Header.unpack(blob, "x")[0].bitcm
    without = compress_bytes(plain, data)
    assert blob[Header.unpack(blob, "x")[1] :] != without[Header.unpack(without, "x")[1] :]
    assert decompress_bytes(on, blob) == data


def test_blocks_round_trip_with_the_bitwise_model(runs, monkeypatch):
    """Each block's rows take the regions of the block before (the buffer stays one block's size)."""
    from seqlab.compress import codec

    monkeypatch.setattr(codec, "BLOCK_BYTES", 500)
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 100)
    _, on = runs
    data = structured_text(80, seed=9).encode()
    assert len(data) > 2 * 500
    assert decompress_bytes(on, compress_bytes(on, data)) == data


def test_compress_codes_as_eval_scores_with_the_bitwise_model(runs, tmp_path):
    """Random lines, each said twice: the size is eval's bits (with the bitwise model) within 1% plus the header."""
    _, on = runs
    data = lines_said_twice()
    assert lockstep.segments_for(len(data)) == 2
    blob = compress_bytes(on, data)
    assert decompress_bytes(on, blob) == data
    coded, bits, header = coded_and_eval_bits(on, data, blob, tmp_path)
    assert abs(coded - bits) < 0.01 * bits + header, (coded, bits)


def test_a_file_made_with_the_other_setting_is_refused_in_one_line(runs):
    """The run's fingerprint (its config.json) already tells the two apart; the count model's covers the setting too:
    a file whose run fingerprint matches but whose bitwise setting does not is refused, naming counts.bitcm."""
    from dataclasses import replace

    from seqlab.compress.header import run_fingerprint

    plain, on = runs
    data = structured_text(20, seed=5).encode()
    for coded_by, decoded_by in ((plain, on), (on, plain)):
        blob = compress_bytes(coded_by, data)
        with pytest.raises(SeqlabError, match="different run") as refused:
            decompress_bytes(decoded_by, blob)
        header, start = Header.unpack(blob, "x")
        relabelled = replace(header, fingerprint=run_fingerprint(decoded_by.path)).pack() + blob[start:]
        with pytest.raises(SeqlabError, match="counts.bitcm") as refused:
            decompress_bytes(decoded_by, relabelled)
        assert "\n" not in str(refused.value)


def test_a_file_of_the_old_bitwise_model_is_refused_in_one_line(runs):
    """Formats 19-22 were coded by the bitwise model before its column contexts, mixers and APMs: refused, with the
    seqlab version that made them named as the way to read them."""
    _, on = runs
    blob = bytearray(compress_bytes(on, structured_text(20, seed=6).encode()))
    assert blob[4] == 23
    blob[4] = 19
    with pytest.raises(SeqlabError, match="format 19") as refused:
        decompress_bytes(on, bytes(blob))
    assert "\n" not in str(refused.value) and "version that made it" in str(refused.value)
