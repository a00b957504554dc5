"""The headline figures of a run (`summary.json`), computed from the collected records.

    {"experiment", "cold_start_target", "format_rate_after_cold_start",
     "format_rate": {target: rate}, "accuracy_mean": {target: mean},
     "accuracy": {target: {benchmark: acc}}, "ci95": {target: {benchmark: [lo, hi]}},
     "funnel": [{"stage", "count", "removed"}], "filters": {job: {"input", "kept", "review", "removed",
     "buckets", "pass_rate_by_bucket"}},
     "sft": {stage: {"steps", "final_loss", "stopped_by", "loss_curve": [[step, loss]]}},
     "distill": {job: {"protocol", "input", "kept", "solved": {round: n, "never": n},
                       "strategies": {name: n}, "rewrites": {how: n}, "searches",
                       "words_before", "words_after"}},
     "grpo": {stage: {"steps", "final_step", "final_reward", "max_reward", "final_rewards",
                      "final_buckets", "final_mined_rewards": {"failed", "solved"},
                      "final_pool_pass_rate", "rounds", "stopped_by"}},
     "mining": {stage: [{"round", "pool_pass_rate", "known", "estimated", "from_rollouts",
                         "failed", "solved", "previous_mined_failed", "previous_remeasured",
                         "previous_flipped_to_solved", "closing"}]},
     "paired": [{"benchmark", "before", "after", "n", "gained", "lost", "difference",
                 "difference_ci95", "p_value_mcnemar"}]  (reporting/paired.py),
     "answers": {target: [{"benchmark", "id", "correct", "question", "answer", "extracted",
                           "gold"}]}  (reporting/answers.py),
     "timings_s": {job: seconds}}
Stages are keyed by their name (`rl1`), not their job's (`grpo_rl1`).
"""

from __future__ import annotations

from typing import Any

from fleming_dsl.ir import BUCKETS, FILTER_STEPS
from fleming_dsl.runtime.reporting.answers import pick_answers
from fleming_dsl.runtime.reporting.collect import (
    JobMeta,
    ReportInputs,
    StageCurve,
    is_number,
    stage_name,
)
from fleming_dsl.runtime.reporting.paired import item_accuracy, paired_tests

# The data funnel: which job kind produces each stage's items, in recipe order.
FUNNEL_STAGES = (("sampled", "sample"), ("synthesized", "synthesize"), ("distilled", "distill"),
                 ("filtered", "filter"))
# Count keys a data job may use for what it wrote, most specific first.
_OUTPUT_KEYS = ("kept", "output", "written", "samples", "rows", "paths", "count")  # sample: rows
# Filter steps in pipeline order (meta JSON is written with sorted keys, so order is lost there).


def output_count(meta: JobMeta) -> int | None:
    for key in _OUTPUT_KEYS:
        value = meta.counts.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def removed_count(meta: JobMeta) -> int:
    """Items a job dropped (read minus written); 0 for a job that writes more than it reads
    (synthesize writes `variants` items per path)."""
    read, wrote = meta.counts.get("input"), output_count(meta)
    if not isinstance(read, int) or isinstance(read, bool) or wrote is None:
        return 0
    return max(0, read - wrote)


def funnel(metas: tuple[JobMeta, ...]) -> list[dict[str, Any]]:
    """Items at each data stage and how many its jobs removed, summed over that stage's jobs;
    stages without jobs left out."""
    rows = []
    for stage, kind in FUNNEL_STAGES:
        jobs = [meta for meta in metas if meta.kind == kind and output_count(meta) is not None]
        if jobs:
            rows.append({"stage": stage, "count": sum(output_count(m) or 0 for m in jobs),
                         "removed": sum(removed_count(m) for m in jobs)})
    return rows


def ordered(names: list[str] | tuple[str, ...], order: tuple[str, ...]) -> list[str]:
    """Known names in `order`, then the rest alphabetically."""
    known = [name for name in order if name in names]
    return known + sorted(set(names) - set(order))


def filter_summary(meta: JobMeta) -> dict[str, Any]:
    removed = meta.counts.get("removed") or {}
    buckets = meta.counts.get("buckets") or {}
    return {
        "input": meta.counts.get("input"), "kept": meta.counts.get("kept"),
        "review": meta.counts.get("review", 0),
        "removed": {step: removed[step] for step in ordered(list(removed), FILTER_STEPS)},
        "buckets": {bucket: buckets[bucket] for bucket in ordered(list(buckets), BUCKETS)},
        "pass_rate_by_bucket": dict(meta.metrics.get("pass_rate_by_bucket") or {}),
        "difficulty_method": meta.metrics.get("difficulty_method"),
    }


def distill_summary(meta: JobMeta) -> dict[str, Any]:
    """One distill job: the protocol that ran, items solved per round and never, the
    strategies failed chains continued with, and the joined searches' length in words before
    (all attempts) and after the rewrite."""
    rounds = dict(meta.counts.get("rounds") or {})
    never = rounds.pop("unsolved", 0)
    chains = meta.counts.get("chains") or {}
    return {
        "protocol": meta.metrics.get("protocol", "rationale"),
        "input": meta.counts.get("input"), "kept": meta.counts.get("output"),
        "solved": {**dict(sorted(rounds.items(), key=lambda kv: int(kv[0]))), "never": never},
        "strategies": dict(meta.counts.get("strategies") or {}),
        "rewrites": dict(chains.get("rewrites") or {}),
        "searches": chains.get("searches", 0),
        "words_before": chains.get("words_before", 0), "words_after": chains.get("words_after", 0),
    }


