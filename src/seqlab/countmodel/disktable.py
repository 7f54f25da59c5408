"""The training split's count table read from its files, not mapped: resident memory that does not grow with it.

A memory-mapped table of 96M history tokens (10.5 GiB) took scoring's resident set to 10.9 GB: a lookup
touches a few random pages of every array, the kernel maps each with its neighbours, so a text of a few
thousand tokens maps most of the table, and it stays counted in the process's RSS. (Letting the pages go
with MADV_DONTNEED once 4 GiB were mapped took the lookups of 190 KB from 2.2 s to 19 s: each lookup mapped
about 1 GB again.) DiskTable holds, in memory and bounded:

  FENCE   every FENCE-th context of the sorted contexts (8 bytes per 64 contexts: 70 MB for 564M);
  FRONT   the table's first contexts and their entries, whole blocks up to FRONT bytes: the shortest
          orders come first (an order's index tops its ids) and are asked the most (a short context
          recurs in every chunk); a CountTable in memory answers the queries below them;
  cache   2**CACHE_BITS slots: each a context asked before, its entries' place and number, and its
          entries when WIDTH or fewer (a long context usually has one); repeated text asks again.

and answers the other queries in three rounds of positional reads (os.preadv into its own buffers):

  1. each query's block of FENCE contexts, found by searching the fence; the query's place in it;
  2. bounds[at], bounds[at + 1] of the queries found;
  3. their entries' tokens and counts.

Reads of one round are sorted, and those less than GAP bytes apart are one read (a system call costs
about 4 us on the shared VM, more than copying a page). A lookup of q queries reads at most `bound`
bytes; the tests check that, and that no table file is ever mapped. The answers are CountTable's,
array for array (the same files, the same search).
"""

import os
import threading
import weakref
from pathlib import Path

import numpy as np

from .tables import _MUL, CountTable, _ranges, _run_starts, search

