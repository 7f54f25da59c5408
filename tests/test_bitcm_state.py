"""The bitwise model's state kept with the run (countmodel/bitstate.py): loaded, it scores as reading the training
bytes afresh, to the last bit; scoring and coding never write into it; a damaged or mismatched one is read again."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import bitcm_copy, structured_text, tiny_config
from seqlab.countmodel import bitcm, bitstate
from seqlab.run import load

HISTORY = np.frombuffer(structured_text(150, seed=3).encode(), dtype=np.uint8).astype(np.int64)
TEXT = structured_text(40, seed=4).encode()
IDENTITY = {"history": "digest", "bitcm_history": 1 << 20}


@pytest.fixture(autouse=True)
def small_table(monkeypatch):
    """2^16 slots (a run's model has 2^22: 403 MB a state): every model of these tests, the runs' too."""
    monkeypatch.setattr(bitcm, "TABLE_BITS", 16)


def fresh() -> bitcm.BitCM:
    model = bitcm.BitCM(table_bits=16)
    model.learn(HISTORY)
    return model


def file_hashes(directory) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_a_loaded_state_scores_as_reading_the_history_afresh(tmp_path):
    """Every array of the model is kept (slots, match table and buffer, mixers, APMs, bit-history maps, registers):
    one left out, or loaded as it was before learning, changes the floats."""
    bitstate.open_model(tmp_path / "bitcm", HISTORY, IDENTITY)
    loaded, why = bitstate.load(tmp_path / "bitcm", bitstate.fingerprint(HISTORY, IDENTITY))
    assert why == ""
    reference = fresh()
    given = np.log(np.random.default_rng(0).dirichlet(np.full(256, 0.3), size=len(TEXT)))
    for part in (slice(0, 500), slice(500, None)):  # learning goes on alike too
        np.testing.assert_array_equal(loaded.score(TEXT[part], given[part]), reference.score(TEXT[part], given[part]))


def test_scoring_never_writes_into_the_saved_state(tmp_path):
    state = tmp_path / "bitcm"
    bitstate.open_model(state, HISTORY, IDENTITY)
    before = file_hashes(state)
    for _ in range(2):
        bitstate.open_model(state, HISTORY, IDENTITY).score(TEXT)
    assert file_hashes(state) == before


def kept(state, name):
    return state / f"{name}{bitstate.ARRAY_SUFFIX}"


def _truncated(state):
    path = kept(state, "slots")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupted(state):
    path = kept(state, "w")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))


def _retyped(state):
    bitstate.write_array(kept(state, "w"), bitstate.read_array(kept(state, "w")).astype(np.float64))


def _reshaped(state):
    bitstate.write_array(kept(state, "apm"), bitstate.read_array(kept(state, "apm"))[:-1])


def _missing(state):
    kept(state, "mtab").unlink()


def _bad_manifest(state):
    (state / bitstate.MANIFEST).write_text("{not json")


def _plain_npy_format(state):
    """The folder as format 1 kept it: plain .npy files."""
    manifest = json.loads((state / bitstate.MANIFEST).read_text())
    for name in manifest["arrays"]:
        np.save(state / f"{name}.npy", bitstate.read_array(kept(state, name)))
        kept(state, name).unlink()
    manifest["format"] = 1
    (state / bitstate.MANIFEST).write_text(json.dumps(manifest))


def _other_model(state):
    manifest = json.loads((state / bitstate.MANIFEST).read_text())
    manifest["fingerprint"]["model"] = "0" * 64
    (state / bitstate.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, said", [(_truncated, "damaged"), (_corrupted, "damaged"), (_retyped, "damaged"),
                                          (_reshaped, "damaged"), (_plain_npy_format, "another format"),
                                          (_missing, "damaged"), (_bad_manifest, "damaged"),
                                          (_other_model, "another model")])
def test_a_damaged_or_mismatched_state_is_read_again_and_said(tmp_path, capsys, damage, said):
    state = tmp_path / "bitcm"
    bitstate.open_model(state, HISTORY, IDENTITY)
    damage(state)
    model = bitstate.open_model(state, HISTORY, IDENTITY)
    err = capsys.readouterr().err
    assert said in err and "reading the training bytes again" in err and err.count("\n") == 1
    np.testing.assert_array_equal(model.score(TEXT), fresh().score(TEXT))
    loaded, why = bitstate.load(state, bitstate.fingerprint(HISTORY, IDENTITY))  # and kept again
    assert why == "" and loaded is not None


def test_a_state_of_another_history_or_setting_is_not_used(tmp_path, capsys):
    state = tmp_path / "bitcm"
    bitstate.open_model(state, HISTORY[:-100], IDENTITY)
    other = bitstate.open_model(state, HISTORY, {**IDENTITY, "history": "another digest"})
    assert "another history, history_bytes" in capsys.readouterr().err
    np.testing.assert_array_equal(other.score(TEXT), fresh().score(TEXT))
    bitstate.open_model(state, HISTORY, {**IDENTITY, "bitcm_history": 5})
    assert "another bitcm_history" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["bitcm", "bitkernel", "bitcontexts", "bitmath"])
def test_a_state_saved_by_other_code_of_any_of_the_models_files_is_read_again(tmp_path, monkeypatch, capsys, module):
    """The fingerprint hashes each file of the model's code: a state saved before a change to any one (the contexts,
    since the kernel's split, are a file of their own) is not used."""
    import importlib
    from pathlib import Path

    state = tmp_path / "bitcm"
    bitstate.open_model(state, HISTORY, IDENTITY)
    code = importlib.import_module(f"seqlab.countmodel.{module}")
    changed = tmp_path / f"{module}.py"
    changed.write_text(Path(code.__file__).read_text() + "\n# changed\n")
    monkeypatch.setattr(code, "__file__", str(changed))
    bitstate.open_model(state, HISTORY, IDENTITY)
    assert "another model" in capsys.readouterr().err


def test_a_run_directory_that_cannot_be_written_reads_in_memory(tmp_path, monkeypatch, capsys):
    def refused(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(bitstate, "write_array", refused)
    model = bitstate.open_model(tmp_path / "bitcm", HISTORY, IDENTITY)
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().err == ""
    np.testing.assert_array_equal(model.score(TEXT), fresh().score(TEXT))


def test_a_count_table_built_again_keeps_the_state(tmp_path):
    """store.build replaces counts/ whole: the state inside is kept, as the word table is (its fingerprint says
    whether it is still the history's)."""
    from seqlab.countmodel import store

    tables = tmp_path / "counts"
    bitstate.open_model(tables / store.BITCM_DIR, HISTORY, IDENTITY)
    before = file_hashes(tables / store.BITCM_DIR)
    store.build(HISTORY.astype(np.uint16), [1, 2], tables)
    assert (tables / "meta.json").exists() and file_hashes(tables / store.BITCM_DIR) == before


def mixed(run, text: bytes) -> torch.Tensor:
    from seqlab.scoring import score_run

    tokens = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    return torch.cat([lp for _, lp, _, _ in score_run(run, tokens, 1, run.count_model.session(run.device))])


def test_verbs_keep_the_state_at_first_use_then_read_it_unchanged(trained_runs, tmp_path):
    """The first session of a run without a state reads the training bytes and keeps it; later ones (eval's
    scoring, compress, decompress) read it, give the floats of a model read afresh and leave the files as they were."""
    from seqlab.compress import compress_bytes, decompress_bytes

    copy = bitcm_copy(trained_runs["lstm"], tmp_path / "run")
    state = copy / "counts" / "bitcm"
    first = mixed(load(copy), TEXT)  # reads the training bytes, keeps the state
    before = file_hashes(state)
    run = load(copy)
    in_memory = load(copy)
    in_memory.count_model.bitcm_dir = None
    torch.testing.assert_close(mixed(run, TEXT), first, rtol=0, atol=0)
    torch.testing.assert_close(mixed(in_memory, TEXT), first, rtol=0, atol=0)
    blob = compress_bytes(run, TEXT)
    assert blob == compress_bytes(in_memory, TEXT)
    assert decompress_bytes(load(copy), blob) == TEXT
    assert file_hashes(state) == before


def test_sessions_from_the_second_on_copy_a_state_kept_in_memory_and_never_share_it(trained_runs, tmp_path):
    """A process that opens many sessions (serve: one a request) reads the kept state twice, then hands each session
    a copy of the one it keeps: each learns into its own, so a text scores alike whatever the others read."""
    run = load(bitcm_copy(trained_runs["lstm"], tmp_path / "run"))
    first = mixed(run, TEXT)
    mixed(run, TEXT[::-1])  # a second session learns other bytes; the model keeps its copy
    assert run.count_model.bitcm_kept is not None
    for _ in range(2):
        torch.testing.assert_close(mixed(run, TEXT), first, rtol=0, atol=0)


def test_training_keeps_the_state_of_the_bitwise_model_on_by_default(corpus_file, tmp_path):
    from seqlab.train import train

    cfg = tiny_config(corpus_file, steps=20)
    run_dir = train(cfg, tmp_path / "run", log=lambda *a: None)
    manifest = json.loads((run_dir / "counts" / "bitcm" / bitstate.MANIFEST).read_text())
    assert manifest["fingerprint"]["table_bits"] == 16 and manifest["fingerprint"]["model"] == bitstate.model_digest()


def test_a_state_kept_by_the_float64_model_is_read_again_never_loaded(tmp_path, capsys):
    """A state kept by the model before its float32 mixers and sized APMs (main at 511a2ec: float64 weights and APMs
    of 131,584 rows, an int64 match table, its code's digest) is read afresh, not run by the new kernels."""
    state = tmp_path / "bitcm"
    bitstate.open_model(state, HISTORY, IDENTITY)
    manifest = json.loads((state / bitstate.MANIFEST).read_text())
    old = {"w": np.float64, "w3": np.float64, "apm": np.float64, "mtab": np.int64}
    for name, dtype in old.items():
        array = bitstate.read_array(kept(state, name)).astype(dtype)
        if name == "apm":
            array = np.concatenate([array, np.full((131_584 - len(array), array.shape[1]), 0.5)])
        bitstate.write_array(kept(state, name), array)
        manifest["arrays"][name] = [str(array.dtype), list(array.shape)]
    manifest["fingerprint"]["model"] = "9342f4d76fcb"  # main's code, 511a2ec (its digest's first digits)
    (state / bitstate.MANIFEST).write_text(json.dumps(manifest))
    model = bitstate.open_model(state, HISTORY, IDENTITY)
    assert "another model" in capsys.readouterr().err
    assert (model.w.dtype, model.apm.dtype, model.mtab.dtype) == (np.float32, np.float32, np.int32)
    np.testing.assert_array_equal(model.score(TEXT), fresh().score(TEXT))


def test_a_run_saved_before_counts_bitcm_keeps_it_off_though_the_default_is_on(trained_runs, tmp_path):
    """A config.json without the key is a run from before it: its eval figure and the files it compressed stay
    what they were (a saved setting, true or false, is kept)."""
    from seqlab.config import RunConfig
    from seqlab.run import read_config

    assert RunConfig().counts.bitcm

    run_dir = tmp_path / "run"
    shutil.copytree(trained_runs["lstm"], run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    for saved in (True, False, None):
        config["counts"].pop("bitcm", None)
        if saved is not None:
            config["counts"]["bitcm"] = saved
        (run_dir / "config.json").write_text(json.dumps(config))
        assert read_config(run_dir).counts.bitcm is bool(saved)
    assert not load(run_dir).config.counts.bitcm  # every verb's
