"""Paired tests between consecutive stages of the ablation, on the same questions.

Two models that answered the same items differ only where one is right and the other wrong, so
the test looks at those discordant items: `gained` (wrong before, right after) and `lost` (right
before, wrong after). Unpaired intervals (the Wilson ones of the accuracy table) ignore the
pairing and need a far larger gap to tell two stages apart.

- Exact McNemar: under "no difference" each discordant item is a fair coin, so the two-sided
  p-value is the exact binomial test of `gained` successes in `gained + lost` at 1/2 (scipy's
  `binomtest`); no discordant item gives p = 1.
- Paired bootstrap: the items resampled with replacement (seeded, so the same run gives the same
  interval), the difference of mean per-item accuracy re-computed each time; its 2.5% and 97.5%
  quantiles are the 95% interval. It says how large the difference is; with a handful of
  discordant items it is too narrow (a real run's 0 gained and 4 lost gave [-0.058, -0.007]
  beside McNemar's p = 0.125), so the p-value is the test.

With several samples per item, an item's accuracy is the mean over its samples; it counts as
right in McNemar's table when more than half of its samples are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

RESAMPLES = 5000  # bootstrap resamples: the interval's ends move by < 0.005 between seeds at n ~ 150
CONFIDENCE = 0.95


def item_accuracy(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{benchmark: {item id: mean correctness over its samples}} from prediction rows."""
    seen: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in rows:
        seen[(row["benchmark"], str(row["id"]))].append(bool(row["correct"]))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (bench, item), marks in seen.items():
        out[bench][item] = sum(marks) / len(marks)
    return dict(out)


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    from scipy.stats import binomtest

    if gained + lost == 0:
        return 1.0
    return float(binomtest(gained, gained + lost, 0.5).pvalue)


def bootstrap_interval(differences: list[float], seed: int, resamples: int = RESAMPLES,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean of per-item differences over seeded resamples."""
    import numpy as np

    if not differences:
        return 0.0, 0.0
    values = np.asarray(differences, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def compare(before: dict[str, float], after: dict[str, float], seed: int) -> dict[str, Any]:
    """One benchmark, one stage against the one before it, on the items both answered."""
    shared = sorted(before.keys() & after.keys())
    gained = sum(before[i] <= 0.5 < after[i] for i in shared)
    lost = sum(after[i] <= 0.5 < before[i] for i in shared)
    differences = [after[i] - before[i] for i in shared]
    lo, hi = bootstrap_interval(differences, seed)
    return {
        "n": len(shared), "gained": gained, "lost": lost,
        "difference": round(sum(differences) / len(shared), 6) if shared else 0.0,
        "difference_ci95": [round(lo, 6), round(hi, 6)],
        # six significant digits: 49 gained and none lost is p = 3.6e-15, not 0
        "p_value_mcnemar": float(f"{mcnemar_exact(gained, lost):.6g}"),
    }


def paired_tests(per_target: dict[str, dict[str, dict[str, float]]], seed: int,
                 anchor: str | None = None) -> list[dict[str, Any]]:
    """Each benchmark, each evaluated target against the one before it (the spec's evaluation
    order: base -> cold start -> rl1 -> rl2), then each target after `anchor` (the cold start)
    that does not directly follow it against the anchor: what RL as a whole changed. Targets
    without predictions are skipped."""
    targets = list(per_target)
    pairs = list(zip(targets, targets[1:]))
    if anchor in targets:
        pairs += [(anchor, t) for t in targets[targets.index(anchor) + 2:]]
    rows = []
    for before, after in pairs:
        for bench in per_target[after]:
            if bench in per_target[before]:
                rows.append({"benchmark": bench, "before": before, "after": after,
                             **compare(per_target[before][bench], per_target[after][bench], seed)})
    return rows
