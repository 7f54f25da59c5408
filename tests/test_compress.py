"""seqlab compress / decompress: exact round trips, refused mismatches, and the range coder alone."""

import json
import random
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.__main__ import main
from seqlab.compress import Header, compress_bytes, decompress_bytes
from seqlab.countmodel import StepReader, context_hashes, context_hashes_at
from seqlab.errors import SeqlabError
from seqlab.compress.rangecoder import Decoder, Encoder
from seqlab.run import load
from seqlab.train import train

from conftest import structured_text, tiny_config


@st.composite
def symbol_streams(draw):
    n_symbols = draw(st.integers(1, 40))
    steps = draw(st.lists(st.tuples(st.lists(st.integers(1, 1 << 20), min_size=n_symbols, max_size=n_symbols),
                                    st.integers(0, n_symbols - 1)), max_size=200))
    return steps


@settings(max_examples=150, deadline=None)
@given(symbol_streams())
def test_range_coder_round_trips_any_tables(steps):
    enc = Encoder()
    for freqs, s in steps:
        cum = np.concatenate([[0], np.cumsum(freqs)])
        enc.encode(int(cum[s]), freqs[s], int(cum[-1]))
    data = enc.finish()
    dec, out = Decoder(data), []
    for freqs, _ in steps:
        cum = np.concatenate([[0], np.cumsum(freqs)])
        s = int(np.searchsorted(cum, dec.target(int(cum[-1])), side="right")) - 1
        dec.consume(int(cum[s]), freqs[s])
        out.append(s)
    assert out == [s for _, s in steps]
    ideal = sum(-np.log2(f[s] / sum(f)) for f, s in steps)
    assert len(data) * 8 <= ideal + 8 * 2  # within two bytes of the information content


