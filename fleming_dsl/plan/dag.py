"""The job DAG of a plan, as DOT (Graphviz) or Mermaid text for `fleming graph`."""

from __future__ import annotations

import json

from fleming_dsl.plan.planner import Plan


def edges(plan: Plan) -> list[tuple[str, str]]:
    """(producer, consumer) for every job input written by another job, in plan order."""
    writer = {out.path: job.name for job in plan.jobs for out in job.outputs}
    found: dict[tuple[str, str], None] = {}
    for job in plan.jobs:
        for path in job.inputs:
            producer = writer.get(path)
            if producer is not None and producer != job.name:
                found[(producer, job.name)] = None
    return list(found)


def to_dot(plan: Plan) -> str:
    lines = [f"digraph {json.dumps(plan.experiment)} {{", "  rankdir=LR;",
             '  node [shape=box, style=rounded, fontname="Helvetica"];']
    for job in plan.jobs:
        label = f"{job.name}\\n{job.kind}"
        extra = ', color="darkorange"' if job.resources.gpus > 0 else ""
        lines.append(f'  {json.dumps(job.name)} [label="{label}"{extra}];')
    for producer, consumer in edges(plan):
        lines.append(f"  {json.dumps(producer)} -> {json.dumps(consumer)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(plan: Plan) -> str:
    lines = ["flowchart LR"]
    for job in plan.jobs:
        lines.append(f'  {job.name}["{job.name}<br/>{job.kind}"]')
    for producer, consumer in edges(plan):
        lines.append(f"  {producer} --> {consumer}")
    return "\n".join(lines) + "\n"


RENDERERS = {"dot": to_dot, "mermaid": to_mermaid}
