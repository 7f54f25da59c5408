"""Many texts read in lockstep, one token each per step: a decoder's view of the count model.

`seqlab compress` codes a file as segments read side by side (compress/lockstep.py): at
every step each segment's next token is predicted, then learnt. LockstepReader gives the
count experts for every segment's next position at once, with the context ids of
context_hashes (the very values eval counts with) kept up to date a token at a time:
each text's prefix sums of the hash live in a ring of the last max(orders) + 1, so a
step costs O(texts x orders) however long the orders. Tokens learnt are counted as
seen text when `advance` is called, as CountReader.advance counts eval's chunks.
"""

import numpy as np

from .mixer import Experts, blend_counts
from .tables import _MUL, _INV, _context_id, _finalise, _powers
from .words import REACH


class LockstepReader:
    """n texts, each from `first` (BOS, or each text's own: an int64 (n,) array) at position 0; `distributions()`
    blends the counts for every text's next position, `append(tokens, counted)` learns them, `advance()` counts what
    was learnt as seen text."""

    def __init__(self, session, n_texts: int, first, longest_text: int, ahead=0):
        self.session, self.orders = session, np.asarray(session.model.orders)
        self.ring = int(self.orders.max()) + 1
        self.prefix = np.zeros((n_texts, self.ring), dtype=np.uint64)  # prefix sums at positions i % ring
        self.mul = _powers(int(_MUL), longest_text + self.ring + 1)
        self.inv = _powers(int(_INV), longest_text + self.ring + 1)
        self.position = 0
        self.ahead = np.broadcast_to(np.asarray(ahead, dtype=np.int64), (n_texts,))  # added to warmth's positions
        self.contexts = np.zeros((n_texts, len(self.orders)), dtype=np.uint64)
        self.unseen: list[tuple] = []  # (position, rows, their contexts, their tokens) not yet counted
        # the word model's: every text's last REACH tokens (the most its word contexts read), the last at the end
        self.words = session.model.words
        self.tail = np.zeros((n_texts, REACH), dtype=np.int64) if self.words is not None else None
        self.word_contexts = None
        self._learn(np.broadcast_to(np.asarray(first, dtype=np.int64), (n_texts,)).copy())

    def _learn(self, tokens: np.ndarray) -> None:
        i = self.position
        if self.tail is not None:
            self.tail[:, :-1] = self.tail[:, 1:]
            self.tail[:, -1] = tokens
        with np.errstate(over="ignore"):
            self.prefix[:, (i + 1) % self.ring] = self.prefix[:, i % self.ring] + \
                (tokens.astype(np.uint64) + np.uint64(1)) * self.mul[i]
        self.position += 1

    def context_ids(self) -> np.ndarray:
        """(n, orders): the context ids of every text's next position, as context_hashes gives them."""
        i, k = self.position, self.orders
        lo = np.maximum(i - k, 0)
        scale = np.where(i <= k, self.mul[np.maximum(k - i, 0)], self.inv[np.maximum(i - k, 0)])
        with np.errstate(over="ignore"):
            window = self.prefix[:, i % self.ring][:, None] - self.prefix[:, lo % self.ring]
            return _context_id(_finalise(window * scale), np.arange(len(k), dtype=np.uint64), len(k))

    def distributions(self) -> Experts:
        """The count experts for the next token of every text."""
        self.contexts = self.context_ids()
        words = None
        if self.tail is not None:  # the word contexts of the position after the text so far (its last REACH tokens)
            from .rowkernels import last_word_contexts  # here: numba's import, which eval's verbs need not pay

            known = self.tail[:, REACH - min(self.position, REACH) :]
            self.word_contexts = last_word_contexts(known, self.words.letter, self.words.folded)
            words = self.session.words(self.word_contexts)
        return blend_counts(self.session.model, self.session.recent.levels, self.contexts, words=words,
                            positions=self.position + self.ahead)  # every text's, from BOS

    def append(self, tokens: np.ndarray, counted: np.ndarray) -> None:
        """Learn the next token of every text (tokens (n,)); those of rows `counted` (bool (n,)) will count."""
        rows = np.flatnonzero(counted)
        words = None if self.word_contexts is None else self.word_contexts[rows]
        self.unseen.append((self.position, self.contexts[rows], tokens[rows], words))
        self._learn(tokens)

    def advance(self) -> None:
        """Count the tokens appended since the last advance as seen text."""
        if not self.unseen:
            return
        positions = np.concatenate([np.full(len(t), p) for p, _, t, _ in self.unseen])
        contexts = np.concatenate([c for _, c, _, _ in self.unseen])
        tokens = np.concatenate([t for _, _, t, _ in self.unseen]).astype(np.int64)
        words = None if self.word_contexts is None else np.concatenate([w for _, _, _, w in self.unseen])
        self.unseen = []
        if len(tokens):
            self.session.count(positions, contexts, tokens, words)
