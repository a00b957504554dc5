"""`fleming status generated/<exp>`: which outputs are missing, up to date or stale, running nothing.

A job's outputs are up to date when its metadata record (`<output>.meta.json`, written by the job
runtime) holds the sha256 of the job config the workflow has now and the hashes of inputs that
still hash the same. A job is stale when either differs, or when a job upstream of it is missing
or stale (it will re-run, so this one will too). The reference configs are compiled in memory
from the spec the manifest names, as it is now, so an edit shows up before anyone runs
`fleming compile`; `--compiled` (or a missing spec) uses the emitted `jobs/*.json` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from fleming_dsl.errors import FlemingError
from fleming_dsl.hashing import sha256_path
from fleming_dsl.plan.jobconfig import GatherJob, JobBase, config_text, load_job_config
from fleming_dsl.review.logs import error_line, last_line

State = Literal["missing", "failed", "running", "stale", "up to date"]

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


def config_sha256(cfg: JobBase, text: str | bytes) -> str:
    """What a job's metadata record holds as its config hash: that of its config file, or for
    a gather that of its task (the unsharded job's config), however the step is cut."""
    if isinstance(cfg, GatherJob):
        text = config_text(cfg.task)
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def shard_of(cfg: JobBase) -> str | None:
    shard = getattr(cfg, "shard", None)
    return shard.of if shard is not None else None


def outputs_of(cfg: JobBase) -> tuple[str, ...]:
    return tuple(getattr(cfg, name) for name in OUTPUT_FIELDS if isinstance(getattr(cfg, name, None), str))


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (dicts, lists, tuples), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def job_dag(jobs: dict[str, CompiledJob]) -> nx.DiGraph:
    """An edge from the job writing a path to each job whose config names that path."""
    # a shard's part is temporary: once merged it is gone, and its gather is judged by its own
    # record, so parts make no edges
    writer = {out: name for name, job in jobs.items() for out in outputs_of(job.config)
              if shard_of(job.config) is None}
    dag = nx.DiGraph()
    dag.add_nodes_from(jobs)
    for name, job in jobs.items():
        for text in strings_in(job.config.model_dump(mode="json")):
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


def log_state(log: Path, running: bool) -> tuple[State, tuple[str, ...]] | None:
    """What a job's log says of a job whose outputs are missing: failed (its own `error:` line),
    running (a Snakemake holds the project's lock), or nothing (it never ran)."""
    if not log.is_file():
        return None
    said = error_line(log)
    if said is not None:
        return "failed", (said, f"log: {log.as_posix()}")
    if running:
        latest = last_line(log)
        return "running", ((latest,) if latest else ())
    return None


def snakemake_running(root: Path) -> bool:
    """A Snakemake holds the lock of the project at `root` (it removes it when it ends)."""
    locks = root / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def job_states(jobs: dict[str, CompiledJob], root: Path,
               logs: dict[str, str] | None = None) -> list[JobStatus]:
    """Every job in dependency order; missing or stale upstream jobs make their dependents stale.
    A missing job with a log (`logs`: job -> log path) is failed or running, as the log says."""
    dag = job_dag(jobs)
    result: dict[str, JobStatus] = {}
    running = snakemake_running(root) if logs else False
    for name in nx.lexicographical_topological_sort(dag):
        job = jobs[name]
        state, reasons = own_state(job, root)
        if state == "missing" and logs and name in logs:
            state, reasons = log_state(root / logs[name], running) or (state, reasons)
        upstream = sorted(u for u in dag.predecessors(name) if result[u].state != "up to date")
        if upstream and state not in ("missing", "failed", "running"):
            state = "stale"
            reasons += tuple(f"upstream {u} is {result[u].state}" for u in upstream)
        result[name] = JobStatus(name, job.config.kind, state, reasons, outputs_of(job.config))
    for name, status in result.items():
        gather = shard_of(jobs[name].config)
        if gather in result and result[gather].state == "up to date":
            result[name] = JobStatus(name, status.kind, "up to date", (f"merged by {gather}",),
                                     status.outputs)
    return list(result.values())


# ---------------------------------------------------------------- where the configs come from


class StatusError(FlemingError):
    """A workflow folder or spec status cannot read; one line for the user."""


def emitted_jobs(workflow_dir: Path) -> dict[str, CompiledJob]:
    """The job configs `fleming compile` wrote under `<workflow_dir>/jobs/`."""
    jobs = {}
    for path in sorted((workflow_dir / "jobs").glob("*.json")):
        raw = path.read_bytes()
        cfg = load_job_config(path)
        jobs[cfg.job] = CompiledJob(cfg, config_sha256(cfg, raw))
    return jobs


def job_logs(workflow_dir: Path) -> dict[str, str]:
    """Each job's log path, from the workflow's jobs.json (empty when it has none)."""
    try:
        rows = json.loads((workflow_dir / "jobs.json").read_text(encoding="utf-8"))["jobs"]
        return {row["name"]: row["log"] for row in rows if "log" in row}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def workflow_of(target: Path, root: Path) -> Path:
    """The workflow folder `fleming status` judges: `target` itself, or a spec's compiled one."""
    if not target.is_file():
        return target
    from fleming_dsl.compiler import SpecError, default_out_dir, load_experiment

    with contextlib.chdir(root):
        try:
            exp = load_experiment(target.resolve())
        except SpecError as err:
            raise StatusError(str(err)) from None
    folder = root / default_out_dir(exp)
    if not (folder / "jobs").is_dir():
        raise StatusError(f"{target}: not compiled yet (no {default_out_dir(exp)}/jobs/); "
                          f"run `fleming compile {target}` or `fleming run {target}` first")
    return folder


def read_manifest(workflow_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((workflow_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def spec_jobs(spec: str, out_dir: str, root: Path) -> dict[str, CompiledJob]:
    """The job configs the spec compiles to now (with includes), hashed as `compile` writes them."""
    from fleming_dsl.compiler import SpecError, load_experiment
    from fleming_dsl.emit.workflow import job_json
    from fleming_dsl.errors import PlanError
    from fleming_dsl.plan.planner import plan

    with contextlib.chdir(root):  # the IR's paths are relative to the project root
        try:
            workflow = plan(load_experiment(spec), out_dir)
        except (SpecError, PlanError) as err:
            raise StatusError(str(err)) from None
    return {job.name: CompiledJob(job.config, config_sha256(job.config, job_json(job)))
            for job in workflow.jobs}


def current_jobs(workflow_dir: Path, root: Path, compiled_only: bool = False
                 ) -> tuple[dict[str, CompiledJob], str]:
    """The jobs to judge against, and a note when the spec has moved on from the compiled folder.

    The spec named in the manifest, as it is now, is the reference; without it (or with
    `compiled_only`), the configs in `jobs/` are."""
    if not (workflow_dir / "jobs").is_dir():
        raise StatusError(f"{workflow_dir}: not a compiled workflow (no jobs/ folder); "
                          "run `fleming compile` first")
    try:
        emitted = emitted_jobs(workflow_dir)
    except ValueError as err:
        raise StatusError(f"{workflow_dir}: cannot read a job config: {str(err).splitlines()[0]}") from None
    spec = read_manifest(workflow_dir).get("spec")
    if compiled_only or not spec or not (root / spec).is_file():
        return emitted, ""
    try:
        out_dir = workflow_dir.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return emitted, ""
    now = spec_jobs(spec, out_dir, root)
    if {n: j.config_sha256 for n, j in now.items()} == {n: j.config_sha256 for n, j in emitted.items()}:
        return now, ""
    return now, (f"note: {spec} has changed since {workflow_dir} was compiled; judged against "
                 "the spec as it is now (`fleming compile` updates the workflow)")


# ---------------------------------------------------------------- rendering and the command


def render_text(states: list[JobStatus]) -> str:
    width = max((len(s.job) for s in states), default=0)
    kind_width = max((len(s.kind) for s in states), default=0)
    lines = []
    for status in states:
        why = f"  {'; '.join(status.reasons)}" if status.reasons else ""
        lines.append(f"{status.state:<10}  {status.job:<{width}}  {status.kind:<{kind_width}}{why}".rstrip())
    counts = {s: sum(1 for x in states if x.state == s) for s in ("up to date", "stale", "missing")}
    line = f"{counts['up to date']} up to date, {counts['stale']} stale, {counts['missing']} missing"
    for other in ("failed", "running"):
        if any(x.state == other for x in states):
            line += f", {sum(1 for x in states if x.state == other)} {other}"
    lines.append(line)
    return "\n".join(lines) + "\n"


def render_json(states: list[JobStatus]) -> list[dict[str, Any]]:
    return [{"job": s.job, "kind": s.kind, "state": s.state, "reasons": list(s.reasons),
             "outputs": list(s.outputs)} for s in states]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "status", help="outputs missing, up to date, or stale against the current spec",
        description="List each job's outputs as missing, up to date or stale, without running anything.")
    parser.add_argument("workflow", metavar="WORKFLOW_OR_SPEC",
                        help="the compiled workflow folder (generated/tiny) or its spec (specs/tiny.flm)")
    parser.add_argument("--root", default=".", help="project root the job paths are relative to (default: .)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--compiled", action="store_true",
                        help="judge against the compiled job configs, not the spec as it is now")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every output is up to date, 1 when any is missing or stale, 2 on error."""
    root = Path(args.root)
    try:
        workflow = workflow_of(Path(args.workflow), root)
        jobs, note = current_jobs(workflow, root, getattr(args, "compiled", False))
    except StatusError as err:
        print(err, file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    states = job_states(jobs, root, job_logs(workflow))
    if args.json:
        print(json.dumps(render_json(states), indent=2))
    else:
        print(render_text(states), end="")
    return 0 if all(s.state == "up to date" for s in states) else 1
