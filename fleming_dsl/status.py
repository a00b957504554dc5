"""`fleming status generated/<exp>`: which outputs are missing, up to date or stale, running nothing.

A job's outputs are up to date when its metadata record (`<output>.meta.json`, written by the job
runtime) holds the sha256 of the job config the workflow has now and the hashes of inputs that
still hash the same. A job is stale when either differs, or when a job upstream of it is missing
or stale (it will re-run, so this one will too). The configs are the emitted
`generated/<exp>/jobs/*.json`; with `--spec`, they are compiled in memory from the spec as it is
now, so an edit shows up before anyone runs `fleming compile`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from fleming_dsl.jobconfig import JobBase, load_job_config
from fleming_dsl.jobs.common import sha256_path

State = Literal["missing", "stale", "up to date"]

# Job config fields naming files the job writes (everything else that names a path is read).
OUTPUT_FIELDS = ("output", "review", "metrics")


@dataclass(frozen=True)
class CompiledJob:
    """One job as the workflow has it now: its config and the sha256 of its config file bytes."""

    config: JobBase
    config_sha256: str


@dataclass(frozen=True)
class JobStatus:
    job: str
    kind: str
    state: State
    reasons: tuple[str, ...] = ()
    outputs: tuple[str, ...] = field(default=())


def outputs_of(cfg: JobBase) -> tuple[str, ...]:
    return tuple(getattr(cfg, name) for name in OUTPUT_FIELDS if isinstance(getattr(cfg, name, None), str))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def job_dag(jobs: dict[str, CompiledJob]) -> nx.DiGraph:
    """An edge from the job writing a path to each job whose config names that path."""
    writer = {out: name for name, job in jobs.items() for out in outputs_of(job.config)}
    dag = nx.DiGraph()
    dag.add_nodes_from(jobs)
    for name, job in jobs.items():
        for text in _strings(job.config.model_dump(mode="json")):
            if text in writer and writer[text] != name:
                dag.add_edge(writer[text], name)
    return dag


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def own_state(job: CompiledJob, root: Path) -> tuple[State, tuple[str, ...]]:
    """The state of one job judged by its own files, ignoring upstream jobs."""
    cfg = job.config
    missing = [p for p in (*outputs_of(cfg), cfg.meta) if not (root / p).exists()]
    if missing:
        return "missing", tuple(f"{p} does not exist" for p in missing)
    meta = _read_meta(root / cfg.meta)
    if meta is None or "config_sha256" not in meta:
        return "stale", (f"{cfg.meta} is not a metadata record",)
    reasons = []
    if meta["config_sha256"] != job.config_sha256:
        reasons.append("job config changed since it ran")
    for path, recorded in sorted((meta.get("inputs") or {}).items()):
        if not (root / path).exists():
            reasons.append(f"input {path} is gone")
        elif sha256_path(root / path) != recorded:
            reasons.append(f"input {path} changed")
    return ("stale" if reasons else "up to date"), tuple(reasons)


def job_states(jobs: dict[str, CompiledJob], root: Path) -> list[JobStatus]:
    """Every job in dependency order; missing or stale upstream jobs make their dependents stale."""
    dag = job_dag(jobs)
    result: dict[str, JobStatus] = {}
    for name in nx.lexicographical_topological_sort(dag):
        job = jobs[name]
        state, reasons = own_state(job, root)
        upstream = sorted(u for u in dag.predecessors(name) if result[u].state != "up to date")
        if upstream and state != "missing":
            state = "stale"
            reasons += tuple(f"upstream {u} is {result[u].state}" for u in upstream)
        result[name] = JobStatus(name, job.config.kind, state, reasons, outputs_of(job.config))
    return list(result.values())


# ---------------------------------------------------------------- where the configs come from


def emitted_jobs(workflow_dir: Path) -> dict[str, CompiledJob]:
    """The job configs `fleming compile` wrote under `<workflow_dir>/jobs/`."""
    jobs = {}
    for path in sorted((workflow_dir / "jobs").glob("*.json")):
        raw = path.read_bytes()
        cfg = load_job_config(path)
        jobs[cfg.job] = CompiledJob(cfg, hashlib.sha256(raw).hexdigest())
    return jobs


# ---------------------------------------------------------------- rendering and the command


def render_text(states: list[JobStatus]) -> str:
    width = max((len(s.job) for s in states), default=0)
    kind_width = max((len(s.kind) for s in states), default=0)
    lines = []
    for status in states:
        why = f"  {'; '.join(status.reasons)}" if status.reasons else ""
        lines.append(f"{status.state:<10}  {status.job:<{width}}  {status.kind:<{kind_width}}{why}".rstrip())
    counts = {s: sum(1 for x in states if x.state == s) for s in ("up to date", "stale", "missing")}
    lines.append(f"{counts['up to date']} up to date, {counts['stale']} stale, "
                 f"{counts['missing']} missing")
    return "\n".join(lines) + "\n"


def render_json(states: list[JobStatus]) -> list[dict[str, Any]]:
    return [{"job": s.job, "kind": s.kind, "state": s.state, "reasons": list(s.reasons),
             "outputs": list(s.outputs)} for s in states]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "status", help="outputs missing, up to date, or stale against the current spec",
        description="List each job's outputs as missing, up to date or stale, without running anything.")
    parser.add_argument("workflow", help="the compiled workflow folder, e.g. generated/tiny")
    parser.add_argument("--root", default=".", help="project root the job paths are relative to (default: .)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every output is up to date, 1 when any is missing or stale, 2 on error."""
    workflow = Path(args.workflow)
    if not (workflow / "jobs").is_dir():
        print(f"{workflow}: not a compiled workflow (no jobs/ folder); run `fleming compile` first",
              file=sys.stderr)
        return 2
    try:
        jobs = emitted_jobs(workflow)
    except ValueError as err:
        print(f"{workflow}: cannot read a job config: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    states = job_states(jobs, Path(args.root))
    if args.json:
        print(json.dumps(render_json(states), indent=2))
    else:
        print(render_text(states), end="")
    return 0 if all(s.state == "up to date" for s in states) else 1
