"""The whole compiler on one screen.

    spec file --spec.loader--> ast.Program --check--> diagnostics --lower--> ir.Experiment
              --plan--> jobs (plan.jobconfig models) --emit--> generated/<experiment>/

`fleming check` runs the first half (`check_experiment`) and imports nothing else: the planner and
the emitter are imported only when a workflow is compiled.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleming_dsl import ir
from fleming_dsl.check import run_checks, run_lowered_checks
from fleming_dsl.errors import Diagnostic, PlanError, SpecError, by_place
from fleming_dsl.lower.declarations import lower
from fleming_dsl.spec.loader import load_program

if TYPE_CHECKING:
    from fleming_dsl.plan.planner import Plan


# ---------------------------------------------------------------- front end: text -> IR


def check_experiment(path: str | os.PathLike, project_root: Path | None = None, *,
                     text: str | None = None, texts: dict[Path, str] | None = None,
                     ) -> tuple[ir.Experiment, list[Diagnostic]]:
    """parse -> merge includes/base -> checks -> lower to IR; the warnings beside it.

    Raises SpecError on any error. `text`, when given, is the spec's content (as if it were in
    the file `path`); `texts` gives any file's content by path (an editor's unsaved buffers)."""
    with _no_cycle_collection():
        root = project_root or Path.cwd()
        program = load_program(path, root, text=text, texts=texts)
        found = by_place(run_checks(program))
        errors = [d for d in found if d.severity == "error"]
        if errors:  # what lowering finds (an unknown option, a value out of range) is shown too
            raise SpecError(_unique(by_place(errors + _lowering_errors(program, root))),
                            program.sources)
        exp = lower(program, root)
        found += by_place(run_lowered_checks(program, exp))
        errors = [d for d in found if d.severity == "error"]
        if errors:
            raise SpecError(errors, program.sources)
        return exp, [d for d in found if d.severity != "error"]


def _lowering_errors(program, root: Path) -> list[Diagnostic]:
    """The errors lowering reports for a program the rules already found errors in, and, where it
    lowers, those of the rules on resolved values, so one check shows every independent problem.
    Lowering and those rules expect a program that passed the rules: where one that did not
    breaks them in another way, their errors only repeat the rules' and are left out."""
    try:
        exp = lower(program, root)
        return [d for d in run_lowered_checks(program, exp) if d.severity == "error"]
    except SpecError as err:
        return [d for d in err.diagnostics if d.severity == "error"]
    except Exception:  # noqa: BLE001 - see the docstring
        return []


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple] = set()
    kept = []
    for diag in diagnostics:
        key = (diag.span, diag.message)
        if key not in seen:
            seen.add(key)
            kept.append(diag)
    return kept


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while a spec is read or compiled: the front end, the
    planner and the emitter build many small acyclic objects, and the collector's passes over
    them took over half of checking a 100,000-declaration spec. Whatever is garbage is
    collected when it resumes."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_experiment(path: str | os.PathLike, project_root: Path | None = None, *,
                    text: str | None = None) -> ir.Experiment:
    """`check_experiment` without the warnings."""
    return check_experiment(path, project_root, text=text)[0]


# ---------------------------------------------------------------- back end: IR -> workflow


@dataclass(frozen=True)
class Compiled:
    experiment: ir.Experiment
    plan: Plan
    out_dir: Path
    changed: tuple[str, ...]  # files written or removed (relative to out_dir)
    warnings: tuple[Diagnostic, ...] = ()  # what `fleming check` warns about the spec


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
    if any(c in str(path) for c in "{}\n\r\0"):
        raise ValueError(f"{path}: the output folder may not contain '{{', '}}' or control "
                         "characters (Snakemake reads {...} as a wildcard)")
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        raise ValueError(f"{path}: the output folder must lie inside the project "
                         f"({Path.cwd()}), so the workflow can name it relatively") from None


def compile_experiment(exp: ir.Experiment, out_dir: str | Path | None = None,
                       spec_sha256: str = "") -> Compiled:
    """IR -> jobs -> files; `out_dir` relative to the project root (the cwd)."""
    from fleming_dsl.emit.workflow import emit
    from fleming_dsl.plan.planner import plan

    logical = project_relative(out_dir) if out_dir is not None else default_out_dir(exp)
    with _no_cycle_collection():  # as for the front end: ~20% of a 10,000-job compile
        jobs = plan(exp, logical)
        _not_another_specs_folder(jobs.spec, logical, lambda: _spec_files(exp))
        changed = emit(jobs, logical, spec_sha256=spec_sha256, ir_sha256=ir_sha256(exp))
    return Compiled(exp, jobs, Path(logical), tuple(changed))


def _spec_files(exp: ir.Experiment) -> frozenset[str]:
    """The spec files the experiment's declarations came from: the spec, its includes and bases."""
    def spans(data: Any) -> Iterator[str]:
        if isinstance(data, dict):
            if isinstance(data.get("span"), dict) and isinstance(data["span"].get("file"), str):
                yield data["span"]["file"]
            for value in data.values():
                yield from spans(value)
        elif isinstance(data, list):
            for value in data:
                yield from spans(value)
    return frozenset(spans(exp.model_dump(mode="json")))


def _not_another_specs_folder(spec: str, out_dir: str,
                              spec_files: Callable[[], frozenset[str]]) -> None:
    """PlanError when `out_dir` holds the workflow of another spec (two specs with one experiment
    name would otherwise overwrite each other's generated/ folder, and their runs' records). A
    spec that extends the one recorded there is a variant of that experiment and may replace its
    workflow (tests/specs/tiny_sharded.flm re-cuts specs/tiny.flm into shards over its run)."""
    try:
        previous = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))["spec"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(previous, str) and previous != spec and previous not in spec_files():
        raise PlanError(f"{out_dir} holds the workflow of {previous}, and {spec} names the same "
                        "experiment: give one of them another experiment name (or --out DIR); if "
                        f"{previous} was moved to {spec}, delete {out_dir} first")


def compile_spec(path: str | Path, out_dir: str | Path | None = None) -> Compiled:
    """The whole pipeline: check the spec (SpecError), plan its jobs, write its workflow."""
    exp, warnings = check_experiment(path)
    spec_sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return replace(compile_experiment(exp, out_dir, spec_sha256=spec_sha), warnings=tuple(warnings))
