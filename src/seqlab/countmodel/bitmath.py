"""The bitwise model's arithmetic (numba): stretch and squash by tables, the APMs' interpolation. bitkernel.py's
nodes use these; bitkernel.py holds this file's SHA-256 (numba's cached code there holds these functions: a change
here must change it, as for bitcontexts.py). This file imports nothing of seqlab.
"""

import numpy as np
from numba import njit

APM_CELLS = 33
STRETCH_CLAMP = 8.0
STRETCH = np.clip(np.log((np.arange(4096) + 0.5) / (4096 - np.arange(4096) - 0.5)), -STRETCH_CLAMP, STRETCH_CLAMP)
SQUASH_STEP = 256  # SQUASH's points per unit of x: its interpolation is within 2e-7 of the logistic
SQUASH = 1.0 / (1.0 + np.exp(-np.linspace(-STRETCH_CLAMP, STRETCH_CLAMP, int(2 * STRETCH_CLAMP) * SQUASH_STEP + 1)))


@njit(cache=True, _nrt=False)
def _stretch(p):
    """ln(p / (1 - p)) for p in [0, 1], by STRETCH's table (paq's: 4096 cells, clamped to +-8)."""
    return STRETCH[min(max(int(p * 4096.0), 0), 4095)]


@njit(cache=True, _nrt=False)
def _squash(x):
    """1 / (1 + e^-x) for x in [-8, 8] (its callers clamp it there), SQUASH's table interpolated: libm's exp took
    six a node learnt."""
    pos = min(max((x + STRETCH_CLAMP) * SQUASH_STEP, 0.0), len(SQUASH) - 1.0)
    i = min(int(pos), len(SQUASH) - 2)
    return SQUASH[i] + (SQUASH[i + 1] - SQUASH[i]) * (pos - i)


@njit(cache=True, _nrt=False)
def _apm_cell(st):
    """An APM row's cell below st (a stretched probability in [-8, 8]) and st's share of the way to the next."""
    pos = (st + STRETCH_CLAMP) * (APM_CELLS - 1) / (2 * STRETCH_CLAMP)
    lo = min(int(pos), APM_CELLS - 2)
    return lo, pos - lo


@njit(cache=True, _nrt=False)
def _apm(table, row, st):
    lo, f = _apm_cell(st)
    return table[row, lo] * (1 - f) + table[row, lo + 1] * f


@njit(cache=True, _nrt=False)
def _apm_learn(table, row, st, y, rate):
    lo, f = _apm_cell(st)
    table[row, lo] += (y - table[row, lo]) * rate * (1 - f)
    table[row, lo + 1] += (y - table[row, lo + 1]) * rate * f
