"""The jobs table: every job of a plan as data, grouped into a handful of Snakemake rules.

The Snakefile holds one rule per job kind (per output shape, strictly), whose outputs are
patterns with one wildcard, `stem`: the part of the output paths that names the job
(`runs/tiny/data/{stem}.jsonl` for `sample_rare_dx`, stem `rare_dx`). Everything else a rule
declares per job (inputs, config, threads, resources, group, config hash) is looked up in
`jobs.json`, which this module builds. So the Snakefile's size, and the time Snakemake takes to
parse it, do not grow with the number of jobs; the table does, and it is plain JSON.

Rows are keyed by rule and stem, so a kind may hold any number of jobs, each with its own input
list (a gather job with N inputs is one row with N inputs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fleming_dsl.errors import PlanError
from fleming_dsl.plan.planner import Job


class TableError(PlanError, ValueError):
    """A job whose paths do not fit the one-wildcard rule shape (a planner bug)."""


@dataclass(frozen=True)
class Shape:
    """What a rule declares in its Snakefile text: the same for every job of the rule."""

    kind: str
    prefix: str  # literal text before {stem} in every output
    outputs: tuple[tuple[str, str, bool], ...]  # (key, tail after {stem}, is a directory)
    log: tuple[str, str]  # literal text before and after {stem}
    resources: tuple[str, ...]  # resource names, in emission order
    named_inputs: tuple[str, ...]
    grouped: bool
    launch: bool
    temps: tuple[str, ...] = ()  # output keys that are temp(): a shard's parts
    # the config input is ancient() for gathers and shards: a re-cut rewrites their configs
    # but changes no data (a real change changes the config hash, which `params` sees)
    ancient_config: bool = False

    def pattern(self, tail: str) -> str:
        return f"{self.prefix}{{stem}}{tail}"

    @property
    def log_pattern(self) -> str:
        return f"{self.log[0]}{{stem}}{self.log[1]}"


@dataclass(frozen=True)
class Placed:
    """One job as the workflow sees it: its rule shape, its stem and its table row."""

    job: Job
    stem: str
    shape: Shape
    row: dict[str, Any]


def stem_of(job: Job) -> tuple[str, str]:
    """(prefix, stem): the outputs' common folder, and the name they share up to the first dot."""
    paths = [o.path for o in job.outputs]
    common = os.path.commonprefix(paths)
    prefix = common[:common.rfind("/") + 1]
    stem = common[len(prefix):].split(".", 1)[0]
    if not stem or "{" in prefix or "}" in prefix:
        raise TableError(f"job '{job.name}': outputs {paths} share no name to use as a wildcard")
    return prefix, stem


def shape_of(job: Job, output_keys: list[str], resources: list[tuple[str, Any]],
             named_inputs: dict[str, str], grouped: bool, launch: bool) -> tuple[str, Shape]:
    prefix, stem = stem_of(job)
    outputs = tuple((key, out.path[len(prefix) + len(stem):], out.directory)
                    for key, out in zip(output_keys, job.outputs))
    at = job.log.rfind(stem)
    if at < 0:
        raise TableError(f"job '{job.name}': its log {job.log} does not name '{stem}'")
    shape = Shape(kind=job.kind, prefix=prefix, outputs=outputs,
                  log=(job.log[:at], job.log[at + len(stem):]),
                  resources=tuple(key for key, _ in resources),
                  named_inputs=tuple(named_inputs), grouped=grouped, launch=launch,
                  temps=tuple(key for key, out in zip(output_keys, job.outputs) if out.temp),
                  ancient_config=job.kind == "gather" or job.is_shard)
    return stem, shape


def overlaps(a: Shape, b: Shape) -> bool:
    """Whether a path could match both shapes. Stems hold no '/' or '.', and every tail is empty
    or starts with '.', so only shapes in the same folder with a tail in common can compete."""
    return a.prefix == b.prefix and bool({t for _, t, _ in a.outputs} & {t for _, t, _ in b.outputs})


def rule_names(shapes: list[Shape]) -> dict[Shape, str]:
    """A kind with one shape gets the kind as its rule name; otherwise kind_1, kind_2, ..."""
    by_kind: dict[str, list[Shape]] = {}
    for shape in shapes:
        by_kind.setdefault(shape.kind, [])
        if shape not in by_kind[shape.kind]:
            by_kind[shape.kind].append(shape)
    names = {}
    for kind, kind_shapes in by_kind.items():
        for index, shape in enumerate(kind_shapes, 1):
            names[shape] = kind if len(kind_shapes) == 1 else f"{kind}_{index}"
    return names


def group_labels(jobs: tuple[Job, ...]) -> dict[str, str]:
    """Job -> the label of its cluster group: the planner's group name and the jobs of its
    connected component (Snakemake submits each component as one cluster job), so the group id,
    the sbatch job name and the slurm plugin's comment all say which jobs a submission holds."""
    grouped = {job.name: job for job in jobs if job.group}
    producer = {out.path: job.name for job in grouped.values() for out in job.outputs}
    parent = {name: name for name in grouped}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for job in grouped.values():
        for path in job.inputs:
            other = producer.get(path)
            if other is not None and grouped[other].group == job.group:
                parent[find(other)] = find(job.name)
    members: dict[str, list[str]] = {}
    for name in grouped:  # plan order
        members.setdefault(find(name), []).append(name)
    labels = {}
    for names in members.values():
        shown = names if len(names) <= 4 else [*names[:3], f"{len(names) - 3}_more"]
        label = f"{grouped[names[0]].group}.{'+'.join(shown)}"
        labels.update({name: label for name in names})
    return labels
