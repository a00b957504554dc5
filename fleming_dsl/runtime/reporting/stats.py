"""Confidence intervals for accuracies on benchmarks of a few hundred to a few thousand items.

Wilson's score interval rather than the normal (Wald) one: it stays inside [0, 1] and keeps its
coverage at the accuracies small models reach (near 0) and at small n (the embedded default's
50-item sets), where Wald collapses to a zero-width interval at 0 or 1.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile: 1.959964 for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(p_hat: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion `p_hat` observed over `n` trials.

    `p_hat` need not be k/n for an integer k: with several samples per item, evaluation passes the
    mean per-item accuracy and n = items, treating samples of one item as one trial (they are
    correlated, so counting them as separate trials would overstate the confidence).
    n == 0 gives the vacuous interval (0, 1).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= p_hat <= 1:
        raise ValueError(f"p_hat must be in [0, 1], got {p_hat}")
    if n == 0:
        return 0.0, 1.0
    z = z_value(confidence)
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p_hat + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p_hat * (1 - p_hat) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: float, trials: int) -> float:
    """successes / trials, 0.0 when there were no trials (an empty benchmark scores nothing)."""
    return successes / trials if trials else 0.0
