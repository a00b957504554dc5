"""Read the report's inputs into checked records; bad files fail with one located line.

Inputs (see `jobconfig.ReportJob`): every job's meta JSON (`jobs/common.JobContext.record`),
GRPO per-step metrics JSONL (one row per logged step), eval results JSON (`jobs/eval.py`) and
each evaluation's prediction rows (one per item and sample: the paired tests, the answers shown).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.io import read_jsonl


@dataclass(frozen=True)
class JobMeta:
    job: str
    kind: str
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StageCurve:
    """One GRPO stage's logged steps, sorted by step (empty when it stopped at step 0)."""

    stage: str
    rows: tuple[dict[str, Any], ...]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric over the steps that logged it."""
        picked = [(row["step"], row[key]) for row in self.rows if is_number(row.get(key))]
        return [step for step, _ in picked], [float(value) for _, value in picked]

    def keys(self, prefix: str) -> list[str]:
        """Metric names under a prefix ("rewards/", "bucket/"), in first-logged order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            for key in row:
                if key.startswith(prefix) and not key.endswith("/std") and is_number(row[key]):
                    seen.setdefault(key)
        return list(seen)


@dataclass(frozen=True)
class EvalResult:
    target: str
    model: str
    benchmarks: dict[str, dict[str, Any]]
    format_rate: float
    accuracy_mean: float
    rubric: dict[str, dict[str, Any]] = field(default_factory=dict)  # rubric benchmarks (healthbench)


@dataclass(frozen=True)
class ReportInputs:
    metas: tuple[JobMeta, ...]
    curves: tuple[StageCurve, ...]
    evals: tuple[EvalResult, ...]
    # target -> its evaluation's prediction rows (one per item and sample), in the file's order
    predictions: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_json_object(path: str, field_name: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise JobError(f"{path}: file not found (field '{field_name}')")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise JobError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise JobError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _field(data: dict[str, Any], path: str, name: str, kind: type | tuple[type, ...],
           default: Any = ...) -> Any:
    if name not in data:
        if default is not ...:
            return default
        raise JobError(f"{path}: field '{name}' is missing")
    value = data[name]
    if kind in ((int, float), float) and not is_number(value):
        raise JobError(f"{path}: field '{name}' must be a number, found {value!r}")
    if not isinstance(value, kind):
        raise JobError(f"{path}: field '{name}' must be {_kind_name(kind)}, found {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", str: "a string", list: "a list", int: "an integer",
             bool: "true or false"}
    return names.get(kind, "a number") if isinstance(kind, type) else "a number"


def read_meta(path: str) -> JobMeta:
    data = _read_json_object(path, "metas")
    return JobMeta(
        job=_field(data, path, "job", str), kind=_field(data, path, "kind", str, ""),
        counts=_field(data, path, "counts", dict, {}),
        metrics=_field(data, path, "metrics", dict, {}),
        timings=_field(data, path, "timings", dict, {}),
    )


def stage_name(job: str, kind: str) -> str:
    """`grpo_rl1` -> `rl1`: the planner names a stage's job `<method>_<stage>`, and its rows
    carry the job's name."""
    return job.removeprefix(f"{kind}_")


def stage_of_metrics_file(path: str) -> str:
    """`stages/rl1.metrics.jsonl` -> `rl1`: the stage name when rows do not carry one."""
    return Path(path).name.split(".")[0]


def read_curve(path: str) -> StageCurve:
    if not Path(path).is_file():
        raise JobError(f"{path}: file not found (field 'metrics')")
    rows = []
    for number, row in enumerate(read_jsonl(path), 1):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise JobError(f"{where}: expected a JSON object per line")
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise JobError(f"{where}: field 'step' must be an integer, found {step!r}")
        if "reward" in row and row["reward"] is not None and not is_number(row["reward"]):
            raise JobError(f"{where}: field 'reward' must be a number, found {row['reward']!r}")
        rows.append(row)
    stages = {row["stage"] for row in rows if isinstance(row.get("stage"), str)}
    stage = stage_name(stages.pop(), "grpo") if len(stages) == 1 else stage_of_metrics_file(path)
    return StageCurve(stage=stage, rows=tuple(sorted(rows, key=lambda row: row["step"])))


def read_eval(path: str) -> EvalResult:
    data = _read_json_object(path, "evals")
    benchmarks = _field(data, path, "benchmarks", dict)
    for name, summary in benchmarks.items():
        where = f"benchmarks.{name}"
        if not isinstance(summary, dict):
            raise JobError(f"{path}: field '{where}' must be an object")
        for key in ("n", "accuracy"):
            if not is_number(summary.get(key)):
                raise JobError(f"{path}: field '{where}.{key}' must be a number, "
                               f"found {summary.get(key)!r}")
        ci = summary.get("ci95")
        if not (isinstance(ci, list) and len(ci) == 2 and all(is_number(v) for v in ci)):
            raise JobError(f"{path}: field '{where}.ci95' must be [lo, hi], found {ci!r}")
    return EvalResult(
        target=_field(data, path, "target", str), model=_field(data, path, "model", str, ""),
        benchmarks=benchmarks, format_rate=float(_field(data, path, "format_rate", (int, float))),
        accuracy_mean=float(_field(data, path, "accuracy_mean", (int, float))),
        rubric=_field(data, path, "rubric_benchmarks", dict, {}),
    )


# the fields of a prediction row the report reads (eval.score_item writes them)
PREDICTION_FIELDS = {"benchmark": str, "id": str, "correct": bool}


def read_predictions(path: str) -> tuple[dict[str, Any], ...]:
    if not Path(path).is_file():
        raise JobError(f"{path}: file not found (field 'predictions')")
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise JobError(f"{path}:{number}: expected a JSON object per line")
        for name, kind in PREDICTION_FIELDS.items():
            if not isinstance(row.get(name), kind):
                raise JobError(f"{path}:{number}: field '{name}' must be {_kind_name(kind)}, "
                               f"found {row.get(name)!r}")
    return tuple(rows)


def collect(metas: tuple[str, ...], metrics: tuple[str, ...], evals: tuple[str, ...],
            predictions: tuple[str, ...] = ()) -> ReportInputs:
    """The records; `predictions[i]` is the prediction file of `evals[i]` (the planner lists
    them in the same order), none for a report planned before they were declared."""
    results = tuple(read_eval(path) for path in evals)
    return ReportInputs(
        metas=tuple(read_meta(path) for path in metas),
        curves=tuple(read_curve(path) for path in metrics),
        evals=results,
        predictions={result.target: read_predictions(path)
                     for result, path in zip(results, predictions, strict=bool(predictions))},
    )
