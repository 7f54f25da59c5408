"""seqlab compress with the count model's bitwise model (counts.bitcm): lockstep rows over shared slow state, each
with its own recent state, coding with the distribution eval scores with, and files refused by a run with the other
setting."""

import random
import string

import numpy as np
import pytest
import torch

from seqlab.compress import Header, compress_bytes, decompress_bytes, lockstep
from seqlab.compress.header import FORMATS
from seqlab.errors import SeqlabError
from seqlab.run import load

from conftest import bitcm_copy, coded_and_eval_bits, lines_said_twice, structured_text


@pytest.fixture(scope="module")
def runs(trained_runs, tmp_path_factory):
    """(the run with counts.bitcm off, the same run with it on)."""
    base = tmp_path_factory.mktemp("bitcm")
    plain = load(bitcm_copy(trained_runs["lstm"], base / "off", on=False))
    on = load(bitcm_copy(trained_runs["lstm"], base / "on"))
    assert on.tokenizer.kind == "byte" and on.count_model.history_bytes is not None
    return plain, on


def test_segments_round_trip_with_the_bitwise_model_in_its_format(runs, monkeypatch):
    """Several segments, each a row of the bitwise model over shared tables: byte-identical back, in format 135
    (15 with it), and coded differently from the run without it (it is used, not silently dropped)."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    plain, on = runs
    data = structured_text(80, seed=11).encode()
    assert lockstep.segments_for(len(data)) >= 4
    blob = compress_bytes(on, data)
    assert FORMATS[blob[4]] == (True, False, True, True, True, False) and Header.unpack(blob, "x")[0].bitcm
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


def _rows_bits(texts: list[bytes], private_bits: int) -> float:
    """Bits the bitwise model alone (no given distribution) spends on texts read side by side as BitRows' rows."""
    from seqlab.countmodel.bitcm import BitCM
    from seqlab.countmodel.bitrows import BitRows

    rows = BitRows(BitCM(table_bits=16, match_bits=12), np.full(len(texts), 256), max(map(len, texts)), private_bits)
    uniform, bits = np.full((len(texts), 256), -np.log(256)), 0.0
    for j in range(max(map(len, texts))):
        active = np.array([len(t) > j for t in texts])
        tokens = np.array([t[j] if len(t) > j else 0 for t in texts], dtype=np.int64)
        bits -= rows.score(uniform, active)[active, tokens[active]].sum() / np.log(2)
        rows.learn(tokens, active)
    return bits


def _drifting(seed: int, n_bytes: int = 3000, block: int = 100) -> bytes:
    """Blocks of `block` bytes, each drawn from 4 letters of its own: what comes next is in the recent bytes."""
    rng = random.Random(seed)
    out: list[int] = []
    while len(out) < n_bytes:
        out += rng.choices(rng.sample(string.ascii_lowercase.encode(), 4), k=block)
    return bytes(out[:n_bytes])


def test_rows_side_by_side_keep_their_own_recent_state():
    """Two rows reading two drifting texts side by side (over the same letters, each its own 4 at a time) cost about
    what each costs read alone: each row's fast probabilities and bit histories are its own. Rows sharing them
    (private_bits 0, as formats 19-22 did) see the other text's bits in every common context: 10% more."""
    texts = [_drifting(seed) for seed in (1, 2)]
    alone = sum(_rows_bits([text], 12) for text in texts)
    side_by_side = _rows_bits(texts, 12)
    shared = _rows_bits(texts, 0)
    assert side_by_side < 1.01 * alone, (side_by_side, alone)
    assert shared > 1.05 * alone, (shared, alone)


def test_rows_read_from_bos_code_their_first_bytes_with_the_mix(runs, monkeypatch):
    """As eval costs a text's first MIX_FIRST bytes after BOS (the mix's), compress codes them in the rows read from
    BOS with the mix's rows, and the rest with the bitwise model's."""
    from seqlab.countmodel.session import MIX_FIRST

    _, on = runs
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    seen = []

    def spied(rows, logp, net_logp, active, from_mix):
        out = bitwise(rows, logp, net_logp, active, from_mix)
        mask = torch.zeros(len(active), dtype=torch.bool) if from_mix is None else from_mix
        seen.append((torch.equal(out[mask], logp[mask]), bool(mask.any()),
                     bool(mask.all()) or not torch.equal(out[~mask], logp[~mask])))
        return out

    bitwise = lockstep._bitwise
    monkeypatch.setattr(lockstep, "_bitwise", spied)
    data = structured_text(80, seed=11).encode()
    assert decompress_bytes(on, compress_bytes(on, data)) == data
    steps = len(seen) // 2  # the encoder's, then the decoder's
    assert seen[0][1] and [s[1] for s in seen[:steps]] == [True] * MIX_FIRST + [False] * (steps - MIX_FIRST)
    assert all(s[0] and s[2] for s in seen)


def test_files_of_the_old_bitwise_models_are_refused_in_one_line(runs):
    """Formats 19-22 (rows that shared their recent state), 27-30, 35-38 (the bitwise model before its column
    contexts, third mixer and last byte's APM) 31-34, 39-42 (before its contexts for code and markup) and 43-46,
    51-54 (before its byte class and sparse contexts, fourth mixer) and 55-58, 63-66 (before its indirect, skipping
    word and line contexts) and 71-74, 79-82 (before its float32 mixers, tables and sized APMs) and 83-86, 91-94
    (with its mixer by the last byte) and 87-90, 95-98 (before a text's first bytes were the mix's) and 99-102,
    107-110 (before the network's distribution was an input) and 111-114, 119-122 (before mixer 3's sets by the
    given's confidence) and 123-126, 131-134 (before the mixer by the partial byte and that confidence) decode
    differently now: refused in one line, naming the format."""
    _, on = runs
    blob = bytearray(compress_bytes(on, structured_text(20, seed=5).encode()))
    assert blob[4] == 135
    for old in (19, 22, 27, 30, 31, 34, 35, 38, 39, 42, 43, 46, 51, 54, 55, 58, 63, 66, 71, 74, 79, 82, 83, 86, 87,
                90, 91, 94, 95, 98, 99, 102, 107, 110, 111, 114, 119, 122, 123, 126, 131, 134):
        blob[4] = old
        with pytest.raises(SeqlabError, match=f"format {old}") as refused:
            decompress_bytes(on, bytes(blob))
        assert "\n" not in str(refused.value) and "version that made it" in str(refused.value)


def test_one_row_computes_what_the_stream_computes():
    """A lone row without a cache (private_bits 0) gives, to the last float, the rows that BitCM.score gives the same
    text with the same given distributions: bitrows' loops compute what bitcm's _predict and _learn_byte do (its
    contexts, registers, mixers, APMs), so a change to one that the other misses fails here."""
    from seqlab.countmodel.bitcm import BitCM
    from seqlab.countmodel.bitrows import BitRows

    text = structured_text(30, seed=3).encode()
    given = np.log(np.random.default_rng(0).dirichlet(np.full(256, 0.3), size=len(text)))
    stream = BitCM(table_bits=18, match_bits=20).score(text, given)
    rows = BitRows(BitCM(table_bits=18, match_bits=20), np.full(1, 256), len(text), private_bits=0)
    active = np.ones(1, dtype=bool)
    for j, byte in enumerate(text):
        np.testing.assert_array_equal(rows.score(given[j : j + 1], active)[0], stream[j], err_msg=f"byte {j}")
        rows.learn(np.array([byte]), active)