def _last(curve: StageCurve, key: str) -> float | None:
    _, values = curve.series(key)
    return values[-1] if values else None


def term_name(key: str) -> str:
    """`rewards/correct` or TRL's `rewards/correct/mean` -> `correct`; `bucket/easy` -> `easy`."""
    name = key.split("/", 1)[1]
    return name.removesuffix("/mean")


def stop_reason(meta: JobMeta | None) -> str | None:
    """How a training job ended, from its meta: "plateau at step N", "max_steps", "schedule"."""
    if meta is None or not isinstance(meta.metrics.get("stopped_by"), str):
        return None
    reason, steps = meta.metrics["stopped_by"], meta.metrics.get("steps", meta.counts.get("steps"))
    return f"{reason} at step {steps}" if reason == "plateau" and isinstance(steps, int) else reason


def sft_summary(meta: JobMeta) -> dict[str, Any]:
    """An SFT stage's logged loss curve ([[step, loss], ...]) and how it ended."""
    curve = [(int(step), float(loss)) for step, loss in meta.metrics.get("loss_curve", [])
             if isinstance(step, int) and is_number(loss)]
    return {
        "steps": meta.metrics.get("steps"),
        "final_loss": curve[-1][1] if curve else meta.metrics.get("final_loss"),
        "stopped_by": stop_reason(meta),
        "loss_curve": curve,
    }


def grpo_summary(curve: StageCurve, meta: JobMeta | None = None) -> dict[str, Any]:
    steps, rewards = curve.series("reward")
    rounds = [row["round"] for row in curve.rows if isinstance(row.get("round"), int)]
    return {
        "steps": len(curve.rows),
        "final_step": curve.rows[-1]["step"] if curve.rows else None,
        "final_reward": rewards[-1] if rewards else None,
        "max_reward": max(rewards) if rewards else None,
        "final_rewards": {term_name(k): _last(curve, k) for k in curve.keys("rewards/")},
        "final_buckets": {term_name(k): _last(curve, k) for k in curve.keys("bucket/")},
        "final_mined_rewards": {term_name(k): _last(curve, k) for k in curve.keys("mined/")},
        "final_pool_pass_rate": _last(curve, "pool_pass_rate"),
        "rounds": max(rounds) if rounds else None,
        "stopped_by": stop_reason(meta),
    }


def mining_rounds(meta: JobMeta) -> list[dict[str, Any]]:
    """A mined stage's rounds as the miner recorded them (`miner.Miner`), flattened to one row
    each: the pool's estimated pass rate, what was mined, and what became of the previous
    round's mined failures by this estimate; the closing row is after the last round."""
    rows = []
    for entry in meta.metrics.get("rounds") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("round"), int):
            continue
        previous = entry.get("previous") or {}
        rows.append({
            "round": entry["round"], "pool_pass_rate": entry.get("pool_pass_rate"),
            "known": entry.get("known"), "estimated": entry.get("estimated"),
            "from_rollouts": entry.get("from_rollouts"), "failed": entry.get("failed"),
            "solved": entry.get("solved"),
            "previous_mined_failed": previous.get("mined_failed"),
            "previous_remeasured": previous.get("remeasured"),
            "previous_flipped_to_solved": previous.get("flipped_to_solved"),
            "closing": bool(entry.get("closing")),
        })
    return rows


def cold_start_target(inputs: ReportInputs) -> str | None:
    """The first evaluated target that is an SFT stage (planner names it `sft_<target>`)."""
    sft_jobs = {meta.job for meta in inputs.metas if meta.kind == "sft"}
    for result in inputs.evals:
        if result.target in sft_jobs or f"sft_{result.target}" in sft_jobs:
            return result.target
    return None


def summarise(experiment: str, inputs: ReportInputs, seed: int = 0) -> dict[str, Any]:
    cold = cold_start_target(inputs)
    format_rate = {r.target: r.format_rate for r in inputs.evals}
    grpo_metas = {stage_name(m.job, m.kind): m for m in inputs.metas if m.kind == "grpo"}
    predicted = {r.target: inputs.predictions[r.target] for r in inputs.evals
                 if r.target in inputs.predictions}
    return {
        "experiment": experiment,
        "cold_start_target": cold,
        "format_rate_after_cold_start": format_rate.get(cold) if cold else None,
        "format_rate": format_rate,
        "accuracy_mean": {r.target: r.accuracy_mean for r in inputs.evals},
        "accuracy": {r.target: {name: b["accuracy"] for name, b in r.benchmarks.items()}
                     for r in inputs.evals},
        "ci95": {r.target: {name: b["ci95"] for name, b in r.benchmarks.items()}
                 for r in inputs.evals},
        "funnel": funnel(inputs.metas),
        "filters": {m.job: filter_summary(m) for m in inputs.metas if m.kind == "filter"},
        "distill": {m.job: distill_summary(m) for m in inputs.metas if m.kind == "distill"},
        "sft": {stage_name(m.job, m.kind): sft_summary(m) for m in inputs.metas if m.kind == "sft"},
        "grpo": {curve.stage: grpo_summary(curve, grpo_metas.get(curve.stage))
                 for curve in inputs.curves},
        "mining": {stage: rounds for stage, meta in grpo_metas.items()
                   if (rounds := mining_rounds(meta))},
        "paired": paired_tests({target: item_accuracy(rows) for target, rows in predicted.items()},
                               seed, anchor=cold),
        "answers": {target: pick_answers(rows) for target, rows in predicted.items()},
        "timings_s": {m.job: m.timings["total_s"] for m in inputs.metas
                      if is_number(m.timings.get("total_s"))},
    }
