"""The whole compiler on one screen: spec file -> IR -> jobs -> workflow folder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleming_dsl import ir
from fleming_dsl.emit.workflow import emit
from fleming_dsl.plan.planner import Plan, plan


@dataclass(frozen=True)
class Compiled:
    experiment: ir.Experiment
    plan: Plan
    out_dir: Path
    changed: tuple[str, ...]  # files written or removed (relative to out_dir)


def default_out_dir(exp: ir.Experiment) -> str:
    return f"generated/{exp.name}"


def _without_spans(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_spans(v) for k, v in data.items() if k != "span"}
    if isinstance(data, list):
        return [_without_spans(v) for v in data]
    return data


def ir_sha256(exp: ir.Experiment) -> str:
    """Hash of what the experiment means: moving a declaration to another line keeps it."""
    data = _without_spans(exp.model_dump(mode="json"))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def project_relative(path: str | Path) -> str:
    """`path` relative to the project root (the cwd) with forward slashes, if it lies inside."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        raise ValueError(f"{path}: the output folder must lie inside the project "
                         f"({Path.cwd()}), so the workflow can name it relatively") from None


def compile_experiment(exp: ir.Experiment, out_dir: str | Path | None = None,
                       spec_sha256: str = "") -> Compiled:
    """IR -> jobs -> files; `out_dir` relative to the project root (the cwd)."""
    logical = project_relative(out_dir) if out_dir is not None else default_out_dir(exp)
    jobs = plan(exp, logical)
    changed = emit(jobs, logical, spec_sha256=spec_sha256, ir_sha256=ir_sha256(exp))
    return Compiled(exp, jobs, Path(logical), tuple(changed))


def compile_spec(path: str | Path, out_dir: str | Path | None = None) -> Compiled:
    """Parse and check the spec (raises SpecError), plan its jobs, write its workflow."""
    from fleming_dsl.spec.loader import load_experiment

    exp = load_experiment(path)
    spec_sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return compile_experiment(exp, out_dir, spec_sha256=spec_sha)
