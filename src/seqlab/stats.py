"""Intervals for the figures seqlab prints: a bootstrap over blocks, paired differences, Wilson for rates.

Text and series are dependent inside a stretch (a document, a run of days), so resampling single bytes or
rows would give intervals far too narrow. Blocks are resampled instead: whole documents, or consecutive
stretches of a stated length, each carrying the sums inside it.

    low, high = bootstrap_ratio(bits_per_block, bytes_per_block)          # bits per byte, 95%
    d, low, high = paired_difference(bits_a, bits_b, bytes_per_block)      # A minus B on the same bytes
    low, high = wilson(successes=41, n=50)                                 # a rate
"""

from statistics import NormalDist

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


def block_sums(values: np.ndarray, block_len: int) -> np.ndarray:
    """Sums of consecutive stretches of `block_len` values (the last one may be shorter)."""
    values = np.asarray(values, dtype=np.float64)
    assert block_len >= 1
    starts = np.arange(0, len(values), block_len)
    return np.add.reduceat(values, starts) if len(values) else values


def _resampled_sums(columns: list[np.ndarray], n_boot: int, seed: int, chunk: int = 256):
    """For each bootstrap draw (blocks resampled with replacement), the sum of every column: (n_boot, k)."""
    n = len(columns[0])
    data = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)  # (n, k)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, data.shape[1]))
    for start in range(0, n_boot, chunk):  # bounded memory: chunk x n counts at a time
        m = min(chunk, n_boot - start)
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(m)])  # (m, n)
        out[start:start + m] = counts @ data
    return out


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ratio(numerators, denominators, n_boot: int = N_BOOT, level: float = LEVEL,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile interval of sum(numerators) / sum(denominators), resampling blocks (one entry each)."""
    numerators, denominators = np.asarray(numerators, float), np.asarray(denominators, float)
    assert len(numerators) == len(denominators) and len(numerators) > 0
    if len(numerators) == 1:  # one block: nothing to resample, no interval beyond the figure
        value = float(numerators[0] / denominators[0])
        return value, value
    sums = _resampled_sums([numerators, denominators], n_boot, seed)
    return _percentiles(sums[:, 0] / np.maximum(sums[:, 1], 1e-300), level)


def paired_difference(numerators_a, numerators_b, denominators, n_boot: int = N_BOOT, level: float = LEVEL,
                      seed: int = 0) -> tuple[float, float, float]:
    """(A - B, low, high) for two ratios over the same blocks (the same bytes scored by two models).

    The same resampled blocks enter both ratios, so what the blocks share (hard passages are hard for both)
    cancels, and the interval is that of the difference itself.
    """
    a, b, d = (np.asarray(x, float) for x in (numerators_a, numerators_b, denominators))
    assert len(a) == len(b) == len(d) and len(a) > 0
    point = float(a.sum() / d.sum() - b.sum() / d.sum())
    if len(a) == 1:
        return point, point, point
    sums = _resampled_sums([a - b, d], n_boot, seed)
    low, high = _percentiles(sums[:, 0] / np.maximum(sums[:, 1], 1e-300), level)
    return point, low, high


def moving_blocks(n: int, block_len: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one moving-block bootstrap draw over a time series of n rows (blocks wrap around)."""
    block_len = max(1, min(block_len, n))
    starts = rng.integers(0, n, -(-n // block_len))
    return ((starts[:, None] + np.arange(block_len)[None, :]) % n).ravel()[:n]


def bootstrap_statistic(statistic, n: int, block_len: int, n_boot: int = 1000, level: float = LEVEL,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile interval of statistic(indices) over moving-block draws of n time-ordered rows.

    Draws where the statistic is undefined (it returns nan, e.g. an AUC on rows of one class) are left out.
    A statistic that returns an array (several figures of the same rows) gives arrays (low, high), one
    interval per entry, all from the same draws.
    """
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(moving_blocks(n, block_len, rng)) for _ in range(n_boot)], dtype=float)
    if draws.ndim > 1:
        low, high = zip(*(_finite_percentiles(column, level) for column in draws.T))
        return np.array(low), np.array(high)
    return _finite_percentiles(draws, level)


def _finite_percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    return _percentiles(draws, level)


def wilson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a rate successes / n (sound at 0 and n successes, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