@pytest.fixture(scope="module")
def lstm_dir(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    corpus.write_text(structured_text())
    out = tmp_path_factory.mktemp("run-lstm")
    return train(tiny_config(corpus, "lstm", steps=150), out, log=lambda *a: None)


@pytest.fixture(scope="module")
def lstm_run(lstm_dir):
    return load(lstm_dir)


@pytest.fixture(scope="module")
def network_only_dir(lstm_dir, tmp_path_factory):
    """The same run without its count model's history: compress codes with the network alone."""
    other = tmp_path_factory.mktemp("network-only") / "run"
    shutil.copytree(lstm_dir, other)
    (other / "history.npy").unlink()
    return other


@pytest.fixture(scope="module")
def other_dir(lstm_dir, tmp_path_factory):
    """The same weights under a changed config: a different run to the fingerprint."""
    other = tmp_path_factory.mktemp("other") / "run"
    shutil.copytree(lstm_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["train"]["seed"] += 1
    (other / "config.json").write_text(json.dumps(config))
    return other


def test_step_hashes_are_context_hashes():
    tokens = np.random.default_rng(0).integers(0, 300, 100)
    orders = [1, 2, 5, 24]
    whole = context_hashes(tokens, orders)
    before = np.full((len(tokens), 24), -1)
    for i in range(len(tokens)):
        back = tokens[max(0, i - 24) : i][::-1]
        before[i, : len(back)] = back
    step = context_hashes_at(before, orders)
    for j in range(len(orders)):
        assert np.array_equal(step[:, j], whole[:, j])


def test_step_reader_gives_eval_counts(lstm_run):
    """Texts read one token at a time, in lockstep, see the counts CountReader gives eval's chunks."""
    model, chunk = lstm_run.count_model, lstm_run.config.counts.chunk
    text = np.concatenate([[lstm_run.tokenizer.bos_id],
                           lstm_run.tokenizer.encode(structured_text(60, seed=3).encode())])
    batch = model.session("cpu").reader(text, 1)
    stepper = StepReader(model.session("cpu"), 2, text[:1])
    for first in range(1, len(text), chunk):
        stop = min(first + chunk, len(text))
        expected = batch.distributions(first, stop)
        for i in range(first, stop):
            experts = stepper.distributions(np.array([0, 1]))
            np.testing.assert_allclose(experts.dense(model.vocab)[0], expected.dense(model.vocab)[i - first],
                                       rtol=1e-6, atol=1e-6)
            assert experts.bucket[0] == expected.bucket[i - first]
            stepper.append(np.array([text[i], text[i]]))
        batch.advance(stop)
        stepper.advance(0)  # text 1 (a copy) is never counted: text 0 alone is what eval reads


def _mixed(blob) -> bool:
    return Header.unpack(blob, "x")[0].counts_fingerprint is not None


@pytest.mark.parametrize("data", [b"", b"a", bytes(random.Random(1).randbytes(400))], ids=["empty", "one", "random"])
def test_round_trip_is_byte_identical(lstm_run, data):
    blob = compress_bytes(lstm_run, data)
    assert _mixed(blob)
    assert decompress_bytes(lstm_run, blob) == data


def test_count_model_wins_on_repeated_text(lstm_run, network_only_dir):
    """Random lines repeated: the network cannot learn them, the counts remember them after one reading."""
    line = bytes(random.Random(2).randbytes(100))
    data = line * 12  # counts change every 256 tokens: the first 3 lines are all new to them
    mixed = compress_bytes(lstm_run, data)
    network = compress_bytes(load(network_only_dir), data)
    assert _mixed(mixed) and not _mixed(network)
    assert decompress_bytes(lstm_run, mixed) == data
    assert len(mixed) < 0.5 * len(network)
    assert decompress_bytes(lstm_run, network) == data  # the header, not the run, says whether to mix


def test_count_model_mismatch_is_refused(lstm_run, lstm_dir, network_only_dir, tmp_path):
    blob = compress_bytes(lstm_run, b"anna sees the cat.\n" * 5)
    with pytest.raises(SeqlabError, match="count model mixed in, but .* has none"):
        decompress_bytes(load(network_only_dir), blob)
    changed = tmp_path / "run"
    shutil.copytree(lstm_dir, changed)
    history = np.load(changed / "history.npy")
    np.save(changed / "history.npy", history[1:])
    with pytest.raises(SeqlabError, match="different count model"):
        decompress_bytes(load(changed), blob)


def test_large_file_round_trip_and_compresses_like_eval(lstm_run, tmp_path):
    from seqlab.evaluate import evaluate

    data = structured_text(100, seed=7).encode()  # ~ 2 KB of the grammar: 8 count-model updates
    blob = compress_bytes(lstm_run, data)
    assert decompress_bytes(lstm_run, blob) == data
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    bpb = evaluate(lstm_run, [str(path)])["bpb"]  # the network mixed with the count model, as compress codes
    _, pos = Header.unpack(blob, "big")
    assert pos <= 32  # magic, format, fingerprints, torch version, threads, tokens, CRC
    coded = 8 * (len(blob) - pos) / len(data)
    assert bpb * 0.999 < coded < bpb * 1.001 + 16 / len(data)  # eval's own predictions, + the coder's last bytes


def test_other_run_is_refused(other_dir, lstm_run):
    blob = compress_bytes(lstm_run, b"anna sees the cat.\n")
    with pytest.raises(SeqlabError, match="different run"):
        decompress_bytes(load(other_dir), blob)


def test_damaged_or_foreign_files_are_refused(lstm_run):
    blob = compress_bytes(lstm_run, b"bob takes it.\n" * 20)
    with pytest.raises(SeqlabError, match="not a seqlab compressed file"):
        decompress_bytes(lstm_run, b"hello world")
    header, pos = Header.unpack(blob, "x")
    assert header.tokens == 280 and pos < len(blob)
    with pytest.raises(SeqlabError, match="truncated"):
        decompress_bytes(lstm_run, blob[: pos - 1])
    flipped = blob[:pos] + bytes([blob[pos] ^ 0x55]) + blob[pos + 1 :]
    with pytest.raises(SeqlabError):
        decompress_bytes(lstm_run, flipped)


def test_cli_round_trip_and_mismatch(lstm_dir, other_dir, tmp_path, capsys):
    src, packed = tmp_path / "in.txt", tmp_path / "in.txt.sqz"
    src.write_bytes(b"carl likes a red box.\n" * 30)
    assert main(["compress", str(lstm_dir), str(src)]) == 0
    assert main(["decompress", str(lstm_dir), str(packed), "-o", str(tmp_path / "out.txt")]) == 0
    assert (tmp_path / "out.txt").read_bytes() == src.read_bytes()
    capsys.readouterr()
    assert main(["decompress", str(other_dir), str(packed), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different run" in err
    assert main(["decompress", str(lstm_dir), str(src)]) == 2  # not .sqz and no -o
