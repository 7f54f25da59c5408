"""The training split's count table on disk: built once, read from its files at every load.

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
      fence64.npy    every 64th context (disktable.py; made at the first load of a table built before it)
      words/         the word model's table (words.py), the same files, read the same way
      bitcm/         the bitwise model's state after reading the training bytes (counts.bitcm; bitstate.py)

and every load opens it: a table of up to counts.map_up_to_gib memory-mapped, as a CountTable
(no work at load), a larger one as a disktable.DiskTable: lookups read what they need by
position, nothing is mapped, so resident memory does not grow with the table (mapped, a
10.5 GiB table became 10.9 GB of a scoring process's RSS). Tests compare the two.

The build's memory does not grow with the history: one order at a time, the history
is hashed and sorted a SHARD of positions at a time into sorted runs of distinct keys
and their counts (uint64 and uint32 files beside the table), which are then merged,
MERGE entries at a time, straight into the .npy files. Its peak is BUILD_MEMORY plus
the history; the table and one order's runs take the disk. `check_fits` refuses, in
one line, a history whose build would not fit the free memory or disk, before
anything is built, and a disk that fills up anyway is the same one line.
"""

import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import SeqlabError
from . import disktable, tables
from .tables import CountTable, _run_starts, _sum_by_key, directory_bits, directory_shift, index_dtype, order_keys
from .words import REACH, SEPARATOR_TOKENS, WORD_ORDERS, WORD_TOKENS, word_contexts

TABLES_DIR = "counts"
WORDS_DIR = "words"  # the word model's table, inside TABLES_DIR
BITCM_DIR = "bitcm"  # the bitwise model's state after reading the training bytes (bitstate.py), inside TABLES_DIR
WORD_TABLE = ["words", WORD_TOKENS, SEPARATOR_TOKENS]  # its meta.json "orders": what its contexts are
WORD_SHARD = 1 << 20  # history positions of word contexts hashed at a time (word_contexts' arrays are wider)
FORMAT = 1
ARRAYS = ("contexts", "bounds", "tokens", "counts")
SHARD = 1 << 22  # history positions hashed and sorted at a time
MERGE = 1 << 22  # entries of one order's sorted runs merged at a time
CHUNK = 1 << 22  # contexts read at a time to count the directory
INT32_ENTRIES = 2**31  # bounds are int32 when a table can have fewer entries than this
# The build's working memory whatever the history's length (a shard's hashes and their sort, the merge's blocks,
# the cached hash powers: the whole process peaked at 0.56-0.98 GB for 2.5M-96M tokens, docs/countmodel.md), and
# what it needs per history token besides: the history itself (uint16) and the copy save_history writes.
BUILD_MEMORY = 1 << 30
BUILD_BYTES_PER_TOKEN = 8
# Disk per history token: the table (measured 114 bytes for 96M tokens of Debian docs and sources, 165 for 5M of
# Python's HTML docs; less repetitive text makes more distinct contexts) and one order's sorted runs (12 at most).
DISK_BYTES_PER_TOKEN = 180


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


def free_disk(directory: Path) -> int:
    """Bytes free to this user on the filesystem of `directory` (or of its nearest existing parent)."""
    directory = Path(directory).absolute()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return shutil.disk_usage(directory).free


