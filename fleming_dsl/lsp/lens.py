"""Code lenses above each stage and data step: what an edit there costs, and what the edits
made since git HEAD already cost.

    changed since HEAD: re-runs 3 jobs, 384 GPU-h  ·  an edit here re-runs 4 jobs, 768 GPU-h

Both come from the planner's jobs and `review/impact.py`, as `fleming diff --rev HEAD` computes
them: the HEAD side loads the spec (and every .flm it pulls in) as committed, and its jobs are
cached by commit, so only the first lens after a commit pays for it.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from fleming_dsl import ir
from fleming_dsl.review import impact

LENS_KINDS = ("sample", "synthesize", "distill", "filter", "stage", "evaluate")


@dataclass(frozen=True)
class Lens:
    line: int  # 1-based line of the declaration
    title: str


def _jobs(exp: ir.Experiment) -> list[impact.JobView] | None:
    from fleming_dsl.plan.planner import PlanError, plan

    try:
        return impact.jobs_of(plan(exp, f"generated/{exp.name}"))
    except PlanError:
        return None


def head_commit(root: Path) -> str | None:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def _head_jobs(commit: str, root: str, spec: str) -> tuple[impact.JobView, ...] | None:
    """The jobs of `spec` (relative to `root`) as committed at `commit`; None when it is not there
    or does not check."""
    import os

    from fleming_dsl.cli.diff import DiffError, load_spec_at

    before = os.getcwd()
    try:
        os.chdir(root)
        exp = load_spec_at(commit, spec)
    except (DiffError, OSError):
        return None
    finally:
        os.chdir(before)
    jobs = _jobs(exp)
    return tuple(jobs) if jobs is not None else None


def _hours(value: float) -> str:
    return f"{value:,.4g}"


def _phrase(count: int, hours: float) -> str:
    jobs = f"{count} job" + ("s" if count != 1 else "")
    return f"{jobs}, {_hours(hours)} GPU-h" if hours else jobs


def lenses(exp: ir.Experiment, shown: str, decl_lines: dict[str, int], root: Path) -> list[Lens]:
    """One lens per declaration in `decl_lines` (name -> 1-based line) of the file `shown`."""
    jobs = _jobs(exp)
    if jobs is None:
        return []
    commit = head_commit(root)
    head = _head_jobs(commit, str(root), exp.spec) if commit else None
    dag = impact.job_dag(jobs)
    by_name = {j.name: j for j in jobs}
    changed = impact.plan_impact(head, jobs) if head is not None else None
    out = []
    for line in decl_lines.values():
        source = f"{shown}:{line}"
        own = [j.name for j in jobs if j.source == source]
        if not own:
            continue
        reach = set(own)
        for job in own:
            reach |= nx.descendants(dag, job)
        edit = _phrase(len(reach), sum(by_name[j].gpu_hours for j in reach))
        if changed is None:
            since = "not in git HEAD" if commit else "not in git"
        else:
            direct = {j.name for j in changed.jobs if j.name in own and j.reason in ("added", "changed")}
            if direct:
                hit = [j for j in changed.jobs if j.name in direct or set(j.after) & direct]
                since = "changed since HEAD: re-runs " + _phrase(len(hit), sum(j.gpu_hours for j in hit))
            else:
                since = "unchanged since HEAD"
        out.append(Lens(line, f"{since} · an edit here re-runs {edit}"))
    return out