FENCE = 64  # contexts per block: one block read per query, FENCE * 8 bytes
GAP = 4096  # bytes: reads of one round closer than this are one read
CHUNK = FENCE << 16  # contexts read at a time to make a fence
CACHE_BITS = 22  # the cache of lookups has 2**CACHE_BITS slots (4M: 176 MB) ...
WIDTH = 4  # ... each holding a context's number of entries and, of WIDTH or fewer, the entries
NONE = np.uint64(2**64 - 1)  # an empty slot (context ids have 48 bits)
FRONT = 512 << 20  # bytes: the table's first contexts (its shortest orders') and their entries, held in memory


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
        got = os.preadv(self.fd, [out.view(np.uint8)], self.offset + start * self.dtype.itemsize)
        if got != out.nbytes:
            raise OSError(f"{self.path}: short read ({got} of {out.nbytes} bytes): the table changed on disk")
        return out

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
        size, fd, view = self.dtype.itemsize, self.fd, memoryview(data.view(np.uint8))
        for a, b, s in zip((at[:-1] * size).tolist(), (at[1:] * size).tolist(), (self.offset + lo * size).tolist()):
            if os.preadv(fd, [view[a:b]], s) != b - a:  # one read a range: its cost is the system call's
                raise OSError(f"{self.path}: a short read: the table changed on disk")
        self.bytes_read += data.nbytes
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
        # the cache: per slot a context (NONE: empty), its first entry and number of entries, and those of WIDTH or
        # fewer entries themselves (a long context's are one or two)
        self.cached = np.full(1 << CACHE_BITS, NONE, dtype=np.uint64)
        self.start, self.span = np.zeros(1 << CACHE_BITS, np.int64), np.zeros(1 << CACHE_BITS, np.int64)
        self.cached_tokens = np.zeros((1 << CACHE_BITS, WIDTH), self.tokens.dtype)
        self.cached_counts = np.zeros((1 << CACHE_BITS, WIDTH), self.counts.dtype)
        self.lock = threading.Lock()
        self.front, self.limit = self._front()

    def _front(self) -> tuple["_Front", np.uint64]:
        """(the table's first contexts and their entries, in memory, as many whole blocks as fit FRONT bytes; the
        least context after them). The shortest orders come first (an order's index tops its context ids), and they
        are asked the most: every position asks each order, and a short context recurs in every chunk."""
        n, row = self.contexts.n, 8 + self.bounds.dtype.itemsize
        per_entry = self.tokens.dtype.itemsize + self.counts.dtype.itemsize
        lo, hi = 0, len(self.fence)  # blocks: the most whose contexts and entries fit FRONT bytes
        while lo < hi:
            mid = (lo + hi + 1) // 2
            m = min(mid * FENCE, n)
            lo, hi = (mid, hi) if m * row + int(self.bounds.read(m, 1)[0]) * per_entry <= FRONT else (lo, mid - 1)
        m = min(lo * FENCE, n)
        bounds = self.bounds.read(0, m + 1)
        front = _Front(self.contexts.read(0, m), bounds, self.tokens.read(0, int(bounds[-1])),
                       self.counts.read(0, int(bounds[-1])), self.fence[: lo])
        return front, self.contexts.read(m, 1)[0] if m < n else NONE

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
        held = int(np.searchsorted(unique, self.limit))  # the queries below `limit`: the front's to answer
        rows, tokens, counts = self.front.lookup(unique[:held])
        with self.lock:  # the cache is one
            span, later_tokens, later_counts = self._entries(unique[held:])
        span = np.concatenate([np.bincount(rows, minlength=held), span])
        tokens, counts = np.concatenate([tokens, later_tokens]), np.concatenate([counts, later_counts])
        idx = _ranges((np.cumsum(span) - span)[inverse], span[inverse])
        return np.repeat(np.arange(len(context)), span[inverse]), tokens[idx].astype(np.int64), counts[idx]

    def _entries(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(number of entries, their tokens, their counts) of sorted distinct queries, the entries laid end to end in
        query order: those the cache has from it, the others read (and then cached)."""
        slot = ((context * _MUL) >> np.uint64(64 - CACHE_BITS)).astype(np.int64)
        hit = self.cached[slot] == context
        start, span = self.start[slot], self.span[slot]
        miss = np.flatnonzero(~hit)
        start[miss], span[miss] = self._find_sorted(context[miss])
        offsets = np.cumsum(span) - span
        tokens, counts = np.empty(int(span.sum()), self.tokens.dtype), np.empty(int(span.sum()), self.counts.dtype)
        read = np.flatnonzero((~hit | (span > WIDTH)) & (span > 0))  # entries the cache does not hold
        gap = GAP // max(self.tokens.dtype.itemsize, self.counts.dtype.itemsize)  # one layout for both
        got_tokens, where = self.tokens.ranges(start[read], start[read] + span[read], gap)
        got_counts, _ = self.counts.ranges(start[read], start[read] + span[read], gap)
        into, src = _ranges(offsets[read], span[read]), _ranges(where, span[read])
        tokens[into], counts[into] = got_tokens[src], got_counts[src]
        into, cell = _cells(np.flatnonzero(hit & (span <= WIDTH)), offsets, span, slot)
        tokens[into], counts[into] = self.cached_tokens[cell], self.cached_counts[cell]
        # cache the misses, one a slot
        keep = miss[len(miss) - 1 - np.unique(slot[miss][::-1], return_index=True)[1]]
        self.cached[slot[keep]], self.start[slot[keep]], self.span[slot[keep]] = context[keep], start[keep], span[keep]
        into, cell = _cells(keep[span[keep] <= WIDTH], offsets, span, slot)
        self.cached_tokens[cell], self.cached_counts[cell] = tokens[into], counts[into]
        return span, tokens, counts

    def bound(self, queries: int, entries: int) -> int:
        """Bytes a lookup of `queries` contexts that finds `entries` entries reads at most: a block of contexts
        per query, two bounds and its entries per query found, and a gap of at most GAP bytes between reads."""
        per_entry = self.tokens.dtype.itemsize + self.counts.dtype.itemsize
        return queries * (FENCE * 8 + 2 * self.bounds.dtype.itemsize + 4 * GAP) + entries * per_entry


def _cells(which: np.ndarray, offsets: np.ndarray, span: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, tuple]:
    """For the queries `which`, each entry's place in the laid-out entries and its cache cell (slot, column)."""
    into = _ranges(offsets[which], span[which])
    return into, (np.repeat(slot[which], span[which]), into - np.repeat(offsets[which], span[which]))


class _Front(CountTable):
    """DiskTable's first contexts and their entries, in memory: a CountTable searched through the fence, so that
    there is no directory to compute at load (1 s for 26M contexts)."""

    def __init__(self, contexts: np.ndarray, bounds: np.ndarray, tokens: np.ndarray, counts: np.ndarray,
                 fence: np.ndarray):
        self.contexts, self.bounds, self.tokens, self.counts, self.fence = contexts, bounds, tokens, counts, fence
        self.directory = None

    def _candidate(self, context: np.ndarray) -> np.ndarray:
        """Per query, the first stored context >= it (the last, past the end): its block by the fence, then a binary
        search of the block."""
        block = np.maximum(np.searchsorted(self.fence, context, side="right") - 1, 0) * FENCE
        return search(self.contexts, context, block, np.minimum(block + FENCE, len(self.contexts)),
                      FENCE.bit_length())


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
