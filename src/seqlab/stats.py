"""Intervals for the figures seqlab prints: a bootstrap over blocks, paired differences, Wilson for rates.

Text and series are dependent inside a stretch (a document, a run of days), so resampling single bytes or
rows would give intervals far too narrow. Blocks are resampled instead: whole documents, or consecutive
stretches of a stated length, each carrying the sums inside it.

    low, high = bootstrap_ratio(bits_per_block, bytes_per_block)          # bits per byte, 95%
    d, low, high = paired_difference(bits_a, bits_b, bytes_per_block)      # A minus B on the same bytes
    low, high = wilson(successes=41, n=50)                                 # a rate
    ratio, low, high = ratio_interval(seconds_b, seconds_a)               # A's speed-up, paired rounds

Two uncertainties are kept apart where both exist: the bootstrap interval (which bytes happened to be held
out) and the spread between seeds (`seed_spread`: which run of training one happened to get).
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


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher expansion
    (Abramowitz & Stegun 26.7.5; within 4e-3 of the exact value at 3 degrees of freedom, 1e-3 from 4 up)."""
    assert 0 < p < 1 and df >= 1
    if df == 1:
        return float(np.tan(np.pi * (p - 0.5)))
    if df == 2:
        return float((2 * p - 1) / np.sqrt(2 * p * (1 - p)))
    z, n = NormalDist().inv_cdf(p), float(df)
    return (z + (z**3 + z) / (4 * n) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * n**4))


def expanded_level(level: float, n_blocks: int) -> float:
    """The percentile level that makes a bootstrap over n blocks as wide as a t interval would be.

    The plain percentile bootstrap of a mean is too narrow on few blocks: it divides by n, not n - 1, and uses
    normal, not t, tails (93% on 60 documents, 87% on 10, in bench/interval_coverage.py). Hesterberg's
    expanded percentile interval ("What teachers should know about the bootstrap", 2015) widens the level
    to 2 Phi(sqrt(n / (n - 1)) t(n - 1)) - 1.
    """
    if n_blocks < 2:
        return level
    t = t_quantile((1 + level) / 2, n_blocks - 1) * np.sqrt(n_blocks / (n_blocks - 1))
    return min(2 * NormalDist().cdf(t) - 1, 1 - 1e-9)


def bootstrap_ratio(numerators, denominators, n_boot: int = N_BOOT, level: float = LEVEL,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile interval of sum(numerators) / sum(denominators), resampling blocks (one entry each).

    The level is expanded for the number of blocks (expanded_level), so few blocks still cover as promised.
    """
    numerators, denominators = np.asarray(numerators, float), np.asarray(denominators, float)
    assert len(numerators) == len(denominators) and len(numerators) > 0
    if len(numerators) == 1:  # one block: nothing to resample, no interval beyond the figure
        value = float(numerators[0] / denominators[0])
        return value, value
    sums = _resampled_sums([numerators, denominators], n_boot, seed)
    return _percentiles(sums[:, 0] / np.maximum(sums[:, 1], 1e-300), expanded_level(level, len(numerators)))


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
    low, high = _percentiles(sums[:, 0] / np.maximum(sums[:, 1], 1e-300), expanded_level(level, len(a)))
    return point, low, high


def verdict(low: float, high: float) -> str:
    """What an interval of A minus B (lower is better, as bits are) says: "better", "worse" or "tied"."""
    return "better" if high < 0 else "worse" if low > 0 else "tied"


def spread_evenly(values, lengths) -> np.ndarray:
    """Each value spread evenly over its `lengths` units: a token's bits over its bytes, one entry per unit.

    A value of zero length (a token without bytes) joins the next unit, or the last one at the end.
    """
    values, lengths = np.asarray(values, np.float64), np.asarray(lengths, np.int64)
    assert len(values) == len(lengths) and (lengths >= 0).all()
    out = np.repeat(values / np.maximum(lengths, 1), lengths)
    empty = np.flatnonzero(lengths == 0)
    if len(empty) and len(out):
        np.add.at(out, np.minimum(np.cumsum(lengths)[empty], len(out) - 1), values[empty])
    return out


def ratio_interval(numerators, denominators, n_boot: int = N_BOOT, level: float = LEVEL,
                   seed: int = 0) -> tuple[float, float, float]:
    """(median(a) / median(b), low, high) over paired repeats: e.g. the seconds of B and A in alternating rounds
    give A's speed-up over B. The rounds are resampled as pairs, so load that falls on both alike cancels, and
    medians keep one round slowed by another process from moving the figure."""
    a, b = np.asarray(numerators, float), np.asarray(denominators, float)
    assert len(a) == len(b) and len(a) > 0
    point = float(np.median(a) / np.median(b))
    if len(a) == 1:
        return point, point, point
    low, high = bootstrap_statistic(lambda i: np.median(a[i]) / np.median(b[i]), len(a), 1, n_boot, level, seed)
    return point, low, high


def seed_spread(values) -> dict:
    """Mean, sample standard deviation, min and max of one figure over runs that differ only in their seed.

    The spread of training itself (initial weights, batch order), not of the held-out sample.
    """
    v = np.asarray(values, np.float64)
    assert len(v) > 0
    return {"seeds": len(v), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


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
