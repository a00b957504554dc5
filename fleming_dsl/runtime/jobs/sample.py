"""sample: metapath walks over the graph store, masked into question seeds (JSONL)."""

from __future__ import annotations

import time

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import SampleJob
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.vocabulary import hops_problem


def validate(cfg: SampleJob) -> None:
    """What `fleming check` judges in a spec, asked again of a config that may be hand-written:
    a walk longer than the metapath would walk past it (issue 11), so it is refused up front,
    before the graph is loaded or anything is written."""
    problem = hops_problem(len(cfg.relations), cfg.hops_min, cfg.hops_max)
    if problem is not None:
        raise JobError(f"job {cfg.job}: fields 'hops_min'/'hops_max' "
                       f"({cfg.hops_min}..{cfg.hops_max}): {problem[0]}; {problem[1]}")


def run(cfg: SampleJob, ctx: JobContext) -> None:
    from fleming_dsl.runtime.graph.sampler import WalkSpec, WalkStats, sample_rows

    validate(cfg)
    from fleming_dsl.runtime.graph.store import load_store

    with ctx.timed("load"):
        store = load_store(cfg.graph)
    spec = WalkSpec(start_type=cfg.start_type, relations=cfg.relations, node_types=cfg.node_types,
                    hops_min=cfg.hops_min, hops_max=cfg.hops_max, weight=cfg.weight,
                    alpha=cfg.alpha)
    stats = WalkStats()
    started = time.perf_counter()
    with ctx.timed("sample"):
        rows = sample_rows(store, spec, count=cfg.count, seed=cfg.seed, mask=cfg.mask,
                           distractors=cfg.distractors, near=cfg.near_distractors, stats=stats,
                           id_prefix=f"{cfg.job}-", where=f"{cfg.graph} (job {cfg.job})",
                           progress=True, clues=cfg.clues)
    elapsed = time.perf_counter() - started
    if not rows:
        raise JobError(f"{cfg.graph}: no path matched the metapath of {cfg.job} "
                       f"({stats.attempted} walks tried, {stats.stuck} stuck, "
                       f"{stats.short_of_distractors} short of distractors)")
    if cfg.readings:
        from fleming_dsl.runtime.teachers.verbalise import hop_readings

        words = {rel: (head, tail) for rel, head, tail in cfg.readings}
        for row in rows:
            found = hop_readings(row["relations"], words)
            if found is not None:
                row["readings"] = found
    with ctx.timed("write"):
        write_jsonl(cfg.output, rows)
    ctx.counts.update({
        "walks_attempted": stats.attempted,
        "walks_stuck": stats.stuck,
        "walks_duplicate": stats.duplicates,
        "walks_distinct": stats.kept,
        "short_of_distractors": stats.short_of_distractors,
        "rows": len(rows),
        "requested": cfg.count,
    })
    ctx.metrics["hops_per_s"] = round(stats.hops / elapsed, 1) if elapsed > 0 else None
