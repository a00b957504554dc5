"""Values that reach a shell: SLURM partition, account and QoS names.

The emitter quotes every such value (shlex at compile time, Snakemake's `:q` at submit time), so
quoting is not what these rules are for. They reject what no quoting makes safe or meaningful:
a SLURM partition, account or QoS name is a plain word (sbatch takes nothing else). The output
folder's rules (no braces, inside the project) live with the project boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

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
