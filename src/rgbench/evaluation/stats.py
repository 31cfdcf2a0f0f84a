"""Standard errors and intervals: the one home of the pipeline's small statistics.

Every experiment that reports a mean with its standard error, or an accuracy with its
binomial uncertainty, uses these, so a number means the same thing in every table.
"""

from __future__ import annotations

import math

import numpy as np


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean of ``values`` and its standard error (sample sd / sqrt(n)); nan with one value."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_se needs at least one value")
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def binomial_se(p: float, n: int) -> float:
    """Wald standard error of a proportion ``p`` measured on ``n`` trials (nan for n = 0).

    Zero at p = 0 or 1: use :func:`wilson_interval` for an interval that stays honest there.
    """
    return float(math.sqrt(max(p * (1 - p), 0.0) / n)) if n > 0 else float("nan")


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion of ``successes`` out of ``n`` trials.

    Unlike the Wald interval it keeps a width at 0% and 100% (10 of 10 gives about
    0.72 to 1 at 95%), so one run's perfect score is not read as certainty.
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    from scipy import stats  # here: scipy.stats costs every importing job ~0.3 s

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample sd, low, high): the Student-t interval of the mean of >= 2 values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < 2:
        raise ValueError("t_interval needs at least two values")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * sd / math.sqrt(values.size)
    return mean, sd, mean - half, mean + half


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean(a) - mean(b), its standard error, low, high) with Welch's t-interval (two
    unpaired groups of >= 2 values each; a zero SE gives a zero-width interval)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if se == 0:
        return diff, 0.0, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return diff, se, diff - half, diff + half


def log_linear_r2(values: list[float | None] | np.ndarray) -> float | None:
    """How well ``values`` decay exponentially along their index: the R^2 of a least-squares
    line through log(value) against index, signed by the line's slope (negative for a
    profile that grows). Non-positive or missing values are left out (a log needs them
    positive); None with fewer than three left."""
    y = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    keep = np.isfinite(y) & (y > 0)
    if keep.sum() < 3:
        return None
    x, logs = np.flatnonzero(keep).astype(np.float64), np.log(y[keep])
    slope, intercept = np.polyfit(x, logs, 1)
    residual = float(((logs - (slope * x + intercept)) ** 2).sum())
    total = float(((logs - logs.mean()) ** 2).sum())
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return float(math.copysign(r2, -slope)) if slope != 0 else 0.0
