"""The bitwise model's state after reading the training bytes, kept with the run (runs/NAME/counts/bitcm/).

Why: every process that scores with counts.bitcm (eval, surprise, compress, serve) first read the training split
through the bitwise model: 8-12 CPU-seconds for 1 MB, about 2 minutes at the 16 MiB cap, before its first byte. The
state that reading leaves is the same every time, so it is computed once (at the end of `seqlab train`, which
evaluates with it, or at the first use by any verb of a run that has none) and every later session maps it:

    counts/bitcm/
      manifest.json   FORMAT, the fingerprint (below), the model's attributes (arrays by name, scalars, tuples)
      NAME.npy.zst    one per array of the model (slots, match table, the buffer it points into, mixers, APMs ...):
                      a .npy file in a zstd frame (level 3): the slots of a 1 MB history, 403 MB as they are, keep
                      in 44 MB, for 0.3-0.7 s of decompression at each load (docs/countmodel.md)

Every array the model holds is saved, found generically (vars(model), through tuples, an array held twice saved once),
so a model that gains a context or a mixer needs no change here. Loaded by reading the files into the session's memory
(it learns as it scores, and never writes into the files): mapped copy-on-write, scoring 100 KB copied nearly every
page of the slots anyway, one 4 KB page fault at a time, and random reads over 403 MB of 4 KB pages missed the TLB;
read whole, numpy's allocation takes huge pages (3.5 -> 3.1 CPU-s a 100 KB, docs/quality.md). Since the arrays are
read whole anyway, they are kept compressed: mostly empty slots, they shrink about ninefold. The fingerprint names
the history read (the count model's digest and the bytes' number), the settings (counts.bitcm_history, the slot
table's bits) and the model's code (bitcm.py, bitkernel.py, bitcontexts.py and bitmath.py's SHA-256: a state saved by
another version of the model is not used, whoever forgot to bump a version number). A state of another fingerprint, or
damaged (a file missing, truncated, of another shape or dtype), is read afresh and saved again, said on stderr; a run
directory that is not writable reads it in memory, as before.
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import zstandard

from . import bitcm, bitcontexts, bitkernel, bitmath

FORMAT = 2  # the folder's layout: manifest.json and one zstd-compressed .npy file per array (1: plain .npy files)
MANIFEST = "manifest.json"
ARRAY_SUFFIX = ".npy.zst"
ZSTD_LEVEL = 3  # level 3: 44 MB in 0.65 s for a 1 MB history's slots; higher levels gain little on them


def model_digest() -> str:
    """SHA-256 of the bitwise model's code (its state's meaning: contexts, layout, constants)."""
    h = hashlib.sha256()
    for module in (bitcm, bitkernel, bitcontexts, bitmath):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def fingerprint(history: np.ndarray, identity: dict) -> dict:
    """What a saved state must match to be used: identity (the history's digest and the settings, the caller's), the
    bytes read, the slot table's bits and the model's code."""
    return {**identity, "history_bytes": len(history), "table_bits": bitcm.table_bits_for(len(history)),
            "model": model_digest()}


def open_model(directory: Path | None, history: np.ndarray, identity: dict) -> bitcm.BitCM:
    """The bitwise model after reading `history` (the training bytes): loaded from `directory` where a state of this
    fingerprint is kept there, else read afresh and kept there (directory None, or not writable: in memory only)."""
    expected = fingerprint(history, identity)
    if directory is not None:
        model, why = load(directory, expected)
        if model is not None:
            return model
        if why:
            print(f"seqlab: the bitwise model's state in {directory} {why}: reading the training bytes again",
                  file=sys.stderr)
    model = bitcm.BitCM(table_bits=expected["table_bits"])
    model.learn(history)
    if directory is not None:
        save(model, directory, expected)
    return model


def save(model: bitcm.BitCM, directory: Path, expected: dict) -> bool:
    """Write the model's state into `directory` (replaced whole: written beside it, then renamed); False where it
    could not be written (a read-only run, a full disk: nothing half-written is left)."""
    directory = Path(directory)
    attributes, arrays = _flatten(model)
    tmp = directory.with_name(f".{directory.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, array in arrays.items():
            write_array(tmp / f"{name}{ARRAY_SUFFIX}", array)
        shapes = {name: [str(a.dtype), list(a.shape)] for name, a in arrays.items()}
        manifest = {"format": FORMAT, "fingerprint": expected, "attributes": attributes, "arrays": shapes}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        shutil.rmtree(directory, ignore_errors=True)
        os.rename(tmp, directory)  # fails where another process put its state there first: theirs is kept
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(directory: Path, expected: dict) -> tuple[bitcm.BitCM | None, str]:
    """(the model saved in `directory` with fingerprint `expected`, its arrays read into memory, ""), or (None,
    why not: "" where there is none)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as e:
        return None, f"is damaged ({MANIFEST}: {e})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, f"is of another format ({manifest.get('format') if isinstance(manifest, dict) else None})"
    if manifest.get("fingerprint") != expected:
        differ = sorted(k for k in expected if manifest["fingerprint"].get(k) != expected[k]) \
            if isinstance(manifest.get("fingerprint"), dict) else ["all"]
        return None, f"is of another {', '.join(differ)}"
    try:
        arrays = {name: _read(directory / f"{name}{ARRAY_SUFFIX}", dtype, shape)
                  for name, (dtype, shape) in manifest["arrays"].items()}
        model = bitcm.BitCM.__new__(bitcm.BitCM)
        for name, value in manifest["attributes"].items():
            setattr(model, name, _unflatten(value, arrays))
    except (OSError, ValueError, KeyError, TypeError, zstandard.ZstdError) as e:
        return None, f"is damaged ({e})"
    return model, ""


