"""A numba kernel for compress's lockstep rows (lockstep.py): the word contexts of every row's next position.

numpy computed words.word_contexts over each row's last REACH tokens (some thirty calls on (rows, 58) arrays) to
keep the last position's; this computes that position's alone, the very same integers, so the floats mixed from
them do not change: a file coded before it decodes with it (tests/test_rowkernels.py holds it to word_contexts).

Imported where compress needs it only: importing numba costs every verb's start ~0.3 s. The GIL is released
(nogil), as in kernels.py.
"""

import numpy as np
from numba import njit

# tables.py's and words.py's constants, written out: numba's cache is keyed on this file alone, so a constant
# imported from another file would stay frozen in the cached code after a change there (tests/test_rowkernels.py
# holds them equal)
_MUL = np.uint64(0x9E3779B97F4A7C15)
_PREVIOUS = np.uint64(0xD6E8FEB86659FD93)
WORD_TOKENS, SEPARATOR_TOKENS, WORD_ORDERS = 24, 8, 2

_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_F1, _F2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)
_WORD_SHIFT = np.uint64(16 + 1)  # tables._context_id for WORD_ORDERS = 2 orders: one bit of order index on top
_WORD_TAG = np.uint64(1) << np.uint64(48 - 1)
assert WORD_ORDERS == 2


@njit(cache=True, nogil=True)
def _finalise(z):
    """tables._finalise (splitmix64's finaliser) of one id."""
    z ^= z >> _S30
    z *= _F1
    z ^= z >> _S27
    z *= _F2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def _window_hash(tokens, row, folded, start, stop):
    """words._window of the folded tokens start..stop-1 of one row: sum of (folded + 1) * MUL**(m - start)."""
    h, power = np.uint64(0), _ONE
    for m in range(start, stop):
        h += (np.uint64(folded[tokens[row, m]]) + _ONE) * power
        power *= _MUL
    return h


@njit(cache=True, nogil=True)
def last_word_contexts(tokens, letter, folded):
    """(n, WORD_ORDERS) uint64: words.word_contexts' ids of the position after each row of tokens (n, w) (each row a
    text from its start), i.e. word_contexts(np.pad(tokens, ((0, 0), (0, 1))))[:, -1], without the other positions."""
    n, i = tokens.shape
    out = np.empty((n, 2), dtype=np.uint64)
    for row in range(n):
        before = i - 1  # the last non-letter before position i
        while before >= 0 and letter[tokens[row, before]]:
            before -= 1
        start = max(before + 1, i - WORD_TOKENS)
        end = before  # the previous word's last letter: the last letter at or before `before`
        while end >= 0 and not letter[tokens[row, end]]:
            end -= 1
        has_previous = end >= 0 and before - end <= SEPARATOR_TOKENS and before >= i - 1 - WORD_TOKENS
        current = _window_hash(tokens, row, folded, start, i)
        previous = np.uint64(0)
        if has_previous:
            other = end  # the last non-letter at or before `end`
            while other >= 0 and letter[tokens[row, other]]:
                other -= 1
            previous = _window_hash(tokens, row, folded, max(other + 1, end + 1 - WORD_TOKENS), end + 1)
        out[row, 0] = _finalise(current) >> _WORD_SHIFT
        out[row, 1] = (_finalise(current + previous * _PREVIOUS) >> _WORD_SHIFT) | _WORD_TAG
    return out
