"""The report's figures: matplotlib `Figure` objects (Agg, no pyplot state), saved as PNG.

Each `plot_*` takes collected records, writes one PNG into `folder` and returns its file name,
or None when there is nothing of that kind to show. A GRPO stage that logged no step still gets
its panel, saying so, so an early stop is visible rather than silently missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleming_dsl.runtime.reporting.collect import ReportInputs, StageCurve
from fleming_dsl.ir import BUCKETS
from fleming_dsl.runtime.reporting.summary import ordered, term_name

_BUCKET_COLOURS = dict(zip(BUCKETS, ("#2ca02c", "#ff7f0e", "#d62728")))  # green to red


def _figure(panels: int, height: float = 3.6) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 4.6 * panels), height), dpi=110, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Any, folder: Path, name: str) -> str:
    # No "Software" stamp: the same run gives the same bytes.
    fig.savefig(folder / name, format="png", metadata={"Software": None})
    return name


def _step_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_rewards(curves: tuple[StageCurve, ...], grpo: dict[str, dict[str, Any]],
                 folder: Path) -> str | None:
    """Per stage: total reward (solid) and each reward term (dashed) over training steps, and
    how the stage stopped (plateau at step N, max_steps) in its title."""
    if not curves:
        return None
    fig, axes = _figure(len(curves))
    for ax, curve in zip(axes, curves):
        stopped = (grpo.get(curve.stage) or {}).get("stopped_by")
        ax.set_title(f"GRPO stage {curve.stage}: reward per step"
                     + (f"\nstopped by {stopped}" if stopped else ""))
        steps, values = curve.series("reward")
        if not steps:
            _empty(ax, "no steps logged")
            continue
        ax.plot(steps, values, marker="o", markersize=3, linewidth=2, label="total", color="k")
        for key in curve.keys("rewards/"):
            ax.plot(*curve.series(key), linestyle="--", linewidth=1.2, label=term_name(key))
        _step_axis(ax)
        ax.set_ylabel("mean reward")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, folder, "rewards.png")


def plot_sft_loss(sft: dict[str, dict[str, Any]], folder: Path) -> str | None:
    """Per SFT stage: the training loss at each logged step, and where it stopped."""
    if not sft:
        return None
    fig, axes = _figure(len(sft))
    for ax, (stage, figures) in zip(axes, sft.items()):
        ax.set_title(f"SFT stage {stage}: loss per step")
        if not figures["loss_curve"]:
            _empty(ax, "no loss logged")
            continue
        steps, losses = zip(*figures["loss_curve"])
        ax.plot(steps, losses, linewidth=1.2, color="k",
                label=f"stopped by {figures['stopped_by']}" if figures["stopped_by"] else "loss")
        _step_axis(ax)
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, folder, "sft_loss.png")


def plot_bucket_rewards(curves: tuple[StageCurve, ...], folder: Path) -> str | None:
    """Per stage: mean reward of each difficulty bucket, in a mined stage on the round's mined
    failures and mined solved items, and the mined pool's pass rate."""
    if not curves:
        return None
    fig, axes = _figure(len(curves))
    for ax, curve in zip(axes, curves):
        ax.set_title(f"{curve.stage}: reward per bucket")
        keys = curve.keys("bucket/")
        mined = curve.keys("mined/")
        pool_steps, pool = curve.series("pool_pass_rate")
        if not keys and not mined and not pool_steps:
            # rewards are split by each item's `difficulty`: a pool without a difficulty step
            # has none (the rows are still there, per term, in rewards.png)
            _empty(ax, "no item of this stage's data has a difficulty\n"
                       "(add a difficulty step to the filter it trains on)")
            continue
        for bucket in ordered([term_name(k) for k in keys], BUCKETS):
            ax.plot(*curve.series(f"bucket/{bucket}"), marker="o", markersize=3,
                    label=bucket, color=_BUCKET_COLOURS.get(bucket))
        for key in mined:
            ax.plot(*curve.series(key), linestyle="--", marker="^", markersize=3,
                    label=f"mined {term_name(key)}",
                    color=_BUCKET_COLOURS["hard" if key.endswith("failed") else "easy"])
        if pool_steps:
            ax.plot(pool_steps, pool, linestyle=":", marker="s", markersize=3, color="k",
                    label="pool pass rate")
        _step_axis(ax)
        ax.set_ylabel("mean reward / pass rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, folder, "bucket_rewards.png")


def plot_mining(mining: dict[str, list[dict[str, Any]]], folder: Path) -> str | None:
    """Per mined stage and round: the pool's estimated pass rate, and the share of the previous
    round's re-measured mined failures that the policy now solves."""
    if not mining:
        return None
    fig, axes = _figure(len(mining))
    for ax, (stage, rounds) in zip(axes, mining.items()):
        ax.set_title(f"{stage}: mining per round")
        labels = ["end" if row["closing"] else str(row["round"]) for row in rounds]
        xs = list(range(len(rounds)))
        pool = [(x, row["pool_pass_rate"]) for x, row in zip(xs, rounds) if row["pool_pass_rate"] is not None]
        if pool:
            ax.plot(*zip(*pool), marker="s", color="k", label="pool pass rate")
        flips = [(x, row["previous_flipped_to_solved"] / row["previous_remeasured"])
                 for x, row in zip(xs, rounds) if row["previous_remeasured"]]
        if flips:
            ax.bar(*zip(*flips), width=0.4, color="#2ca02c", alpha=0.7,
                   label="previous failures now solved")
        ax.set_xticks(xs, labels)
        ax.set_xlabel("round")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, folder, "mining.png")


