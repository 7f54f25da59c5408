"""The training split's count table read from its files, not mapped: resident memory that does not grow with it.

A memory-mapped table of 96M history tokens (10.5 GiB) took scoring's resident set to 10.9 GB: a lookup
touches a few random pages of every array, so a text of a few thousand tokens touches most of the table's
pages, and each stays mapped (and counted in the process's RSS) until the process ends. DiskTable keeps
only a FENCE in memory, every FENCE-th context of the sorted contexts (8 bytes per FENCE contexts: 70 MB for
564M), and answers a batch of queries in three rounds of positional reads (os.preadv into its own
buffers, nothing mapped):

  1. each query's block of FENCE contexts, found by searching the fence; the query's place in it;
  2. bounds[at], bounds[at + 1] of the queries found;
  3. their entries' tokens and counts.

Reads of one round are sorted and those less than GAP bytes apart are one read. What a lookup of q
queries holds is its answer plus at most q blocks of FENCE contexts and the gaps between merged reads
(`bound`); the tests check that and that no table file is ever mapped. The answers are CountTable's,
array for array (the same files, the same search).
"""

import os
import weakref
from pathlib import Path

import numpy as np

from .tables import CountTable, _ranges, _run_starts

FENCE = 64  # contexts per block: one block read per query, FENCE * 8 bytes
GAP = 4096  # bytes: reads of one round closer than this are one read
CHUNK = FENCE << 16  # contexts read at a time to make a fence


def fence_file(directory: Path) -> Path:
    return Path(directory) / f"fence{FENCE}.npy"


class _Array:
    """One .npy file of one dimension, read by position: its file descriptor, dtype, length and data offset."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
            shape, fortran, dtype = read_header(f)
            if len(shape) != 1 or fortran or dtype.hasobject:
                raise ValueError(f"{path}: not a flat array of numbers")
            self.offset = f.tell()
        self.path, self.dtype, self.n = path, dtype, shape[0]
        self.bytes_read = 0  # by ranges, since it was opened (tests check the bound)
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def read(self, start: int, count: int) -> np.ndarray:
        """Elements start .. start + count - 1 (a sequential read, for the fence)."""
        out = np.empty(count, dtype=self.dtype)
        self._into(out, start)
        return out

    def _into(self, out: np.ndarray, start: int) -> int:
        got = os.preadv(self.fd, [out.view(np.uint8)], self.offset + start * self.dtype.itemsize)
        if got != out.nbytes:
            raise OSError(f"{self.path}: short read ({got} of {out.nbytes} bytes): the table changed on disk")
        return got

    def ranges(self, starts: np.ndarray, stops: np.ndarray, gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(data, where each range's elements begin in it) of ranges start..stop-1, their starts and their stops each
        increasing (they may overlap): ranges closer than `gap` elements (GAP bytes) are read at once (a read costs
        more than copying a page), the gap's elements with them, so the data is stretches of the file in its order.
        The layout depends on the ranges and the gap alone: arrays of one length read alike with the same gap."""
        gap = GAP // self.dtype.itemsize if gap is None else gap
        if not len(starts):
            return np.zeros(0, dtype=self.dtype), np.zeros(0, dtype=np.int64)
        first = _run_starts(np.cumsum(np.concatenate([[0], starts[1:] - stops[:-1] > gap])))  # each read's 1st range
        last = np.append(first[1:], len(starts)) - 1
        lo, hi = starts[first], stops[last]
        at = np.concatenate([[0], np.cumsum(hi - lo)])  # each read's place in the data
        data = np.empty(int(at[-1]), dtype=self.dtype)
        for a, b, s in zip(at[:-1].tolist(), at[1:].tolist(), lo.tolist()):
            self.bytes_read += self._into(data[a:b], s)
        read_of = np.repeat(np.arange(len(first)), last - first + 1)
        return data, at[read_of] + starts - lo[read_of]


