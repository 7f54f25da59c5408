"""Training batches, resumable from a small JSON-able position.

Models that carry state across windows (recurrent ones) read B contiguous
streams, window after window, so the state at the end of one window is the right
start for the next (truncated BPTT). Models with a bounded context read windows
at random positions from a seeded generator of their own. A styled run's batches
also carry the source (style) id of every input token, so a window that crosses
from one document into the next changes style where the text does.

Both add `fresh_rows(B)` windows that begin at a document's BOS, read from a
fresh state: that is how generation, eval and every prompt begin, a state the
streams (whose state carries into each BOS) and random windows (which rarely
start at one) would otherwise almost never train; a model then meets an unknown
state at BOS and its first tokens are noise.
"""

import numpy as np
import torch

from ..errors import SeqlabError


class TokenSources:
    """The source id of every training token: the documents lie end to end in the token array."""

    def __init__(self, doc_tokens: list[int], doc_source: list[int]):
        self.starts = np.cumsum([0] + list(doc_tokens[:-1]))  # every document holds at least its BOS
        self.doc_source = np.asarray(doc_source, dtype=np.int64)

    def at(self, positions: np.ndarray) -> np.ndarray:
        return self.doc_source[np.searchsorted(self.starts, positions, side="right") - 1]


def _gather(tokens: np.ndarray, starts, length: int, sources: TokenSources | None):
    """(inputs, targets, source ids of the inputs or None) of windows of `length` - 1 tokens."""
    idx = np.asarray(starts)[:, None] + np.arange(length)
    chunk = torch.from_numpy(tokens[idx].astype(np.int64))
    styles = None if sources is None else torch.from_numpy(sources.at(idx[:, :-1]))
    return chunk[:, :-1], chunk[:, 1:], styles


def fresh_rows(batch_size: int) -> int:
    """Rows of a batch of `batch_size` that start at a document's BOS from a fresh state: 1 in 16, at least 1."""
    return max(1, batch_size // 16)


class DocumentStarts:
    """Where a window may start as a document does, drawn at random; its first input becomes BOS.

    Every BOS of the training tokens; in a corpus of fewer than MIN_DOCUMENTS documents (one long file,
    say) also the ends of blank lines, then of lines, then any position, until there are that many: its
    paragraphs stand in for the documents it lacks, and no one opening is learned by heart.
    """

    MIN_DOCUMENTS = 64

    def __init__(self, tokens: np.ndarray, tokenizer, length: int):
        tokens = np.asarray(tokens[: max(0, len(tokens) - length + 1)])  # the windows that fit
        starts = np.flatnonzero(tokens == tokenizer.bos_id)
        for line_end in (b"\n\n", b"\n"):
            if len(starts) < self.MIN_DOCUMENTS:
                starts = np.union1d(starts, _ends_of(line_end, tokens, tokenizer.token_bytes))
        self.positions = starts if len(starts) >= self.MIN_DOCUMENTS else None  # None: anywhere
        self.n = len(starts) if self.positions is not None else len(tokens)
        self.bos = tokenizer.bos_id

    def __len__(self) -> int:
        return self.n

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.positions, n) if self.positions is not None else rng.integers(self.n, size=n)


def _ends_of(line_end: bytes, tokens: np.ndarray, token_bytes: list[bytes]) -> np.ndarray:
    """Positions whose token completes `line_end` (one or two newlines), alone or with the token before."""
    hits = np.array([b.endswith(line_end) for b in token_bytes])[tokens]
    if line_end == b"\n\n":  # or a "\n" token after a token that ends in one
        newline = np.array([b == b"\n" for b in token_bytes])
        ends_newline = np.array([b.endswith(b"\n") for b in token_bytes])
        hits[1:] |= newline[tokens[1:]] & ends_newline[tokens[:-1]]
    return np.flatnonzero(hits)


def _document_starts(tokens, tokenizer, seq_len: int, batch_size: int) -> tuple[DocumentStarts | None, int]:
    """(where a window may start a document, None without a tokenizer; how many rows of the global batch do)."""
    if tokenizer is None:
        return None, 0
    starts = DocumentStarts(tokens, tokenizer, seq_len + 1)
    return starts, fresh_rows(batch_size) if starts else 0


