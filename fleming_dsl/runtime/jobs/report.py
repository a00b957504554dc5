"""The report job: one directory a person opens after a run.

    <output>/index.html    self-contained (plots embedded)
    <output>/report.md     the same, plots referenced by relative path
    <output>/*.png         rewards, per-bucket reward / mining, difficulty buckets,
                           accuracy with Wilson intervals, format rate, data funnel
    <output>/summary.json  headline figures (see reporting/summary.py) that tests read

Reads every job's meta JSON, the GRPO per-step metrics JSONL, the eval results JSON and their
per-item predictions (paired tests between consecutive stages, a few answers per stage).
"""

from __future__ import annotations

import json
from pathlib import Path

from fleming_dsl.plan.jobconfig import ReportJob
from fleming_dsl.runtime.io import atomic_output
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.reporting.collect import collect
from fleming_dsl.runtime.reporting.render import layout, render_html, render_markdown
from fleming_dsl.runtime.reporting.summary import summarise

# a GRPO stage stopped at step 0 leaves an empty metrics file: the report still renders
EMPTY_INPUTS_OK = True


def run(cfg: ReportJob, ctx: JobContext) -> None:
    from fleming_dsl.runtime.reporting.plots import (
        plot_all,  # matplotlib only when a report is built
    )

    with ctx.timed("collect"):
        records = collect(cfg.metas, cfg.metrics, cfg.evals, cfg.predictions)
        summary = summarise(cfg.experiment, records, cfg.seed)
    with atomic_output(cfg.output, directory=True) as folder:
        folder = Path(folder)
        with ctx.timed("plot"):
            figures = plot_all(records, summary, folder)
        with ctx.timed("render"):
            report = layout(cfg.experiment, records, summary, figures, report_dir=cfg.output)
            (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
            (folder / "index.html").write_text(render_html(report, folder), encoding="utf-8")
            (folder / "summary.json").write_text(
                json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    ctx.counts.update(metas=len(records.metas), stages=len(records.curves),
                      evals=len(records.evals), plots=len(figures))
    ctx.metrics.update(format_rate=summary["format_rate"], accuracy_mean=summary["accuracy_mean"])
