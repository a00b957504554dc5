"""Predicates shared by the check rules and the jobs that still validate a hand-written job
config: one wording of each problem, wherever it is found. Imports only the IR (its vocabulary)."""

from __future__ import annotations

import math

from fleming_dsl.ir import BUCKETS

MAX_COUNT = 100_000_000  # paths per sample job: past this a job runs for days or never ends

# dataset format -> the row field a `split` selects on (`split = "health"` keeps MMLU-Pro rows
# whose `category` is "health", case-insensitive)
SPLIT_FIELDS = {"mmlu_pro": "category", "mmlu": "subject", "medmcqa": "subject_name",
                "medqa": "meta_info"}


def hops_problem(steps: int, hops_min: int, hops_max: int) -> tuple[str, str] | None:
    """(why, hint) when walks of hops_min..hops_max hops cannot follow a metapath of `steps`
    steps as written, or None. A metapath is walked as written, so the longest walk is the path's
    own length; with no steps (any relation) any length goes, and hops_min > hops_max is judged
    where the range is read."""
    if steps < 1 or hops_min > hops_max or hops_max <= steps:
        return None
    fit = f"{min(hops_min, steps)}..{steps}" if min(hops_min, steps) < steps else f"{steps}"
    return (f"'hops' goes up to {hops_max}, but the metapath has {steps} "
            f"step{'s' if steps != 1 else ''}: a metapath is walked as written",
            f"write hops = {fit}, or write a longer path out step by step")


def batch_problem(batch_size: int, grad_accum: int, generations: int, ranks: int = 1) -> str | None:
    """Why TRL's GRPO cannot use this batch shape, or None: the rollouts of one generation batch,
    over all ranks, must be whole groups of `generations`."""
    total = batch_size * grad_accum * ranks
    if total % generations:
        return (f"batch x grad_accum x ranks = {batch_size} x {grad_accum} x {ranks} = {total} "
                f"is not a multiple of generations ({generations})")
    return None


def smallest_batch(batch: int, grad_accum: int, ranks: int, generations: int) -> int:
    """The smallest per-device batch >= `batch` whose global generation batch fits whole groups."""
    # candidate * grad_accum * ranks is a multiple of generations exactly when candidate is a
    # multiple of `step`: a closed form, since counting up takes forever on a huge `generations`
    step = generations // math.gcd(grad_accum * ranks, generations)
    return -(-max(batch, 1) // step) * step


def plateau_metrics(reward_names: list[str] | tuple[str, ...]) -> list[str]:
    """What a GRPO stage logs per step, so what `until = plateau(<metric>)` may watch: the total
    reward, each reward term by its name, and the reward per difficulty bucket."""
    return ["reward", *reward_names, *(f"bucket/{b}" for b in BUCKETS)]


SFT_METRICS = ("loss",)  # what an SFT stage logs per logging step (lower is better)
