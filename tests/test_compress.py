"""seqlab compress / decompress: exact round trips, refused mismatches, and the range coder alone."""

import json
import random
import shutil

import numpy as np
import pytest
import torch

from seqlab.__main__ import main
from seqlab.compress import Header, compress_bytes, decompress_bytes, lockstep
from seqlab.compress.header import FORMAT, FORMATS, NO_WORDS_FORMAT, VERSION_TAG
from seqlab.config import MIXER_SELECTORS
from seqlab.countmodel import LockstepReader, context_hashes, context_hashes_at
from seqlab.countmodel.selectors import warmth
from seqlab.errors import SeqlabError
from seqlab.run import load
from seqlab.train import train

from conftest import coded_and_eval_bits, lines_said_twice, structured_text, tiny_config

WARMTH = MIXER_SELECTORS.index("warmth")  # the small context of the tokens of its text the network has read


@pytest.fixture(scope="module")
def lstm_dir(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    corpus.write_text(structured_text())
    out = tmp_path_factory.mktemp("run-lstm")
    cfg = tiny_config(corpus, "lstm", steps=150)
    cfg.counts.bitcm = False  # the formats without the bitwise model (test_compress_bitcm.py has its own)
    return train(cfg, out, log=lambda *a: None)


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
def no_words_dir(lstm_dir, tmp_path_factory):
    """The same run without its word table, as a run trained before the word model: no word model."""
    other = tmp_path_factory.mktemp("no-words") / "run"
    shutil.copytree(lstm_dir, other)
    shutil.rmtree(other / "counts" / "words")
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


def test_lockstep_reader_gives_eval_counts(lstm_run):
    """Texts read a token at a time, in lockstep, see the context ids and counts CountReader gives eval's
    chunks: one text exactly, and a second one beside it (never counted) does not change the first's."""
    model, chunk = lstm_run.count_model, lstm_run.config.counts.chunk
    assert model.words is not None  # the word model's counts and contexts are compared too
    text = np.concatenate([[lstm_run.tokenizer.bos_id],
                           lstm_run.tokenizer.encode(structured_text(60, seed=3).encode())])
    batch = model.session("cpu").reader(text, 1)
    stepper = LockstepReader(model.session("cpu"), 2, int(text[0]), len(text))
    for first in range(1, len(text), chunk):
        stop = min(first + chunk, len(text))
        expected = batch.distributions(first, stop)
        for i in range(first, stop):
            experts = stepper.distributions()
            assert np.array_equal(stepper.contexts[0], batch.contexts[i])
            assert np.array_equal(stepper.word_contexts[0], batch.words[i])  # the word model's contexts too
            np.testing.assert_allclose(experts.dense(model.vocab)[0], expected.dense(model.vocab)[i - first],
                                       rtol=1e-6, atol=1e-6)
            assert experts.bucket[0] == expected.bucket[i - first]
            assert np.array_equal(experts.small[0], expected.small[i - first])  # the mixer's small contexts too
            assert experts.small[0, WARMTH] == expected.small[i - first, WARMTH] == warmth(np.array([i]), 1)[0]
            stepper.append(np.array([text[i], text[len(text) - i]]), np.array([True, False]))
        batch.advance(stop)
        stepper.advance()


def test_lockstep_context_ids_are_context_hashes_of_each_text(lstm_run):
    rng = np.random.default_rng(4)
    texts = rng.integers(0, 250, (3, 1100))
    stepper = LockstepReader(lstm_run.count_model.session("cpu"), 3, 256, texts.shape[1])
    whole = [context_hashes(np.concatenate([[256], t]), lstm_run.count_model.orders) for t in texts]
    for i in range(texts.shape[1]):
        ids = stepper.context_ids()
        for row in range(3):
            assert np.array_equal(ids[row], whole[row][i + 1])
        stepper.append(texts[:, i], np.ones(3, dtype=bool))


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
    data = line * 12  # the first line is new to the counts, the next ones repeat it
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
    # eval's own predictions (one segment: it reads the file as eval does), + the block's framing (its token
    # and word counts) and the coder's last word or two
    assert bpb * 0.999 < coded < bpb * 1.001 + 8 * 12 / len(data)


def test_other_run_is_refused(other_dir, lstm_run):
    blob = compress_bytes(lstm_run, b"anna sees the cat.\n")
    with pytest.raises(SeqlabError, match="different run"):
        decompress_bytes(load(other_dir), blob)


def test_damaged_or_foreign_files_are_refused(lstm_run):
    blob = compress_bytes(lstm_run, b"bob takes it.\n" * 20)
    with pytest.raises(SeqlabError, match="not a seqlab compressed file"):
        decompress_bytes(lstm_run, b"hello world")
    header, pos = Header.unpack(blob, "x")
    assert header.n_bytes == 280 and pos < len(blob)
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


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
@pytest.mark.parametrize("n_bytes,segment", [(700, 64), (1000, 100), (1500, 1000), (900, 7)])
def test_round_trip_over_segment_counts(trained_runs, monkeypatch, arch, n_bytes, segment):
    """Segments of every count (uneven last ones too) decode to the very bytes, mixed or not."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", segment)
    run = load(trained_runs[arch])
    data = (structured_text(200, seed=n_bytes).encode() + bytes(random.Random(n_bytes).randbytes(60)))[:n_bytes]
    assert lockstep.segments_for(n_bytes) == min(lockstep.MAX_SEGMENTS, max(1, n_bytes // segment))
    assert decompress_bytes(run, compress_bytes(run, data)) == data


def test_blocks_round_trip(lstm_run, monkeypatch):
    from seqlab.compress import codec

    monkeypatch.setattr(codec, "BLOCK_BYTES", 300)
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 50)
    data = structured_text(60, seed=9).encode()
    assert len(data) > 3 * 300
    assert decompress_bytes(lstm_run, compress_bytes(lstm_run, data)) == data


def test_thread_count_is_the_files(lstm_run, lstm_dir, tmp_path, capsys):
    data = b"anna sees the cat.\n" * 20
    blob = compress_bytes(lstm_run, data, threads=2)
    assert Header.unpack(blob, "x")[0].threads == 2
    assert decompress_bytes(lstm_run, blob) == data  # the file's count, whatever this process uses
    with pytest.raises(SeqlabError, match="compressed with 2 thread"):
        decompress_bytes(lstm_run, blob, threads=1)
    packed = tmp_path / "x.sqz"
    packed.write_bytes(blob)
    assert main(["decompress", str(lstm_dir), str(packed), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compressed with 2 thread" in err


def test_other_formats_are_refused_in_one_line(lstm_run):
    blob = bytearray(compress_bytes(lstm_run, b"bob takes it.\n"))
    blob[4] = 6  # the format before 7
    with pytest.raises(SeqlabError, match=f"format 6; this seqlab reads formats 7, .*{FORMAT}"):
        decompress_bytes(lstm_run, bytes(blob))


def test_a_run_without_a_word_table_writes_and_reads_the_format_before_it(lstm_run, no_words_dir, tmp_path):
    """A run without a word table codes as before the word model (format 13: 11, the warmth sets, without the word
    model); once the table is added (format 11 from then on) it still decodes its format-13 files without it; a
    format-11 file is refused, in one line, by a run that has no word table."""
    from seqlab.countmodel import add_word_table

    data = structured_text(20, seed=5).encode()
    old_run = load(no_words_dir)
    assert old_run.count_model.words is None and lstm_run.count_model.words is not None
    old, new = compress_bytes(old_run, data), compress_bytes(lstm_run, data)
    assert (old[4], new[4]) == (NO_WORDS_FORMAT, FORMAT) and _mixed(old) and old != new
    assert decompress_bytes(old_run, old) == data
    with pytest.raises(SeqlabError, match="word model, but .* has no word table"):
        decompress_bytes(old_run, new)
    added = tmp_path / "run"
    shutil.copytree(no_words_dir, added)
    add_word_table(load(added))
    assert decompress_bytes(load(added), old) == data
    assert decompress_bytes(load(added), new) == data and compress_bytes(load(added), data) == new


def test_a_file_from_another_torch_build_is_refused_before_decoding(lstm_run):
    """By its version's name (formats 7-10), or by its tag (formats 11-14, with the warmth sets)."""
    blob = compress_bytes(lstm_run, b"anna likes a red box.\n" * 4)
    header, pos = Header.unpack(blob, "x")
    for tagged, refused in ((False, "compressed with torch 2.0.0"), (True, "another torch build")):
        other_torch = Header(header.fingerprint, header.counts_fingerprint, "2.0.0", header.threads, header.n_bytes,
                             header.crc, words=header.words, warmth=tagged).pack() + blob[pos:]
        with pytest.raises(SeqlabError, match=refused):
            decompress_bytes(lstm_run, other_torch)


def test_segments_in_lockstep_code_as_eval_scores_a_file_with_repeats(lstm_run, tmp_path):
    """Random lines, each said twice in a row: eval and compress's segments in lockstep both count the text's
    own tokens every COUNT_EVERY tokens (steps), so the second saying is cheap to both, and the size is eval's
    bits within 1% plus the header (with eval counting a chunk at a time, they were several % apart)."""
    data = lines_said_twice()
    assert lockstep.segments_for(len(lstm_run.tokenizer.encode(data))) == 2
    blob = compress_bytes(lstm_run, data)
    assert decompress_bytes(lstm_run, blob) == data
    coded, bits, header = coded_and_eval_bits(lstm_run, data, blob, tmp_path)
    assert abs(coded - bits) < 0.01 * bits + header, (coded, bits)


def _with_select(run_dir, tmp_path, select: list[str]):
    """A copy of the run whose config names these weight sets (counts.select)."""
    out = tmp_path / ("run-" + "-".join(select))
    shutil.copytree(run_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["counts"]["select"] = select
    (out / "config.json").write_text(json.dumps(config))
    return load(out)


def test_warmth_codes_its_own_format_round_trips_over_segments_and_old_files_decode(lstm_dir, tmp_path, monkeypatch):
    """A run whose counts.select has "warmth" codes a file of several segments (each a cold start) in the warmth
    format, byte-identical back; the same run's file coded without the warmth sets (the format before, as a run
    trained before them wrote it) still decodes, with the mixer it was coded with."""
    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)
    data = structured_text(80, seed=11).encode()
    assert lockstep.segments_for(len(data)) >= 4
    run = _with_select(lstm_dir, tmp_path, ["order1", "warmth"])
    blob = compress_bytes(run, data)
    assert FORMATS[blob[4]] == (True, False, True, True, False, False) and Header.unpack(blob, "x")[0].warmth
    assert decompress_bytes(run, blob) == data
    run.count_model = run.count_model.with_warmth(False)  # the mixer of a run from before the warmth sets
    old = compress_bytes(run, data)
    assert FORMATS[old[4]] == (True, False, False, False, False, False) and old != blob  # the sets change the bits
    # the warmth formats name torch by a tag of VERSION_TAG bytes: a shorter header
    assert Header.unpack(old, "x")[1] - Header.unpack(blob, "x")[1] == len(torch.__version__) + 1 - VERSION_TAG
    assert decompress_bytes(load(run.path), old) == data


def test_the_main_thread_takes_the_weights_step_the_worker_has_not_begun(monkeypatch):
    """The mixing weights' step queued behind the network's: taken by the main thread while the worker is busy, else
    waited for; once either way."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    taken = []
    monkeypatch.setattr(lockstep, "_learn_chunk", lambda session, chunk: taken.append(("main", chunk)))
    network = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(network.wait)  # the network's step, still running
        lockstep._learnt((pool.submit(taken.append, ("worker", 1)), 1), None)
        network.set()
        begun = pool.submit(taken.append, ("worker", 2))
        begun.result()
        lockstep._learnt((begun, 2), None)
    assert taken == [("main", 1), ("worker", 2)]


def test_a_chunk_learns_from_the_sse_inputs_each_step_kept_as_from_its_mix_again(lstm_run):
    """_learn_chunk hands the mixer each step's SSE inputs (kept from its refine, the rows with a token) where learn
    would compute them again from the mix: the weights and the SSE stage's table learn the same floats."""
    import copy

    session = lstm_run.count_model.session("cpu")
    assert session.mixer.sse is not None
    rng = np.random.default_rng(2)
    reader = LockstepReader(session, 4, lstm_run.tokenizer.bos_id, 8)
    pending = []
    for j in range(5):
        experts = reader.distributions()
        net_logp = torch.log_softmax(torch.from_numpy(rng.normal(size=(4, session.model.vocab))).float(), dim=-1)
        before = session.mixer.premix(net_logp, experts)
        kept = session.mixer.sse_inputs(before, experts)
        tokens, active = rng.integers(0, 200, 4), np.array([True, j < 3, True, j != 1])
        pending.append((before, kept, net_logp, experts, tokens, active))
        reader.append(tokens, active)
    again = copy.deepcopy(session.mixer)
    rows = [torch.from_numpy(a) for *_, a in pending]
    again.learn(torch.cat([p[0][r] for p, r in zip(pending, rows)]),
                torch.cat([p[2][r] for p, r in zip(pending, rows)]),
                lockstep.Experts.concat([p[3].select(p[5]) for p in pending]),
                torch.cat([torch.from_numpy(p[4][p[5]]) for p in pending]))
    lockstep._learn_chunk(session, pending)
    assert torch.equal(session.mixer.weights, again.weights) and not torch.equal(again.weights, copy.deepcopy(
        lstm_run.count_model.session("cpu").mixer.weights))
    assert torch.equal(session.mixer.sse.table, again.sse.table) and torch.equal(session.mixer.sse.hits, again.sse.hits)
