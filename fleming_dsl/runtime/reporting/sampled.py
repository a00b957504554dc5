"""Metrics over several sampled answers per question: pass@k and maj@k.

- pass@k: the chance that at least one of k answers drawn from an item's n samples is right,
  by the unbiased estimator of Chen et al. 2021 (HumanEval), 1 - C(n - c, k) / C(n, k) for c right
  answers among n, averaged over items. With k = n it is "any sample right".
- maj@k: the item counts as right when the most frequent extracted answer among its first k
  samples is the right one (unextracted answers do not vote; a tie goes to the answer that
  appeared first, so the figure does not depend on dictionary order).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fleming_dsl.ir import SAMPLED_METRIC


def parse(metric: str) -> tuple[str, int] | None:
    """`pass@8` -> ("pass", 8); None for `accuracy` or anything else."""
    found = SAMPLED_METRIC.match(metric)
    return (found.group(1), int(found.group(2))) if found else None


def pass_at_k(n: int, correct: int, k: int) -> float:
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def majority_at_k(extracted: list[str | None], answer: str, k: int) -> bool:
    votes = Counter(a for a in extracted[:k] if a is not None)
    if not votes:
        return False
    first = {a: i for i, a in reversed(list(enumerate(extracted[:k])))}
    winner = max(votes, key=lambda a: (votes[a], -first[a]))
    return winner == answer


def by_item(rows: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One benchmark's prediction rows grouped per item, each item's samples in sample order."""
    items: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        items.setdefault(row["id"], []).append(row)
    return [sorted(samples, key=lambda r: r["sample"]) for samples in items.values()]


def sampled_metrics(rows: list[dict[str, Any]], metrics: Iterable[str]) -> dict[str, float]:
    """Each declared pass@k / maj@k of one benchmark's rows, averaged over its items."""
    items = by_item(rows)
    out: dict[str, float] = {}
    for metric in metrics:
        parsed = parse(metric)
        if parsed is None or not items:
            continue
        kind, k = parsed
        if kind == "pass":
            scores = [pass_at_k(len(s), sum(r["correct"] for r in s), k) for s in items]
        else:
            scores = [float(majority_at_k([r["extracted"] for r in s], s[0]["answer"], k)) for s in items]
        out[metric] = sum(scores) / len(scores)
    return out
