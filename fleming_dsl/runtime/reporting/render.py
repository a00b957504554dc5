"""Lay the report out as sections and render them to `report.md` and a self-contained
`index.html` (plots embedded as base64, so the one file can be mailed or attached to a ticket).

Templates live in `templates/report/` (shipped in the wheel like the workflow templates).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleming_dsl.runtime.reporting.collect import ReportInputs
from fleming_dsl.runtime.reporting.rollouts import (
    completions_table,
    dynamic_sampling_table,
    tracking_links,
)
from fleming_dsl.runtime.reporting.tables import (
    Table,
    accuracy_table,
    answered_by_table,
    answers_table,
    bucket_table,
    distill_table,
    filter_table,
    fmt,
    format_table,
    funnel_table,
    group_accuracy_table,
    grpo_table,
    markdown_table,
    mining_table,
    p_value,
    paired_table,
    rubric_table,
    sft_table,
    timing_table,
)


@dataclass(frozen=True)
class Section:
    title: str
    notes: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[str, ...] = ()  # PNG file names in the report directory
    links: tuple[tuple[str, str], ...] = ()  # (label, href relative to the report directory)


@dataclass(frozen=True)
class Report:
    experiment: str
    headline: tuple[str, ...]
    sections: tuple[Section, ...] = field(default_factory=tuple)


def headline(summary: dict[str, Any]) -> tuple[str, ...]:
    lines = []
    if len(summary["accuracy_mean"]) > 1:
        lines.append("Ablation, mean benchmark accuracy: " + " -> ".join(
            f"{target} {fmt(mean)}" for target, mean in summary["accuracy_mean"].items()))
    lines += paired_headline(summary["paired"])
    cold = summary["cold_start_target"]
    if cold:
        lines.append(f"Format rate after the cold start ({cold}): "
                     f"{fmt(summary['format_rate_after_cold_start'])}")
    for target, mean in summary["accuracy_mean"].items():
        lines.append(f"Mean benchmark accuracy of {target}: {fmt(mean)}")
    for stage, figures in summary["grpo"].items():
        stopped = f", stopped by {figures['stopped_by']}" if figures["stopped_by"] else ""
        lines.append(f"GRPO {stage}: {figures['steps']} steps logged, "
                     f"final reward {fmt(figures['final_reward'])}{stopped}")
    return tuple(lines) or ("No evaluation or training results were recorded.",)


def paired_headline(paired: list[dict[str, Any]]) -> list[str]:
    """One line per pair of stages compared: each benchmark's paired difference."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for row in paired:
        pairs.setdefault((row["before"], row["after"]), []).append(
            f"{row['benchmark']} {row['difference']:+.3f} (gained {row['gained']}, lost {row['lost']}, "
            f"McNemar p {p_value(row['p_value_mcnemar'])})")
    return [f"{after} against {before}, same questions: " + "; ".join(parts)
            for (before, after), parts in pairs.items()]