def plot_difficulty(filters: dict[str, dict[str, Any]], folder: Path) -> str | None:
    """Items per difficulty bucket and their mean pass rate, per filter job."""
    annotated = {job: f for job, f in filters.items() if f["buckets"] or f["pass_rate_by_bucket"]}
    if not annotated:
        return None
    fig, (count_ax, rate_ax) = _figure(2)
    width = 0.8 / len(annotated)
    for index, (job, figures) in enumerate(annotated.items()):
        buckets = ordered(list({**figures["buckets"], **figures["pass_rate_by_bucket"]}),
                          BUCKETS)
        xs = [i + index * width for i in range(len(buckets))]
        counts = [figures["buckets"].get(b, 0) for b in buckets]
        rates = [figures["pass_rate_by_bucket"].get(b, 0.0) for b in buckets]
        colours = [_BUCKET_COLOURS.get(b, "#1f77b4") for b in buckets]
        count_ax.bar(xs, counts, width=width, color=colours, edgecolor="k", label=job)
        if figures.get("difficulty_method") != "grader":  # a grader's levels have no pass rate
            rate_ax.bar(xs, rates, width=width, color=colours, edgecolor="k", label=job)
        for ax in (count_ax, rate_ax):
            ax.set_xticks([i + (len(annotated) - 1) * width / 2 for i in range(len(buckets))],
                          buckets)
    count_ax.set_title("items per difficulty bucket")
    count_ax.set_ylabel("items")
    rate_ax.set_title("pass rate per difficulty bucket")
    rate_ax.set_ylabel("pass rate")
    rate_ax.set_ylim(0, 1)
    return _save(fig, folder, "difficulty.png")