def write_array(path: Path, array: np.ndarray) -> None:
    """`array` as a .npy file inside one zstd frame at `path`."""
    with open(path, "wb") as f, zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(f) as z:
        np.lib.format.write_array(z, array, allow_pickle=False)


def read_array(path: Path) -> np.ndarray:
    """The array write_array kept at `path`; ValueError (a truncated file), zstandard.ZstdError (a damaged frame)."""
    with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as z:
        return np.lib.format.read_array(z, allow_pickle=False)


def _read(path: Path, dtype: str, shape: list) -> np.ndarray:
    """The kept array; ValueError where it is not of the manifest's dtype and shape."""
    array = read_array(path)
    if str(array.dtype) != dtype or list(array.shape) != shape:
        raise ValueError(f"{path.name} is {array.dtype} {list(array.shape)}, the manifest says {dtype} {shape}")
    return array


def _flatten(model: bitcm.BitCM) -> tuple[dict, dict]:
    """(the model's attributes as JSON: an array as {"array": its name}, a tuple as {"tuple": [...]}, scalars as they
    are; the arrays by name). An array held in several places (the slots in the stream's view) is saved once, under
    the first name it is found at, and loaded as one array again."""
    arrays, names = {}, {}

    def encode(value, name: str):
        if isinstance(value, np.ndarray):
            if id(value) not in names:
                names[id(value)], arrays[name] = name, value
            return {"array": names[id(value)]}
        if isinstance(value, tuple):
            return {"tuple": [encode(v, f"{name}.{i}") for i, v in enumerate(value)]}
        assert value is None or isinstance(value, (bool, int, float, str)), f"{name}: {type(value).__name__}"
        return value

    attributes = {name: encode(value, name) for name, value in vars(model).items()}
    views = [(a, b) for a in arrays for b in arrays if a < b and np.may_share_memory(arrays[a], arrays[b])]
    assert not views, f"arrays that share memory would be saved apart: {views}"
    return attributes, arrays


def _unflatten(value, arrays: dict):
    if isinstance(value, dict) and "array" in value:
        return arrays[value["array"]]
    if isinstance(value, dict):
        return tuple(_unflatten(v, arrays) for v in value["tuple"])
    return value
