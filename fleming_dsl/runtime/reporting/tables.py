"""The report's tables as plain rows of text, shared by the markdown and HTML renderers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleming_dsl.runtime.reporting.collect import ReportInputs
from fleming_dsl.ir import BUCKETS
from fleming_dsl.runtime.data.items import MEDXPERTQA_GROUPS
from fleming_dsl.runtime.reporting.summary import ordered

MISSING = "-"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def named_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {fmt(value)}" for name, value in values.items()) or MISSING


def markdown_table(table: Table) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [line(table.headers), line(tuple("---" for _ in table.headers))]
    lines += [line(row) for row in table.rows]
    return "\n".join(lines)


def funnel_table(summary: dict[str, Any]) -> Table:
    return Table(("stage", "items", "removed"), tuple(
        (row["stage"], fmt(row["count"]), fmt(row.get("removed"))) for row in summary["funnel"]))


def filter_table(job: str, figures: dict[str, Any]) -> Table:
    rows = [("input", fmt(figures["input"]))]
    rows += [(f"removed by {step}", fmt(n)) for step, n in figures["removed"].items()]
    rows += [("sent to review", fmt(figures["review"])), ("kept", fmt(figures["kept"]))]
    return Table((f"{job}", "items"), tuple(rows))


def distill_table(job: str, figures: dict[str, Any]) -> Table:
    rows = [("protocol", figures["protocol"]), ("input", fmt(figures["input"]))]
    rows += [(f"solved in round {r}" if r != "never" else "never solved", fmt(n))
             for r, n in figures["solved"].items()]
    rows += [(f"continued with {name}", fmt(n)) for name, n in figures["strategies"].items()]
    if figures["searches"]:
        rows += [(f"searches {how}", fmt(n)) for how, n in figures["rewrites"].items()]
        rows += [("words per joined search, before rewrite",
                  fmt(figures["words_before"] / figures["searches"], 1)),
                 ("words per joined search, after rewrite",
                  fmt(figures["words_after"] / figures["searches"], 1))]
    rows.append(("kept", fmt(figures["kept"])))
    return Table((job, "items"), tuple(rows))


def bucket_table(figures: dict[str, Any]) -> Table:
    buckets = ordered(list({**figures["buckets"], **figures["pass_rate_by_bucket"]}),
                      BUCKETS)
    if figures.get("difficulty_method") == "grader":  # levels a grader gave, not pass rates
        return Table(("grader level", "items"), tuple(
            (bucket, fmt(figures["buckets"].get(bucket))) for bucket in buckets))
    return Table(("bucket", "items", "pass rate"), tuple(
        (bucket, fmt(figures["buckets"].get(bucket)),
         fmt(figures["pass_rate_by_bucket"].get(bucket))) for bucket in buckets))


def grpo_table(summary: dict[str, Any]) -> Table:
    rows = []
    for stage, figures in summary["grpo"].items():
        rows.append((
            stage, fmt(figures["steps"]), fmt(figures["final_reward"]),
            fmt(figures["max_reward"]), named_values(figures["final_rewards"]),
            named_values({**figures["final_buckets"],
                          **{f"mined {side}": v for side, v in figures["final_mined_rewards"].items()}}),
            fmt(figures["final_pool_pass_rate"]),
            figures["stopped_by"] or MISSING,
        ))
    return Table(("stage", "steps", "final reward", "max reward", "final reward per term",
                  "final reward per bucket", "pool pass rate", "stopped by"), tuple(rows))


def sft_table(summary: dict[str, Any]) -> Table:
    return Table(("stage", "steps", "final loss", "stopped by"), tuple(
        (stage, fmt(figures["steps"]), fmt(figures["final_loss"]), figures["stopped_by"] or MISSING)
        for stage, figures in summary["sft"].items()))


def accuracy_cell(benchmark: dict[str, Any] | None) -> str:
    if benchmark is None:
        return MISSING
    lo, hi = benchmark["ci95"]
    return f"{fmt(benchmark['accuracy'])} [{fmt(lo)}, {fmt(hi)}]"


def accuracy_table(inputs: ReportInputs) -> Table:
    """Benchmarks down, targets across; each cell accuracy [Wilson 95% interval]."""
    targets = [result.target for result in inputs.evals]
    names: dict[str, None] = {}
    for result in inputs.evals:
        names.update(dict.fromkeys(result.benchmarks))
    rows = []
    for name in names:
        n = next(r.benchmarks[name]["n"] for r in inputs.evals if name in r.benchmarks)
        rows.append((name, fmt(n), *(accuracy_cell(r.benchmarks.get(name)) for r in inputs.evals)))
    rows.append(("mean", MISSING, *(fmt(r.accuracy_mean) for r in inputs.evals)))
    return Table(("benchmark", "n", *targets), tuple(rows))


def answered_by_table(inputs: ReportInputs) -> Table | None:
    """How the right answers named their option: by letter and (accept = text) by its text;
    None when no evaluation recorded it."""
    if not any("correct_by" in b for r in inputs.evals for b in r.benchmarks.values()):
        return None
    names: dict[str, None] = {}
    for result in inputs.evals:
        names.update(dict.fromkeys(result.benchmarks))

    def cell(bench: dict[str, Any] | None) -> str:
        by = (bench or {}).get("correct_by")
        return MISSING if by is None else f"{by.get('letter', 0)} / {by.get('text', 0)}"

    return Table(("right answers: letter / text", *(r.target for r in inputs.evals)), tuple(
        (name, *(cell(r.benchmarks.get(name)) for r in inputs.evals)) for name in names))


def format_table(inputs: ReportInputs) -> Table:
    return Table(("target", "format rate", "mean accuracy"), tuple(
        (r.target, fmt(r.format_rate), fmt(r.accuracy_mean)) for r in inputs.evals))


def timing_table(summary: dict[str, Any]) -> Table:
    return Table(("job", "seconds"), tuple(
        (job, fmt(seconds, 1)) for job, seconds in summary["timings_s"].items()))




def group_accuracy_table(inputs: ReportInputs) -> Table | None:
    """Accuracy per published category (MedXpertQA's medical task, body system, question type)."""
    rows = []
    for result in inputs.evals:
        for bench, summary in result.benchmarks.items():
            for field in MEDXPERTQA_GROUPS:
                for value, figures in (summary.get(f"by_{field}") or {}).items():
                    rows.append((result.target, bench, field, str(value), fmt(figures.get("n")),
                                 fmt(figures.get("accuracy"))))
    if not rows:
        return None
    return Table(("target", "benchmark", "category", "value", "items", "accuracy"), tuple(rows))


def rubric_table(inputs: ReportInputs) -> Table | None:
    """Rubric benchmarks (HealthBench layout): the graded score, clipped to [0, 1] as published."""
    rows = [(result.target, bench, fmt(figures.get("n")), fmt(figures.get("score")),
             fmt(figures.get("unreadable_verdicts")))
            for result in inputs.evals for bench, figures in result.rubric.items() if isinstance(figures, dict)]
    if not rows:
        return None
    return Table(("target", "rubric benchmark", "items", "score", "unreadable grader verdicts"), tuple(rows))


def p_value(p: float) -> str:
    """Small p-values in scientific notation (0.000 would hide how small)."""
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def difference(figures: dict[str, Any]) -> str:
    lo, hi = figures["difference_ci95"]
    return f"{figures['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def paired_table(summary: dict[str, Any]) -> Table:
    """Each benchmark, each stage against the one before it (then RL against the cold start),
    on the same items."""
    return Table(("benchmark", "stage", "items", "gained", "lost", "difference [paired bootstrap 95%]",
                  "exact McNemar p"), tuple(
        (row["benchmark"], f"{row['before']} -> {row['after']}", fmt(row["n"]), fmt(row["gained"]),
         fmt(row["lost"]), difference(row), p_value(row["p_value_mcnemar"]))
        for row in summary["paired"]))


def answers_table(target: str, shown: list[dict[str, Any]]) -> Table:
    return Table((f"{target}: benchmark", "question", "model's answer", "gold", "right"), tuple(
        (row["benchmark"], row["question"] or MISSING, row["answer"], row["gold"],
         "yes" if row["correct"] else "no") for row in shown))


def mining_table(stage: str, rounds: list[dict[str, Any]]) -> Table:
    """A mined stage per round: the pool's estimated pass rate, the mix, and how many of the
    previous round's mined failures the policy solved by this estimate."""
    def flipped(row: dict[str, Any]) -> str:
        if not row["previous_mined_failed"]:
            return MISSING
        return (f"{fmt(row['previous_flipped_to_solved'])} of {fmt(row['previous_remeasured'])} "
                f"re-measured ({fmt(row['previous_mined_failed'])} mined)")

    return Table((f"{stage}: round", "pool pass rate (estimated)", "items estimated so far",
                  "mined failed + solved", "previous round's failures now solved"), tuple(
        ("after training" if row["closing"] else fmt(row["round"]), fmt(row["pool_pass_rate"]),
         fmt(row["known"]),
         MISSING if row["closing"] else f"{fmt(row['failed'])} + {fmt(row['solved'])}", flipped(row))
        for row in rounds))
