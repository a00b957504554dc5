"""What a spec's jobs will cost, measured from earlier runs rather than declared.

Every job records its timings and counts in `<output>.meta.json`. A job whose own record exists
(an earlier run of this spec) is estimated from it, scaled by the steps it now asks for; a job
without one is scaled from a recorded job of the same kind (this run's, or a run named with
`--from`) by steps, model size and devices, citing the run and job it came from. Another run's
record is used only where it can say something (`unscalable`: the same kind of hardware, and
steps or a model size on both sides); otherwise, and for a kind nothing recorded, the job falls
back to its declared `time` limit and says which record it did not use and why. An estimate above the
job's `time` limit is a warning: SLURM would stop it (it checkpoints and requeues, but each
allocation costs a queue wait).

`estimate` is pure (a plan and records in, estimates out); `records_under` reads the records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleming_dsl.review import impact

if TYPE_CHECKING:
    from fleming_dsl.plan.planner import Job, Plan

_BILLIONS = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)[Bb](?![A-Za-z])")  # Qwen2.5-7B-Instruct -> 7


@dataclass(frozen=True)
class Record:
    """One finished job, as its meta recorded it."""

    run: str  # the folder the record was found under (a workdir)
    path: str  # the meta file
    job: str
    kind: str
    seconds: float
    steps: int | None = None
    parameters: int | None = None
    devices: int = 1  # GPUs across the job's ranks, or 1 on CPU
    gpus: int = 0  # GPUs across the job's ranks (0: it ran on CPU)


@dataclass(frozen=True)
class Estimate:
    job: str
    kind: str
    seconds: float
    gpu_hours: float
    limit_s: int
    basis: str  # "measured", "scaled" or "declared"
    note: str

    @property
    def over_limit(self) -> bool:
        return self.seconds > self.limit_s


def record_of(meta: dict[str, Any], run: str, path: str) -> Record | None:
    """A Record from a meta's JSON, or None for one without the fields an estimate needs."""
    try:
        seconds = float(meta["timings"]["total_s"])
        job, kind = str(meta["job"]), str(meta["kind"])
    except (KeyError, TypeError, ValueError):
        return None
    steps = (meta.get("metrics") or {}).get("steps")
    counts = meta.get("counts") or {}
    hardware = meta.get("hardware") or {}
    return Record(run=run, path=path, job=job, kind=kind, seconds=seconds,
                  steps=steps if isinstance(steps, int) else None,
                  parameters=counts.get("parameters") if isinstance(counts.get("parameters"), int) else None,
                  devices=max(1, int(hardware.get("gpus") or 0)), gpus=int(hardware.get("gpus") or 0))


def records_under(folders: Iterable[str | Path]) -> list[Record]:
    """Every readable job record (`*.meta.json`) under the folders, in path order."""
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.meta.json")):
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            record = record_of(meta, str(folder), path.as_posix()) if isinstance(meta, dict) else None
            if record is not None:
                found.append(record)
    return found


def tiny_parameters(arch: Any) -> int:
    """About how many parameters a tiny() Qwen2 has: embeddings (tied) plus per layer the
    attention projections (grouped K/V) and an MLP of three hidden x 4*hidden matrices."""
    h, kv = arch.hidden, arch.hidden * arch.kv_heads // arch.heads
    return arch.vocab * h + arch.layers * (2 * h * h + 2 * h * kv + 3 * h * 4 * h)


def model_parameters(plan: Plan) -> dict[str, int]:
    """Job name -> parameters of the model it trains or evaluates, where the plan says: a tiny()
    model by its architecture, a hub model by the size in its name (Qwen2.5-7B -> 7e9), a
    trained model by the model it started from."""
    by_path: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for job in plan.jobs:
        cfg = job.config
        arch = getattr(cfg, "arch", None)
        if arch is not None:
            by_path[cfg.output] = tiny_parameters(arch)
            continue
        model = getattr(cfg, "model", None)
        if not isinstance(model, str):
            continue
        size = by_path.get(model)
        if size is None and (match := _BILLIONS.search(model)):
            size = round(float(match.group(1)) * 1e9)
        if size is not None:
            sizes[job.name] = size
            if job.kind in ("sft", "grpo"):
                by_path[cfg.output] = size
    return sizes


def _devices(job: Job) -> int:
    return max(1, job.resources.nodes * job.resources.gpus)


def _steps(job: Job) -> int | None:
    """A training job's declared max_steps (its stage options nest as `training`), else None."""
    training = getattr(job.config, "training", None)
    return training.max_steps if training is not None else None


def _scale(job: Job, record: Record, parameters: int | None = None,
           other: bool = False) -> tuple[float, list[str]]:
    """The factor from the record's time to this job's, and what went into it (`other`: the
    record is another job's, so what could not be scaled is said too)."""
    factor, why = 1.0, []
    steps = _steps(job)
    if steps and record.steps:
        factor *= steps / record.steps
        if steps != record.steps:
            why.append(f"{record.steps} -> {steps} steps")
    elif other and record.steps and not steps:
        why.append("steps as recorded: the stage trains by epochs")
    if parameters and record.parameters and parameters != record.parameters:
        factor *= parameters / record.parameters
        why.append(f"{_count(record.parameters)} -> {_count(parameters)} parameters")
    if _devices(job) != record.devices:
        factor *= record.devices / _devices(job)
        why.append(f"{_hardware(record.devices)} -> {_hardware(_devices(job))}")
    return factor, why


