"""Training batches, resumable from a small JSON-able position.

Models that carry state across windows (recurrent ones) read B contiguous
streams, window after window, so the state at the end of one window is the right
start for the next (truncated BPTT). Models with a bounded context read windows
at random positions from a seeded generator of their own. A styled run's batches
also carry the source (style) id of every input token, so a window that crosses
from one document into the next changes style where the text does.
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


class StreamBatcher:
    carries_state = True

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, shard=(0, 1), sources=None):
        self.tokens, self.seq_len, self.seed, self.sources = tokens, seq_len, seed, sources
        self.stream_len = len(tokens) // batch_size
        if self.stream_len < seq_len + 1:
            raise SeqlabError(
                f"the training split ({len(tokens)} tokens) is shorter than one context window per stream "
                f"({batch_size} streams of {seq_len + 1} tokens); use a smaller --batch-size or --seq-len, or more data"
            )
        rank, world = shard
        self.streams = np.arange(batch_size)[rank::world] * self.stream_len
        self.epoch, self.window = 0, 0

    def _offset(self) -> int:
        # A new shift each epoch so window boundaries fall in new places.
        return int(np.random.default_rng([self.seed, self.epoch]).integers(self.seq_len))

    def next(self):
        """(inputs, targets, source ids or None, starts_new_epoch): reset the carried state on the flag."""
        new_epoch = False
        start = self._offset() + self.window * self.seq_len
        if start + self.seq_len + 1 > self.stream_len:
            self.epoch, self.window, new_epoch = self.epoch + 1, 0, True
            start = self._offset()
        self.window += 1
        return *_gather(self.tokens, self.streams + start, self.seq_len + 1, self.sources), new_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.window = state["epoch"], state["window"]


class WindowBatcher:
    carries_state = False

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, shard=(0, 1), sources=None):
        if len(tokens) < seq_len + 1:
            raise SeqlabError(
                f"the training split ({len(tokens)} tokens) is shorter than one context window "
                f"({seq_len + 1} tokens); use a smaller --seq-len or more data"
            )
        self.tokens, self.batch_size, self.seq_len, self.sources = tokens, batch_size, seq_len, sources
        self.rank, self.world = shard
        self.generator = torch.Generator().manual_seed(seed)

    def next(self):
        # Every rank draws the same global batch and keeps its own slice of it.
        starts = torch.randint(len(self.tokens) - self.seq_len, (self.batch_size,), generator=self.generator)
        return *_gather(self.tokens, starts.numpy()[self.rank :: self.world], self.seq_len + 1, self.sources), False

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


def make_batcher(carries_state: bool, tokens, batch_size, seq_len, seed, shard=(0, 1), sources=None):
    cls = StreamBatcher if carries_state else WindowBatcher
    return cls(tokens, batch_size, seq_len, seed, shard, sources)
