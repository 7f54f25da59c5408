"""The training split's count table on disk: built once, memory-mapped at every load.

Rebuilding the table from `history.npy` at every load took 6.5 s for 8M tokens and
about 410 bytes of memory per token; at 100M tokens that is past a 24 GB machine.
So training builds it once, at its end, into the run directory:

    runs/NAME/counts/
      meta.json      format, orders, history tokens and their SHA-256, directory depth
      contexts.npy   uint64, sorted distinct context ids (every order's, end to end)
      bounds.npy     int32/int64, where each context's entries begin (len(contexts) + 1)
      tokens.npy     uint16, each entry's next token
      counts.npy     float32, each entry's count
      directory.npy  where each bucket of leading context bits begins (large tables only)

and every load opens these with numpy's mmap_mode: no work at load, and only the
pages a lookup reads become resident. The build writes one order at a time and
never holds the whole table in memory (its peak is about BUILD_BYTES_PER_TOKEN per
history token), and `check_fits` refuses a history whose build would not fit the
memory this machine has free, in one line, before anything is built.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import SeqlabError
from . import tables
from .tables import CountTable, _run_starts, directory_bits, directory_of, directory_shift, history_parts, index_dtype

TABLES_DIR = "counts"
FORMAT = 1
ARRAYS = ("contexts", "bounds", "tokens", "counts")
# Peak memory of a build per history token (the prefix sums, two sort buffers, one order's distinct keys and
# the pieces made from them, the cached hash powers): measured 136 bytes for 8M tokens (bench/scale.py).
BUILD_BYTES_PER_TOKEN = 160
CHUNK = 1 << 24  # elements copied or counted at a time


def history_digest(history: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(history).view(np.uint8)).hexdigest()


def available_memory() -> int:
    """Bytes this machine can still give (MemAvailable), or 0 when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_fits(n_tokens: int, what: str = "the count model", available: int | None = None) -> None:
    """Refuse, in one line, a history whose table would not fit the free memory while it is built."""
    available = available_memory() if available is None else available
    need = n_tokens * BUILD_BYTES_PER_TOKEN
    if available and need > available:
        fits = available // BUILD_BYTES_PER_TOKEN
        raise SeqlabError(f"{what} over {n_tokens:,} training tokens needs about {need / 2**30:.1f} GiB to build, "
                          f"and this machine has {available / 2**30:.1f} GiB free; keep fewer with "
                          f"--set counts.max_history={fits // 1_000_000 * 1_000_000 or fits} (about what fits), "
                          f"or --set counts.enabled=false")


def build(history: np.ndarray, orders: list[int], out: Path) -> None:
    """Write the table of `history` into directory `out` (replaced whole: built beside it, then renamed)."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = _write_parts(history, orders, tmp)
        meta.update(format=FORMAT, orders=list(orders), history_tokens=len(history), history=history_digest(history))
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_parts(history: np.ndarray, orders: list[int], tmp: Path) -> dict:
    """Each order's contexts, bounds, tokens and counts appended to raw files, then made .npy files."""
    files = {name: open(tmp / f"{name}.raw", "wb") for name in ARRAYS}
    sizes = {name: 0 for name in ARRAYS}
    dtypes = {"contexts": np.uint64, "tokens": np.uint16, "counts": np.float32}
    entries = 0
    try:
        for keys, counts in history_parts(history, orders):
            context = keys >> np.uint64(16)
            starts = _run_starts(context)
            pieces = {"contexts": context[starts], "bounds": (starts + entries).astype(np.int64),
                      "tokens": (keys & np.uint64(0xFFFF)).astype(np.uint16), "counts": counts}
            del context, keys
            for name, array in pieces.items():
                array.tofile(files[name])
                sizes[name] += len(array)
            entries += len(counts)
        np.array([entries], dtype=np.int64).tofile(files["bounds"])
        sizes["bounds"] += 1
    finally:
        for f in files.values():
            f.close()
    index = index_dtype(entries)
    dtypes["bounds"] = np.int64
    for name in ARRAYS:
        _raw_to_npy(tmp / f"{name}.raw", tmp / f"{name}.npy", dtypes[name], sizes[name],
                    index if name == "bounds" else None)
    n_contexts = sizes["contexts"]
    meta = {"contexts": n_contexts, "entries": entries, "depth": None}
    if n_contexts >= tables.DIRECTORY_FROM:
        contexts, bits = np.load(tmp / "contexts.npy", mmap_mode="r"), directory_bits(n_contexts)
        per_bucket = np.zeros(1 << bits, dtype=np.int64)
        for i in range(0, n_contexts, CHUNK):
            per_bucket += np.bincount((contexts[i : i + CHUNK] >> directory_shift(n_contexts)).astype(np.int64),
                                      minlength=1 << bits)
        directory, meta["depth"] = directory_of(per_bucket, index)
        np.save(tmp / "directory.npy", directory, allow_pickle=False)
        del contexts
    return meta


def _raw_to_npy(raw: Path, npy: Path, dtype, n: int, cast=None) -> None:
    """A raw array file made an .npy file (a header, then the same bytes), chunk by chunk, optionally cast."""
    out_dtype = np.dtype(cast or dtype)
    source = np.memmap(raw, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
    target = np.lib.format.open_memmap(npy, mode="w+", dtype=out_dtype, shape=(n,))
    for i in range(0, n, CHUNK):
        target[i : i + CHUNK] = source[i : i + CHUNK]
    target.flush()
    del source, target
    raw.unlink()


def open_table(directory: Path, orders: list[int], digest: str | None = None) -> CountTable | None:
    """The table stored in `directory`, memory-mapped; None when it is missing, of another format or orders,
    or (when `digest` is given) of other history tokens than those history_digest named so."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("format") != FORMAT or meta.get("orders") != list(orders):
        return None
    if digest is not None and meta.get("history") != digest:
        return None
    try:
        arrays = {name: _mapped(directory / f"{name}.npy") for name in ARRAYS}
        found = (_mapped(directory / "directory.npy"), meta["depth"]) if meta.get("depth") is not None else None
    except (OSError, ValueError):
        return None
    return CountTable(arrays["contexts"], arrays["bounds"], arrays["tokens"], arrays["counts"], found)


def _mapped(path: Path) -> np.ndarray:
    """The .npy file memory-mapped, as a plain ndarray view: indexing np.memmap itself costs a Python-level
    __getitem__ and a new memmap per lookup (8% of compress's time)."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
