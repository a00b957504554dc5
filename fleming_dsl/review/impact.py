"""What a spec edit costs: which jobs change, which are invalidated downstream, and GPU-hours.

Like `terraform plan`: compare the job configs two specs compile to (by content hash), mark
every job whose config changed or is new, then every job downstream of one of those in the job
DAG (built from declared inputs and outputs), and add up their GPU-hours (`review/cost.py`:
measured by the spec's last run where it recorded the job, else declared). A job whose config is
the same still re-runs when a project file it reads (a prompt template, a rubric, a dataset, a
model folder: the planner's inputs, which the workflow declares and the job records) differs
(`inputs_changed`), as Snakemake and `fleming status` would see it. Pure apart from `jobs_of`,
which reads the planner's `Plan` and the run's job records, and `inputs_changed`, which reads
files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx

from fleming_dsl.hashing import sha256_path

if TYPE_CHECKING:
    from fleming_dsl.plan.jobconfig import JobBase
    from fleming_dsl.plan.planner import Plan

Reason = Literal["added", "changed", "invalidated", "removed", "recut"]


@dataclass(frozen=True)
class JobView:
    """What the impact plan needs of one compiled job."""

    name: str
    kind: str
    config_sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    gpu_hours: float = 0.0
    source: str = ""  # file:line of the declaration it came from
    shard_of: str | None = None  # a shard job: the gather that merges it


@dataclass(frozen=True)
class JobImpact:
    name: str
    kind: str
    reason: Reason
    gpu_hours: float
    after: tuple[str, ...] = ()  # invalidated: the changed upstream jobs it depends on
    source: str = ""
    inputs: tuple[str, ...] = ()  # changed with the same config: the project files that differ


@dataclass(frozen=True)
class Impact:
    jobs: tuple[JobImpact, ...]
    unchanged: int

    @property
    def rerun(self) -> tuple[JobImpact, ...]:
        return tuple(j for j in self.jobs if j.reason not in ("removed", "recut"))

    @property
    def gpu_hours(self) -> float:
        return round(sum(j.gpu_hours for j in self.rerun), 3)

    def count(self, reason: Reason) -> int:
        return sum(1 for j in self.jobs if j.reason == reason)


def gpu_hours(nodes: int, gpus: int, time_min: float) -> float:
    """GPU-hours of a job: nodes x GPUs per node x wall time."""
    return round(nodes * gpus * time_min / 60.0, 3)


def config_sha256(cfg: JobBase) -> str:
    """A content hash of a job config: equal configs, equal hashes, whatever the key order."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def jobs_of(plan: Plan) -> list[JobView]:
    """The planner's jobs as the impact plan sees them. A gather is compared by its task (the
    unsharded job's config), as the workflow re-runs it: a new cut of the same data is no change.
    GPU-hours are `fleming cost`'s: measured where the spec's last run recorded the job, else
    from the declared time limit."""
    from fleming_dsl.review import cost

    hours = {e.job: e.gpu_hours for e in cost.estimate(plan, (), own=cost.own_records(plan))}
    return [JobView(name=job.name, kind=job.kind, config_sha256=config_sha256(job.data_config),
                    inputs=job.inputs, outputs=tuple(o.path for o in job.outputs),
                    gpu_hours=hours[job.name], source=job.source,
                    shard_of=job.config.shard.of if job.is_shard else None)  # type: ignore[attr-defined]
            for job in plan.jobs]


def inputs_changed(jobs: Iterable[JobView], old_root: Path, new_root: Path) -> dict[str, tuple[str, ...]]:
    """The jobs that read a project file (no job writes it) whose content differs between the
    project at `old_root` and at `new_root`: a file that appeared, went, or hashes differently.
    The same file on both sides (a link back into the working tree) is not read at all."""
    jobs = list(jobs)
    produced = {out for job in jobs for out in job.outputs}
    verdicts: dict[str, bool] = {}

    def differs(path: str) -> bool:
        if path not in verdicts:
            a, b = old_root / path, new_root / path
            if a.exists() != b.exists():
                verdicts[path] = True
            elif not a.exists() or os.path.samefile(a, b):
                verdicts[path] = False
            else:
                verdicts[path] = sha256_path(a) != sha256_path(b)
        return verdicts[path]

    changed = {job.name: tuple(p for p in job.inputs if p not in produced and differs(p))
               for job in jobs}
    return {name: paths for name, paths in changed.items() if paths}


def _recut(job: JobView, after: dict[str, JobView], direct: dict[str, Reason]) -> bool:
    """A shard job that is new, changed or gone while its gather's data stays the same: the
    step was cut differently. Its part is temporary and nothing needs it, so it does not run."""
    return job.shard_of is not None and job.shard_of in after and job.shard_of not in direct