def _starting_documents(batch, rows: np.ndarray, starts: DocumentStarts | None):
    """The batch with BOS as the first input of the given rows (already there at a real document start)."""
    if len(rows):
        batch[0][torch.from_numpy(rows), 0] = starts.bos
    return batch


class StreamBatcher:
    """Next: (inputs, targets, source ids or None, starts_new_epoch); the last `fresh` rows start documents.

    Reset the carried state on the flag; the fresh rows start from a fresh state and carry none.
    """
    carries_state = True

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, shard=(0, 1), sources=None,
                 tokenizer=None):
        self.tokens, self.seq_len, self.seed, self.sources = tokens, seq_len, seed, sources
        self.batch_size, self.stream_len = batch_size, len(tokens) // batch_size
        if self.stream_len < seq_len + 1:
            raise SeqlabError(
                f"the training split ({len(tokens)} tokens) is shorter than one context window per stream "
                f"({batch_size} streams of {seq_len + 1} tokens); use a smaller --batch-size or --seq-len, or more data"
            )
        rank, world = shard
        self.streams = np.arange(batch_size)[rank::world] * self.stream_len
        self.shard = shard
        self.starts, self.n_fresh = _document_starts(tokens, tokenizer, seq_len, batch_size)  # in the global batch
        self.fresh = len(range(self.n_fresh)[rank::world])  # in this rank's
        # this rank's share of the global batch's rows: ranks can hold unequal numbers of fresh rows
        self.row_share = (len(self.streams) + self.fresh) * world / (batch_size + self.n_fresh)
        self.epoch, self.window = 0, 0

    def _offset(self) -> int:
        # A new shift each epoch so window boundaries fall in new places.
        return int(np.random.default_rng([self.seed, self.epoch]).integers(self.seq_len))

    def next(self):
        new_epoch = False
        start = self._offset() + self.window * self.seq_len
        if start + self.seq_len + 1 > self.stream_len:
            self.epoch, self.window, new_epoch = self.epoch + 1, 0, True
            start = self._offset()
        self.window += 1
        starts = self.streams + start
        if self.n_fresh:  # every rank draws the global batch's and keeps its own slice
            drawn = self.starts.draw(self.n_fresh, np.random.default_rng([self.seed, self.epoch, self.window]))
            starts = np.concatenate([starts, drawn[self.shard[0] :: self.shard[1]]])
        batch = _gather(self.tokens, starts, self.seq_len + 1, self.sources)
        return *_starting_documents(batch, np.arange(len(self.streams), len(starts)), self.starts), new_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.window = state["epoch"], state["window"]


class WindowBatcher:
    """Next: (inputs, targets, source ids or None, False); the global batch's last `n_fresh` rows start
    documents."""
    carries_state = False

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, shard=(0, 1), sources=None,
                 tokenizer=None):
        if len(tokens) < seq_len + 1:
            raise SeqlabError(
                f"the training split ({len(tokens)} tokens) is shorter than one context window "
                f"({seq_len + 1} tokens); use a smaller --seq-len or more data"
            )
        self.tokens, self.batch_size, self.seq_len, self.sources = tokens, batch_size, seq_len, sources
        self.rank, self.world = shard
        self.row_share = 1.0  # the batch size is a multiple of the ranks: each holds as many rows
        self.generator = torch.Generator().manual_seed(seed)
        self.starts, self.n_fresh = _document_starts(tokens, tokenizer, seq_len, batch_size)  # its last rows

    def next(self):
        # Every rank draws the same global batch and keeps its own slice of it.
        starts = torch.randint(len(self.tokens) - self.seq_len, (self.batch_size,), generator=self.generator).numpy()
        if self.n_fresh:
            seed = int(torch.randint(2**62, (1,), generator=self.generator))
            starts[-self.n_fresh :] = self.starts.draw(self.n_fresh, np.random.default_rng(seed))
        mine = np.arange(self.batch_size)[self.rank :: self.world]
        batch = _gather(self.tokens, starts[mine], self.seq_len + 1, self.sources)
        return *_starting_documents(batch, np.flatnonzero(mine >= self.batch_size - self.n_fresh), self.starts), False

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


def make_batcher(carries_state: bool, tokens, batch_size, seq_len, seed, shard=(0, 1), sources=None, tokenizer=None):
    cls = StreamBatcher if carries_state else WindowBatcher
    return cls(tokens, batch_size, seq_len, seed, shard, sources, tokenizer)
