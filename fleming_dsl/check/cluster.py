"""Values that reach a shell: SLURM partition, account and QoS names.

The emitter quotes every such value (shlex at compile time, Snakemake's `:q` at submit time), so
quoting is not what these rules are for. They reject what no quoting makes safe or meaningful:
a SLURM partition, account or QoS name is a plain word (sbatch takes nothing else). The output
folder's rules (no braces, inside the project) live with the project boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from fleming_dsl import ir
from fleming_dsl.check.common import Checked
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast

CLUSTER_NAMES = ("partition", "gpu_partition", "account", "qos")
# What SLURM accepts in partition (comma-separated lists), account and QoS names.
_SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,:+=@-]*")


def _resources(block: ast.Block | None) -> Iterator[ast.Block]:
    for item in block.items if block else ():
        if isinstance(item, ast.Entry) and item.name.name == "resources" and item.block:
            yield item.block


def _named_options(program: ast.Program) -> Iterator[ast.Option]:
    yield from (o for o in program.cluster if o.key.name in CLUSTER_NAMES)
    for decl in program.decls:
        for block in _resources(getattr(decl, "block", None)):
            yield from (o for o in block.options() if o.key.name in CLUSTER_NAMES)


def shell_safe_cluster_names(checked: Checked) -> Iterator[Diagnostic]:
    for option in _named_options(checked.program):
        value = option.value
        if isinstance(value, ast.Str) and not _SLURM_NAME.fullmatch(value.value):
            yield Diagnostic(f"{option.key.name} {value.value!r} is not a SLURM name",
                             value.span, expected="letters, digits and _ . , : + = @ -",
                             hint="it is passed to sbatch; SLURM names hold no spaces, quotes "
                                  "or shell characters")


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def signal_lead_below_time_limits(checked: Checked) -> Iterator[Diagnostic]:
    """A long job's time limit must exceed the cluster's signal lead: SLURM would otherwise send
    the checkpoint-and-requeue signal as the job starts, and requeue it forever."""
    exp = checked.experiment
    lead = exp.cluster.signal_lead_s
    long_jobs = [("stage", s) for s in exp.stages] + [("evaluate", e) for e in exp.evaluations] + [
        ("distill", d) for d in exp.distill]
    default = ir.Resources().time_min * 60
    if default <= lead:
        at = next((o.value.span for o in checked.program.cluster if o.key.name == "signal_lead"), None)
        yield Diagnostic(
            f"signal_lead ({_duration(lead)}) is not shorter than the time limit of jobs that "
            f"declare none ({_duration(default)})", at,
            hint="SLURM would signal them to checkpoint and requeue as soon as they start; "
                 "lower signal_lead")
    for kind, decl in long_jobs:
        resources = decl.resources
        if resources is not None and resources.time_min * 60 <= lead:
            yield Diagnostic(
                f"{kind} '{decl.name}': its time limit ({_duration(resources.time_min * 60)}) is not "
                f"longer than the cluster's signal_lead ({_duration(lead)})", decl.span,
                hint="SLURM would signal it to checkpoint and requeue as soon as it starts; raise "
                     "its time or lower cluster { signal_lead = ... }")


signal_lead_below_time_limits.after_lowering = True  # type: ignore[attr-defined]

# An image reference: docker://, library://, oras:// URIs with tags and digests, or a .sif path.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")


def container_is_an_image(checked: Checked) -> Iterator[Diagnostic]:
    """The image reaches Apptainer's command line through Snakemake: a plain reference only."""
    for option in (*checked.program.header, *checked.program.cluster):
        value = option.value
        if option.key.name == "container" and isinstance(value, ast.Str) \
                and not _IMAGE.fullmatch(value.value):
            yield Diagnostic(f"container {value.value!r} is not an image reference", value.span,
                             expected="docker://REPO:TAG, library://..., or a path to a .sif",
                             hint="letters, digits and . _ / : @ + - only: it is passed to apptainer")