def plot_accuracy(inputs: ReportInputs, folder: Path) -> str | None:
    """The ablation: accuracy per evaluated model (x, in the spec's order: base, cold start,
    RL stages), one line per benchmark, with Wilson 95% interval error bars."""
    if not inputs.evals:
        return None
    targets = [result.target for result in inputs.evals]
    names = list(dict.fromkeys(n for r in inputs.evals for n in r.benchmarks))
    fig, (ax,) = _figure(1, height=4.0)
    fig.set_figwidth(max(6.0, 1.4 * len(targets) + 3))
    for offset, name in enumerate(names):
        xs, acc, below, above = [], [], [], []
        for index, result in enumerate(inputs.evals):
            if name in result.benchmarks:
                bench = result.benchmarks[name]
                # a small sideways shift keeps overlapping error bars readable
                xs.append(index + (offset - (len(names) - 1) / 2) * 0.06)
                acc.append(bench["accuracy"])
                below.append(max(0.0, bench["accuracy"] - bench["ci95"][0]))
                above.append(max(0.0, bench["ci95"][1] - bench["accuracy"]))
        ax.errorbar(xs, acc, yerr=[below, above], capsize=4, marker="o", label=name)
    ax.axhline(0.25, color="grey", linestyle=":", linewidth=1, label="chance, 4 options")
    ax.set_xticks(range(len(targets)), targets)
    ax.set_ylim(0, 1)
    ax.set_xlabel("model (evaluation order of the spec)")
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_title("ablation: benchmark accuracy per stage")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="benchmark")
    return _save(fig, folder, "accuracy.png")


def plot_format_rate(inputs: ReportInputs, folder: Path) -> str | None:
    """Share of completions in the trained <think>..</think><answer>X</answer> shape."""
    if not inputs.evals:
        return None
    fig, (ax,) = _figure(1)
    targets = [r.target for r in inputs.evals]
    rates = [r.format_rate for r in inputs.evals]
    bars = ax.bar(targets, rates, color="#1f77b4", edgecolor="k")
    ax.bar_label(bars, labels=[f"{rate:.2f}" for rate in rates], padding=2)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("format rate")
    ax.set_title("well-formed answers per target")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, folder, "format_rate.png")


def plot_funnel(summary: dict[str, Any], folder: Path) -> str | None:
    """Items after each data stage, and what was removed: items the distillation never solved
    (a fallible teacher's search), then each filter step (all jobs)."""
    removed: dict[str, int] = {}
    never = sum(figures["solved"].get("never", 0) for figures in summary["distill"].values())
    if never:
        removed["never solved"] = never
    for figures in summary["filters"].values():
        for step, count in figures["removed"].items():
            removed[step] = removed.get(step, 0) + count
        if figures["review"]:
            removed["review"] = removed.get("review", 0) + figures["review"]
    if not summary["funnel"] and not removed:
        return None
    fig, (funnel_ax, removed_ax) = _figure(2)
    stages = [row["stage"] for row in summary["funnel"]]
    counts = [row["count"] for row in summary["funnel"]]
    if stages:
        bars = funnel_ax.bar(stages, counts, color="#9467bd", edgecolor="k")
        funnel_ax.bar_label(bars, padding=2)
        funnel_ax.set_ylabel("items")
        funnel_ax.margins(y=0.15)
    else:
        _empty(funnel_ax, "no data job counts")
    funnel_ax.set_title("data funnel")
    if removed:
        bars = removed_ax.bar(list(removed), list(removed.values()), color="#8c564b",
                              edgecolor="k")
        removed_ax.bar_label(bars, padding=2)
        removed_ax.set_ylabel("items removed")
        removed_ax.margins(y=0.15)
        removed_ax.tick_params(axis="x", labelrotation=20)
    else:
        _empty(removed_ax, "no filter removals")
    removed_ax.set_title("removed: distillation, then each filter step")
    return _save(fig, folder, "funnel.png")


def plot_all(inputs: ReportInputs, summary: dict[str, Any], folder: Path) -> dict[str, str]:
    """Every figure that has data: {section: PNG file name}."""
    made = {
        "sft_loss": plot_sft_loss(summary["sft"], folder),
        "rewards": plot_rewards(inputs.curves, summary["grpo"], folder),
        "bucket_rewards": plot_bucket_rewards(inputs.curves, folder),
        "mining": plot_mining(summary["mining"], folder),
        "difficulty": plot_difficulty(summary["filters"], folder),
        "accuracy": plot_accuracy(inputs, folder),
        "format_rate": plot_format_rate(inputs, folder),
        "funnel": plot_funnel(summary, folder),
    }
    return {section: name for section, name in made.items() if name}