def job_dag(jobs: Iterable[JobView]) -> nx.DiGraph:
    """Edges from the job that writes a path to every job that reads it."""
    jobs = list(jobs)
    writer = {out: job.name for job in jobs for out in job.outputs}
    dag = nx.DiGraph()
    dag.add_nodes_from(job.name for job in jobs)
    for job in jobs:
        for path in job.inputs:
            if path in writer and writer[path] != job.name:
                dag.add_edge(writer[path], job.name)
    return dag


def plan_impact(old: Iterable[JobView], new: Iterable[JobView],
                inputs_changed: dict[str, tuple[str, ...]] | None = None) -> Impact:
    """The jobs of `new` that would re-run given outputs produced by `old`, and why. Jobs named
    in `inputs_changed` read a project file (a prompt, a dataset, a model folder) whose content
    differs between the two sides: they re-run as if their config had changed."""
    before = {j.name: j for j in old}
    after = {j.name: j for j in new}
    touched = inputs_changed or {}
    dag = job_dag(after.values())
    direct: dict[str, Reason] = {}
    for name, job in after.items():
        if name not in before:
            direct[name] = "added"
        elif before[name].config_sha256 != job.config_sha256 or name in touched:
            direct[name] = "changed"
    recut = {name for name in direct if _recut(after[name], after, direct)}
    impacts: dict[str, JobImpact] = {
        name: JobImpact(name, after[name].kind, "recut", 0.0, source=after[name].source)
        for name in sorted(recut)}
    direct = {name: reason for name, reason in direct.items() if name not in recut}
    order = list(nx.lexicographical_topological_sort(dag))
    for name in order:
        job = after[name]
        if name in direct:
            same_config = name in before and before[name].config_sha256 == job.config_sha256
            impacts[name] = JobImpact(name, job.kind, direct[name], job.gpu_hours, source=job.source,
                                      inputs=touched.get(name, ()) if same_config else ())
            continue
        upstream = sorted(u for u in nx.ancestors(dag, name) if u in direct)
        if upstream:
            impacts[name] = JobImpact(name, job.kind, "invalidated", job.gpu_hours,
                                      after=tuple(upstream), source=job.source)
    removed = [JobImpact(name, job.kind, "recut" if _recut(job, after, direct) else "removed",
                         0.0, source=job.source)
               for name, job in sorted(before.items()) if name not in after]
    ordered = [impacts[name] for name in order if name in impacts] + removed
    return Impact(jobs=tuple(ordered), unchanged=len(after) - len(impacts))


# ---------------------------------------------------------------- rendering


def _hours(value: float) -> str:
    return f"{value:g}"


def summary(impact: Impact) -> str:
    recut = impact.count("recut")
    return (f"{len(impact.rerun)} to run ({impact.count('added')} new, {impact.count('changed')} "
            f"changed, {impact.count('invalidated')} invalidated), {impact.count('removed')} "
            f"removed, " + (f"{recut} re-cut (no data change), " if recut else "")
            + f"{impact.unchanged} unchanged; {_hours(impact.gpu_hours)} GPU-hours")


def _why(job: JobImpact) -> str:
    if job.reason == "invalidated":
        return "invalidated by " + ", ".join(job.after)
    if job.inputs:
        return "input changed: " + ", ".join(job.inputs)
    return {"added": "new job", "changed": "config changed", "removed": "no longer in the workflow",
            "recut": "re-cut, no data change"}[job.reason]


_MARK = {"added": "+", "changed": "~", "invalidated": "!", "removed": "-", "recut": "%"}


def render_text(impact: Impact) -> str:
    lines = [f"Plan: {summary(impact)}"]
    if impact.jobs:
        lines.append("")
        width = max(len(j.name) for j in impact.jobs)
        for job in impact.jobs:
            hours = f"  {_hours(job.gpu_hours)} GPU-h" if job.gpu_hours else ""
            lines.append(f"{_MARK[job.reason]} {job.name:<{width}}  {job.kind:<11} {_why(job)}{hours}")
    return "\n".join(lines) + "\n"


def render_json(impact: Impact) -> dict[str, Any]:
    return {
        "gpu_hours": impact.gpu_hours,
        "unchanged": impact.unchanged,
        "jobs": [{"job": j.name, "kind": j.kind, "reason": j.reason, "after": list(j.after),
                  "gpu_hours": j.gpu_hours, "source": j.source} for j in impact.jobs],
    }


def render_markdown(impact: Impact) -> str:
    lines = [f"**Plan**: {summary(impact)}"]
    if impact.jobs:
        lines += ["", "| | job | kind | why | GPU-hours |", "|---|---|---|---|---|"]
        for job in impact.jobs:
            lines.append(f"| {_MARK[job.reason]} | `{job.name}` | {job.kind} | {_why(job)} | "
                         f"{_hours(job.gpu_hours)} |")
    return "\n".join(lines) + "\n"
