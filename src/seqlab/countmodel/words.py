"""The word model's contexts: the current partial word, and the previous word with it, case-folded.

A word is a run of letter tokens (every byte a letter, or a byte of a UTF-8 character); a token with any other
byte ends it. At position i (the context of token i) the current word is the letters just before i (at most
WORD_TOKENS of them, empty after a space), the previous word the run before it, if the separator between them
is at most SEPARATOR_TOKENS long and the current word is not cut short. Tokens are case-folded (a token whose
lowered bytes are another token's counts as that one). Each context is a 48-bit id as tables.py's, tagged 0
(the current word) or 1 (the previous and the current), so a position's id depends on its last REACH tokens at
most: a history is counted a shard at a time, and compress's lockstep reader needs only the last REACH tokens.
"""

import numpy as np

from .tables import _INV, _MUL, _context_id, _finalise, _powers

WORD_TOKENS, SEPARATOR_TOKENS = 24, 8
REACH = 2 * WORD_TOKENS + SEPARATOR_TOKENS + 1  # the most tokens before a position that its word contexts read
WORD_ORDERS = 2  # the current word; the previous and the current word
_PREVIOUS = np.uint64(0xD6E8FEB86659FD93)  # mixes the previous word's hash into the pair's


def word_classes(token_bytes: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(letter (V,) bool: the token is a run of letters, folded (V,) int64: the token its lowered bytes are)."""
    ids = {b: i for i, b in enumerate(token_bytes)}
    letter = np.array([bool(b) and all(c >= 0x80 or chr(c).isalpha() for c in b) for b in token_bytes])
    folded = np.array([ids.get(b.lower(), i) for i, b in enumerate(token_bytes)], dtype=np.int64)
    return letter, folded


def word_contexts(tokens: np.ndarray, letter: np.ndarray, folded: np.ndarray) -> np.ndarray:
    """(..., n, WORD_ORDERS) context ids of every position of tokens (..., n): each row read from its start."""
    t = np.asarray(tokens, dtype=np.int64)
    n = t.shape[-1]
    idx = np.broadcast_to(np.arange(n), t.shape)
    is_letter = letter[t]
    last_other = np.maximum.accumulate(np.where(is_letter, -1, idx), axis=-1)  # the last non-letter at or before j
    last_letter = np.maximum.accumulate(np.where(is_letter, idx, -1), axis=-1)
    # position i's: the last non-letter before i
    before = np.concatenate([np.full(t.shape[:-1] + (1,), -1), last_other[..., :-1]], axis=-1)
    i = np.arange(n)
    start = np.maximum(before + 1, i - WORD_TOKENS)  # the current word: tokens start..i-1
    end = np.where(before >= 0, np.take_along_axis(last_letter, np.maximum(before, 0), -1), -1)  # the previous's last
    has_previous = (end >= 0) & (before - end <= SEPARATOR_TOKENS) & (before >= i - 1 - WORD_TOKENS)
    end = np.where(has_previous, end, 0)
    previous_start = np.maximum(np.take_along_axis(last_other, end, -1) + 1, end + 1 - WORD_TOKENS)
    prefix, inv = _folded_prefix(folded[t])
    with np.errstate(over="ignore"):
        current = _window(prefix, inv, start, i)
        previous = np.where(has_previous, _window(prefix, inv, previous_start, end + 1), np.uint64(0))
        pair = current + previous * _PREVIOUS
        ids = np.stack([_finalise(current), _finalise(pair)], axis=-1)
    return _context_id(ids, np.arange(WORD_ORDERS, dtype=np.uint64), WORD_ORDERS)


def _folded_prefix(folded: np.ndarray):
    """(prefix (..., n + 1): sums of (token + 1) * MUL**m over m < j, inverse powers of MUL)."""
    n = folded.shape[-1]
    mul, inv = _powers(int(_MUL), n), _powers(int(_INV), n)
    prefix = np.zeros(folded.shape[:-1] + (n + 1,), dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum((folded.astype(np.uint64) + np.uint64(1)) * mul[:n], axis=-1, out=prefix[..., 1:])
    return prefix, inv


def _window(prefix: np.ndarray, inv: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The hash of the tokens start..stop-1 (empty: 0), the same wherever the window lies."""
    stop = np.broadcast_to(stop, start.shape)
    with np.errstate(over="ignore"):
        return (np.take_along_axis(prefix, stop, -1) - np.take_along_axis(prefix, start, -1)) * inv[start]