def check_fits(n_tokens: int, what: str = "the count model", available: int | None = None,
               directory: Path | None = None, disk: int | None = None) -> None:
    """Refuse, in one line, a history whose table would not fit the free memory while it is built, or (given the
    run directory it goes to) the free disk."""
    available = available_memory() if available is None else available
    need = BUILD_MEMORY + n_tokens * BUILD_BYTES_PER_TOKEN
    if available and need > available:
        fits = max((available - BUILD_MEMORY) // BUILD_BYTES_PER_TOKEN, 0)
        _refuse(what, n_tokens, need, available, "memory", "this machine has", fits)
    if directory is None and disk is None:
        return
    disk = free_disk(directory) if disk is None else disk
    need = n_tokens * DISK_BYTES_PER_TOKEN
    if need > disk:
        _refuse(what, n_tokens, need, disk, f"disk in {directory}", "it has", disk // DISK_BYTES_PER_TOKEN)


def _refuse(what: str, n_tokens: int, need: int, free: int, where: str, has: str, fits: int):
    raise SeqlabError(f"{what} over {n_tokens:,} training tokens needs about {need / 2**30:.1f} GiB of {where} to "
                      f"build, and {has} {free / 2**30:.1f} GiB free; keep fewer with "
                      f"--set counts.max_history={fits // 1_000_000 * 1_000_000 or max(fits, 1)} (about what fits), "
                      f"or --set counts.enabled=false")


def build(history: np.ndarray, orders: list, out: Path, words: tuple | None = None) -> None:
    """Write the table of `history` into directory `out` (replaced whole: built beside it, then renamed): of the
    context orders `orders`, or, with words (the token classes words.word_classes gives), the word model's table,
    whose `orders` are WORD_TABLE."""
    out = Path(out)
    check_fits(len(history), directory=out.parent)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = _write_table(history, orders, tmp, words)
        disktable.write_fence(disktable.make_fence(disktable._Array(tmp / "contexts.npy")), tmp)
        meta.update(format=FORMAT, orders=list(orders), history_tokens=len(history), history=history_digest(history))
        (tmp / "meta.json").write_text(json.dumps(meta))
        for kept in (WORDS_DIR, BITCM_DIR):  # the word model's table, the bitwise model's state: kept (a load
            if (out / kept).is_dir():  # checks each is the history's)
                os.replace(out / kept, tmp / kept)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise SeqlabError(f"the disk of {out.parent} filled up while the count model's table of {len(history):,} "
                          f"tokens was built (nothing half-built was left); free some, or keep fewer with "
                          f"--set counts.max_history=N, or --set counts.enabled=false") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_table(history: np.ndarray, orders: list, tmp: Path, words: tuple | None) -> dict:
    """Every order's (or word context's) contexts, bounds, tokens and counts, appended to the .npy files order by
    order."""
    n = len(history)
    if words is None:
        columns = [_order_counts(history, index, k, len(orders), tmp) for index, k in enumerate(orders)]
        most = sum(max(n - k, 0) for k in orders)  # entries, at most: bounds must hold them before they are counted
    else:
        columns = [_word_counts(history, column, *words, tmp) for column in range(WORD_ORDERS)]
        most = n * WORD_ORDERS
    dtypes = {"contexts": np.uint64, "bounds": np.int32 if most < INT32_ENTRIES else np.int64, "tokens": np.uint16,
              "counts": np.float32}
    files = {name: _NpyWriter(tmp / f"{name}.npy", dtypes[name]) for name in ARRAYS}
    entries = 0
    try:
        for pieces in columns:
            last = None  # the context the previous piece ended with (one order's contexts may span pieces)
            for keys, counts in pieces:
                context = keys >> np.uint64(16)
                starts = _run_starts(context)
                if last is not None and context[0] == last:
                    starts = starts[1:]
                files["contexts"].write(context[starts])
                files["bounds"].write(starts + entries)
                files["tokens"].write(keys & np.uint64(0xFFFF))
                files["counts"].write(counts)
                entries, last = entries + len(keys), context[-1]
        files["bounds"].write(np.array([entries]))
    finally:
        for f in files.values():
            f.close()
    n_contexts = files["contexts"].n
    meta = {"contexts": n_contexts, "entries": entries, "depth": None}
    if n_contexts >= tables.DIRECTORY_FROM:
        meta["depth"] = _write_directory(tmp, n_contexts, files["contexts"].header_length, index_dtype(entries))
    return meta


def _write_directory(tmp: Path, n_contexts: int, header: int, dtype) -> int:
    """directory.npy, directory_of's (where each bucket of contexts begins), from the sorted contexts.npy a chunk at
    a time (its 2**directory_bits + 1 entries are a quarter of the contexts: not held at once); returns its depth.

    Bucket b begins at the number of contexts in buckets below b: for every bucket up to the last one a chunk
    reaches, that is the contexts before the chunk plus the chunk's own below b."""
    shift, n_buckets = directory_shift(n_contexts), 1 << directory_bits(n_contexts)
    out = _NpyWriter(tmp / "directory.npy", dtype)
    fullest, done, previous = 0, 0, 0  # buckets whose beginning is written; the last beginning written
    try:
        for i in range(0, n_contexts, CHUNK):
            contexts = np.fromfile(tmp / "contexts.npy", np.uint64, min(CHUNK, n_contexts - i), offset=header + 8 * i)
            buckets = (contexts >> shift).astype(np.int64)
            del contexts
            last = n_buckets + 1 if i + len(buckets) == n_contexts else int(buckets[-1]) + 1  # all after: the end
            for first in range(done, last, CHUNK):
                begins = i + np.searchsorted(buckets, np.arange(first, min(first + CHUNK, last)))
                fullest = max(fullest, int(np.diff(begins, prepend=previous).max()))
                out.write(begins)
                previous = int(begins[-1])
            done = last
    finally:
        out.close()
    return fullest.bit_length()


def _order_counts(history: np.ndarray, index: int, k: int, n_orders: int, tmp: Path):
    """Yield pieces (sorted distinct keys, their counts as uint32) of order k over the history, in key order:
    a shard of positions at a time into sorted runs on disk, then the runs merged."""
    n = len(history)
    span = min(SHARD, n) + k

    def keys_at(start):
        return order_keys(history, index, k, n_orders, start, min(start + SHARD, n), span)

    yield from _sharded_counts(range(k, n, SHARD), keys_at, tmp)  # none when no position has k tokens before it


def _word_counts(history: np.ndarray, column: int, letter: np.ndarray, folded: np.ndarray, tmp: Path):
    """_order_counts' pieces for the word model's context `column` (words.py), from every position of the history:
    a shard of WORD_SHARD positions at a time, each read with the REACH tokens before it."""
    n = len(history)

    def keys_at(start):
        lo, stop = max(start - REACH, 0), min(start + WORD_SHARD, n)
        contexts = word_contexts(history[lo:stop], letter, folded)[start - lo :, column]
        return (contexts << np.uint64(16)) | np.asarray(history[start:stop]).astype(np.uint64)

    yield from _sharded_counts(range(0, n, WORD_SHARD), keys_at, tmp)


def _sharded_counts(shards: range, keys_at, tmp: Path):
    """Yield pieces (sorted distinct keys, their counts as uint32) of the keys that keys_at(start) gives for each
    shard's start, in key order: each shard's keys sorted into a run on disk, then the runs merged."""
    if not shards:
        return
    if len(shards) == 1:  # a short history: one run, held
        yield _counted(keys_at(shards[0]))
        return
    runs = []
    try:
        for i, start in enumerate(shards):
            keys, counts = _counted(keys_at(start))
            for part, array in (("keys", keys), ("counts", counts)):
                array.tofile(tmp / f"run{i}.{part}")
            runs.append((len(keys), tmp / f"run{i}.keys", tmp / f"run{i}.counts"))
            del keys, counts
        yield from _merged(runs)
    finally:
        for _, keys, counts in runs:
            keys.unlink(missing_ok=True)
            counts.unlink(missing_ok=True)


def _counted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct keys, how often each occurs, as uint32) of unsorted keys (sorted in place)."""
    keys.sort()
    starts = _run_starts(keys)
    return keys[starts], np.diff(starts, append=len(keys)).astype(np.uint32)


def _merged(runs: list[tuple[int, Path, Path]]):
    """Yield pieces (distinct keys, summed counts) of sorted runs of distinct keys (their length, keys file, counts
    file), merged, in key order, holding about MERGE entries at a time: a block of each run, cut where the least of
    the blocks' last keys is (every key up to it is in the blocks). Blocks are read, not mapped: mapped pages would
    count as the build's resident memory until the end."""
    block = max(MERGE // len(runs), 1)
    at = [0] * len(runs)
    while True:
        live = [(i, _read(runs[i][1], np.uint64, at[i], block)) for i in range(len(runs)) if at[i] < runs[i][0]]
        if not live:
            return
        unfinished = [got[-1] for i, got in live if at[i] + len(got) < runs[i][0]]
        keys, counts = [], []
        for i, got in live:
            take = int(np.searchsorted(got, min(unfinished), side="right")) if unfinished else len(got)
            keys.append(got[:take])
            counts.append(_read(runs[i][2], np.uint32, at[i], take))
            at[i] += take
        yield _sum_by_key(np.concatenate(keys), np.concatenate(counts))


def _read(path: Path, dtype, start: int, count: int) -> np.ndarray:
    return np.fromfile(path, dtype=dtype, count=count, offset=start * np.dtype(dtype).itemsize)


class _NpyWriter:
    """An .npy file of one dimension written a piece at a time; its header, which numpy pads to the same length
    for any length of the array, is written again with the final length when it is closed."""

    def __init__(self, path: Path, dtype):
        self.dtype, self.n = np.dtype(dtype), 0
        self.file = open(path, "wb")
        self.header_length = self.file.write(self._header())

    def _header(self) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                   "fortran_order": False, "shape": (self.n,)})
        return buf.getvalue()

    def write(self, array: np.ndarray) -> None:
        array.astype(self.dtype, copy=False).tofile(self.file)
        self.n += len(array)

    def close(self) -> None:
        if self.file.closed:
            return
        header = self._header()
        if len(header) != self.header_length:  # numpy pads it for 21 digits of length
            raise ValueError(f"the .npy header of {self.file.name} changed length")
        self.file.seek(0)
        self.file.write(header)
        self.file.close()


def table_bytes(directory: Path) -> int:
    """The size on disk of the table stored in `directory` (0 when there is none)."""
    return sum(path.stat().st_size for path in (Path(directory) / f"{name}.npy" for name in ARRAYS) if path.exists())


def open_table(directory: Path, orders: list[int], digest: str | None = None, mapped: bool = False):
    """The table stored in `directory`, as a DiskTable (read from its files as lookups ask, nothing mapped) or, with
    `mapped`, a CountTable over its memory-mapped arrays; None when it is missing, of another format or orders, or
    (when `digest` is given) of other history tokens than those history_digest named so."""
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
        if not mapped:
            return disktable.DiskTable(directory)
        arrays = {name: _mapped(directory / f"{name}.npy") for name in ARRAYS}
        found = (_mapped(directory / "directory.npy"), meta["depth"]) if meta.get("depth") is not None else None
    except (OSError, ValueError, KeyError):
        return None
    return CountTable(arrays["contexts"], arrays["bounds"], arrays["tokens"], arrays["counts"], found)


def _mapped(path: Path) -> np.ndarray:
    """The .npy file memory-mapped, as a plain ndarray view: indexing np.memmap itself costs a Python-level
    __getitem__ and a new memmap per lookup (8% of compress's time)."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