class DiskTable:
    """CountTable's find and lookup over a table stored by store.build, read from its files as it is asked."""

    def __init__(self, directory: Path, fence: np.ndarray | None = None):
        directory = Path(directory)
        self.contexts, self.bounds, self.tokens, self.counts = (_Array(directory / f"{name}.npy")
                                                                for name in ("contexts", "bounds", "tokens", "counts"))
        if self.bounds.n != self.contexts.n + 1 or self.tokens.n != self.counts.n:
            raise ValueError(f"{directory}: arrays of mismatched lengths")
        self.directory = directory
        self.fence = read_fence(self.contexts, directory) if fence is None else fence

    def __len__(self) -> int:
        return self.tokens.n  # entries

    def find(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first entry, number of entries) of each query context; 0 entries where it was never seen."""
        unique, inverse = np.unique(context, return_inverse=True)
        start, span = self._find_sorted(unique)
        return start[inverse], span[inverse]

    def _find_sorted(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """find of sorted distinct queries."""
        n, start, span = self.contexts.n, np.zeros(len(context), np.int64), np.zeros(len(context), np.int64)
        if not n or not len(context):
            return start, span
        block = np.maximum(np.searchsorted(self.fence, context, side="right") - 1, 0)  # the one that can hold it
        first = _run_starts(block)
        blocks = block[first]
        data, where = self.contexts.ranges(blocks * FENCE, np.minimum(blocks * FENCE + FENCE, n))
        # the data is sorted and distinct, as the file: a query found in it is in its own block
        of = np.repeat(np.arange(len(blocks)), np.diff(first, append=len(context)))  # each query's block
        pos = np.minimum(np.searchsorted(data, context), len(data) - 1)
        found = np.flatnonzero(data[pos] == context)
        at = blocks[of[found]] * FENCE + pos[found] - where[of[found]]
        bounds, where = self.bounds.ranges(at, at + 2)
        start[found], span[found] = bounds[where], bounds[where + 1] - bounds[where]
        return start, span

    def lookup(self, context: np.ndarray):
        """(rows, next tokens, counts) of every entry whose context is one of the queries, by row: CountTable's."""
        unique, inverse = np.unique(context, return_inverse=True)
        start, span = self._find_sorted(unique)
        seen = np.flatnonzero(span)
        gap = GAP // max(self.tokens.dtype.itemsize, self.counts.dtype.itemsize)  # one layout for both
        tokens, where = self.tokens.ranges(start[seen], start[seen] + span[seen], gap)
        counts, _ = self.counts.ranges(start[seen], start[seen] + span[seen], gap)
        entry = np.zeros(len(unique), np.int64)
        entry[seen] = where  # each query's entries' place in the data read (tokens' and counts' alike)
        span = span[inverse]
        idx = _ranges(entry[inverse], span)
        return np.repeat(np.arange(len(context)), span), tokens[idx].astype(np.int64), counts[idx]

    def bound(self, queries: int, entries: int) -> int:
        """Bytes a lookup of `queries` contexts that finds `entries` entries reads at most: a block of contexts
        per query, two bounds and its entries per query found, and a gap of at most GAP bytes between reads."""
        per_entry = self.tokens.dtype.itemsize + self.counts.dtype.itemsize
        return queries * (FENCE * 8 + 2 * self.bounds.dtype.itemsize + 4 * GAP) + entries * per_entry

    def mapped(self) -> CountTable:
        """The same table memory-mapped, as CountTable (the reader before DiskTable: tests and benchmarks)."""
        arrays = [np.load(a.path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
                  for a in (self.contexts, self.bounds, self.tokens, self.counts)]
        return CountTable(*arrays)


def read_fence(contexts: _Array, directory: Path) -> np.ndarray:
    """Every FENCE-th stored context, from the table's fence file; made from contexts.npy (read a chunk at a time)
    and kept beside it where the file is missing (a table built before the fence was) and the directory writable."""
    path = fence_file(directory)
    try:
        fence = np.load(path, allow_pickle=False)
        if fence.dtype == np.uint64 and fence.shape == (-(-contexts.n // FENCE),):
            return fence
    except (OSError, ValueError):
        pass
    fence = make_fence(contexts)
    try:
        write_fence(fence, directory)
    except OSError:  # a read-only run: keep it in memory
        pass
    return fence


def make_fence(contexts: _Array) -> np.ndarray:
    return np.concatenate([np.zeros(0, np.uint64)] + [contexts.read(i, min(CHUNK, contexts.n - i))[::FENCE]
                                                       for i in range(0, contexts.n, CHUNK)])


def write_fence(fence: np.ndarray, directory: Path) -> None:
    tmp = fence_file(directory).with_suffix(f".tmp{os.getpid()}.npy")
    try:
        np.save(tmp, fence, allow_pickle=False)
        os.replace(tmp, fence_file(directory))
    finally:
        tmp.unlink(missing_ok=True)