def _count(n: int) -> str:
    return f"{n / 1e9:g}B" if n >= 1e9 else f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n:,}"


def _hardware(devices: int) -> str:
    return "1 device" if devices == 1 else f"{devices} GPUs"


def unscalable(job: Job, record: Record, parameters: int | None) -> str | None:
    """Why another run's record says nothing of this job's time, or None when it can be scaled:
    other hardware (a CPU second is no GPU second), or nothing to scale the work by (a tiny
    run's graph load or 2,000 samples copied to a 7B spec's would only look measured)."""
    if job.resources.gpus and not record.gpus:
        return f"it ran on CPU, this job asks for {_hardware(_devices(job))}"
    if record.gpus and not job.resources.gpus:
        return "it ran on GPUs, this job on CPU"
    steps = _steps(job)
    if parameters and record.parameters or steps and record.steps:
        return None
    return "no model size or step count on both sides to scale by"


def _scalable(job: Job, records: list[Record], parameters: int | None) -> tuple[Record | None, str]:
    """The first record this job can be scaled from (a job of its own name first), else why the
    first one could not."""
    records = sorted(records, key=lambda r: r.job != job.name)
    for record in records:
        if unscalable(job, record, parameters) is None:
            return record, ""
    first = records[0]
    return None, (f"; not scaled from run {first.run}, job {first.job}: "
                  f"{unscalable(job, first, parameters)}")


def estimate(plan: Plan, records: Iterable[Record], *, own: Iterable[Record] = ()) -> list[Estimate]:
    """Per job of the plan, in plan order: its estimated wall time and GPU-hours, and the basis.

    `own` are the records of this spec's run (matched by job name first, else a job of the same
    kind in that run); `records` (other runs) are scaled from only where `unscalable` finds
    nothing against it."""
    own = list(own)
    own_by_job = {r.job: r for r in own}
    own_by_kind: dict[str, Record] = {}
    for record in own:
        own_by_kind.setdefault(record.kind, record)
    others: dict[str, list[Record]] = {}
    for record in records:
        others.setdefault(record.kind, []).append(record)
    sizes = model_parameters(plan)
    out = []
    for job in plan.jobs:
        kind = job.config.kind
        limit_s = job.resources.time_min * 60
        parameters = sizes.get(job.name)
        record = own_by_job.get(job.name)
        unused = ""
        if record is None or record.kind != kind:
            record = own_by_kind.get(kind)
            if record is None and others.get(kind):
                record, unused = _scalable(job, others[kind], parameters)
        if record is not None and record.job == job.name and record in own:
            factor, why = _scale(job, record)
            basis = "measured"
            note = f"measured: {record.path}" + (f" ({', '.join(why)})" if why else "")
        elif record is not None:
            factor, why = _scale(job, record, parameters, other=True)
            basis = "scaled"
            note = (f"scaled from run {record.run}, job {record.job}"
                    + (f" ({', '.join(why)})" if why else ""))
        else:
            factor, basis = limit_s, "declared"
            note = f"no recorded {kind} job: the declared time limit" if not unused else (
                f"the declared time limit{unused}")
        seconds = round(factor * (record.seconds if basis != "declared" else 1.0), 1)
        gpu_hours = impact.gpu_hours(job.resources.nodes, job.resources.gpus, seconds / 60)
        out.append(Estimate(job=job.name, kind=kind, seconds=seconds, gpu_hours=gpu_hours,
                            limit_s=limit_s, basis=basis, note=note))
    return out


def own_records(plan: Plan) -> list[Record]:
    """The records this spec's own jobs left (their meta files), where they exist."""
    found = []
    for job in plan.jobs:
        path = Path(job.config.meta)
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        record = record_of(meta, plan.workdir, path.as_posix()) if isinstance(meta, dict) else None
        if record is not None:
            found.append(record)
    return found


def duration(seconds: float) -> str:
    """`1:02:03` (hours:minutes:seconds), days as hours."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def render(estimates: list[Estimate]) -> str:
    """The `fleming cost` table, totals and warnings."""
    width = max([len(e.job) for e in estimates] + [3])
    lines = [f"{'job':<{width}}  {'kind':<11}  {'estimate':>10}  {'limit':>10}  {'GPU-h':>8}  basis"]
    for e in estimates:
        lines.append(f"{e.job:<{width}}  {e.kind:<11}  {duration(e.seconds):>10}  "
                     f"{duration(e.limit_s):>10}  {e.gpu_hours:>8.3f}  {e.note}")
    total = sum(e.seconds for e in estimates)
    gpu = round(sum(e.gpu_hours for e in estimates), 3)
    counts = {b: sum(1 for e in estimates if e.basis == b) for b in ("measured", "scaled", "declared")}
    lines.append(f"total: {duration(total)} of job time, {gpu:g} GPU-hours "
                 f"({counts['measured']} measured, {counts['scaled']} scaled, "
                 f"{counts['declared']} declared)")
    for e in estimates:
        if e.over_limit and e.basis != "declared":
            lines.append(f"warning: {e.job}: the estimate {duration(e.seconds)} exceeds its time "
                         f"limit {duration(e.limit_s)}: it will run in several allocations "
                         "(checkpoint, requeue); raise its time")
    return "\n".join(lines) + "\n"
