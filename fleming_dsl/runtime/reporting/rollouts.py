"""The report's view of GRPO rollouts and tracking: sampled completions per step (prompt,
completion, reward terms, as TRL's `log_completions` shows them), dynamic-sampling figures, and
links to each stage's offline tracking folders (TensorBoard, Trackio, MLflow, W&B)."""

from __future__ import annotations

import os
from typing import Any

from fleming_dsl.runtime.reporting.collect import ReportInputs, StageCurve
from fleming_dsl.runtime.reporting.tables import Table, fmt, named_values

MAX_STEPS_SHOWN = 40  # per stage: evenly spaced steps, first and last included
SHOWN_CHARS = 300


def _spread(rows: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    if len(rows) <= most:
        return rows
    picks = sorted({round(i * (len(rows) - 1) / (most - 1)) for i in range(most)})
    return [rows[i] for i in picks]


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def completions_table(curve: StageCurve) -> Table | None:
    rows = [row for row in curve.rows if isinstance(row.get("samples"), list) and row["samples"]]
    if not rows:
        return None
    out = []
    for row in _spread(rows, MAX_STEPS_SHOWN):
        for sample in row["samples"]:
            if isinstance(sample, dict):
                out.append((curve.stage, fmt(row["step"]), _short(sample.get("prompt", "")),
                            _short(sample.get("completion", "")), named_values(sample.get("rewards") or {}),
                            fmt(sample.get("total"))))
    return Table(("stage", "step", "prompt", "completion", "reward terms", "total"), tuple(out))


def dynamic_sampling_table(curves: tuple[StageCurve, ...]) -> Table | None:
    out = []
    for curve in curves:
        rows = [row for row in curve.rows if "dynamic/dropped_frac" in row]
        if rows:
            dropped = [float(row["dynamic/dropped_frac"]) for row in rows]
            out.append((curve.stage, fmt(len(rows)), fmt(sum(dropped) / len(dropped)), fmt(max(dropped)),
                        fmt(sum(int(row.get("dynamic/redraws", 0)) for row in rows)),
                        fmt(sum(int(row.get("dynamic/filled_groups", 0)) for row in rows))))
    if not out:
        return None
    return Table(("stage", "steps", "mean fraction of groups dropped", "max fraction dropped",
                  "redraws", "masked filler groups"), tuple(out))


def tracking_links(inputs: ReportInputs, report_dir: str) -> tuple[tuple[str, str], ...]:
    """(label, href relative to the report folder) for every tracking folder a job recorded."""
    links = []
    for meta in inputs.metas:
        tracked = meta.metrics.get("tracking")
        if isinstance(tracked, dict):
            for name, path in sorted(tracked.items()):
                links.append((f"{meta.job}: {name}", os.path.relpath(str(path), report_dir)))
    return tuple(links)