def layout(experiment: str, inputs: ReportInputs, summary: dict[str, Any],
           figures: dict[str, str], report_dir: str = ".") -> Report:
    """The report's sections: the ablation (accuracy per stage) first, then in recipe order
    data, difficulty, GRPO, format and cost."""
    def fig(*names: str) -> tuple[str, ...]:
        return tuple(figures[name] for name in names if name in figures)

    filters = summary["filters"]
    answered_by = answered_by_table(inputs)
    sections = [
        # The paper's ablation first: every evaluated model (base, cold start, RL stages).
        Section("Ablation: accuracy per stage",
                notes=("Accuracy per benchmark (rows) of each evaluated model (columns, in the "
                       "spec's order), with its Wilson 95% interval; with several samples per "
                       "item, the mean over samples.",)
                + (("The second table counts the right answers that named their option by "
                    "letter and by its exact text (evaluate { accept = text }).",)
                   if answered_by else ()) if inputs.evals
                else ("No evaluation in this experiment.",),
                tables=((accuracy_table(inputs),) + ((answered_by,) if answered_by else ()))
                if inputs.evals else (),
                figures=fig("accuracy")),
        Section("Paired tests: each stage against the one before it, and RL against the cold start",
                notes=("On the items both stages answered: gained = wrong before and right after, "
                       "lost = the reverse; the difference of accuracy with a paired bootstrap 95% "
                       "interval (items resampled, seeded) and the exact McNemar p-value from "
                       "gained and lost. With few discordant items the percentile interval is too "
                       "narrow (0 gained and 4 lost can exclude 0 at p = 0.125): read the p-value.",)
                if summary["paired"]
                else ("No two consecutive evaluations with per-item predictions.",),
                tables=(paired_table(summary),) * bool(summary["paired"])),
        Section("Evaluation answers per stage",
                notes=("Per stage and benchmark, the first right and the first wrong answer in a "
                       "fixed order of the questions (the same for every stage); the question "
                       "shortened, the model's <answer>, the gold option.",) if summary["answers"]
                else ("No evaluation predictions recorded.",),
                tables=tuple(answers_table(target, shown)
                             for target, shown in summary["answers"].items() if shown)),
        Section("Data funnel and filter removals",
                notes=() if summary["funnel"] or filters else ("No data job counts recorded.",),
                tables=(funnel_table(summary),) * bool(summary["funnel"])
                + tuple(distill_table(job, d) for job, d in summary["distill"].items())
                + tuple(filter_table(job, f) for job, f in filters.items()),
                figures=fig("funnel")),
        Section("Difficulty buckets",
                notes=() if "difficulty" in figures else ("No difficulty annotation recorded.",),
                tables=tuple(bucket_table(f) for f in filters.values()
                             if f["buckets"] or f["pass_rate_by_bucket"]),
                figures=fig("difficulty")),
        Section("SFT loss per step",
                notes=() if summary["sft"] else ("No SFT stage in this experiment.",),
                tables=(sft_table(summary),) * bool(summary["sft"]), figures=fig("sft_loss")),
        Section("GRPO rewards per step",
                notes=() if inputs.curves else ("No GRPO stage in this experiment.",),
                tables=(grpo_table(summary),) * bool(inputs.curves), figures=fig("rewards")),
        Section("Per-bucket reward and hard-sample mining",
                notes=(("Mean reward per difficulty bucket of the items trained on (their "
                        "`difficulty`, from a difficulty step); in a mined stage also on the "
                        "round's mined failures and mined solved items, and the pool's pass rate.",)
                       if "bucket_rewards" in figures else ("No GRPO stage in this experiment.",))
                + (("Mining per round: the pool's pass rate over the items estimated so far "
                    "(training rollouts and the refresh's extra ones), the round's mix, and how "
                    "many of the previous round's mined failures the next estimate found solved.",)
                   if summary["mining"] else ()),
                tables=tuple(mining_table(stage, rounds) for stage, rounds in summary["mining"].items()),
                figures=fig("bucket_rewards", "mining")),
        rollouts_section(inputs),
        tracking_section(inputs, report_dir),
        Section("Accuracy by published category and rubric scores",
                notes=() if group_accuracy_table(inputs) or rubric_table(inputs)
                else ("No benchmark with published categories or rubrics.",),
                tables=tuple(t for t in (group_accuracy_table(inputs), rubric_table(inputs)) if t is not None)),
        Section("Format rate",
                notes=("Share of completions of the form <think>...</think><answer>X</answer>.",)
                if inputs.evals else (),
                tables=(format_table(inputs),) * bool(inputs.evals),
                figures=fig("format_rate")),
        Section("Timings", tables=(timing_table(summary),) * bool(summary["timings_s"]),
                notes=() if summary["timings_s"] else ("No timings recorded.",)),
    ]
    return Report(experiment=experiment, headline=headline(summary), sections=tuple(sections))


def rollouts_section(inputs: ReportInputs) -> Section:
    tables = [t for t in (dynamic_sampling_table(inputs.curves), *map(completions_table, inputs.curves))
              if t is not None]
    return Section("GRPO rollouts: sampled completions per step",
                   notes=("Completions sampled from each logged step with their reward terms; dynamic "
                          "sampling figures where a stage drops groups whose rewards all agree.",) if tables
                   else ("No completions were logged.",),
                   tables=tuple(tables))


def tracking_section(inputs: ReportInputs, report_dir: str) -> Section:
    links = tracking_links(inputs, report_dir)
    return Section("Experiment tracking", links=links,
                   notes=("Offline tracking folders per stage (open TensorBoard with `tensorboard --logdir`, "
                          "MLflow with `mlflow ui --backend-store-uri`, Trackio with `trackio show`, "
                          "upload W&B with `wandb sync`).",) if links
                   else ("No tracking integrations (experiment option track).",))


def _environment(autoescape: bool) -> Any:
    import jinja2

    from fleming_dsl.resources import resource_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "report")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=autoescape,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["markdown_table"] = markdown_table
    return env


def render_markdown(report: Report) -> str:
    return _environment(autoescape=False).get_template("report.md.j2").render(report=report)


def render_html(report: Report, folder: Path) -> str:
    images = {name: base64.b64encode((folder / name).read_bytes()).decode("ascii")
              for section in report.sections for name in section.figures}
    return _environment(autoescape=True).get_template("index.html.j2").render(
        report=report, images=images)
