"""The multi-node launch wrapper for training jobs under SLURM, and its host/rank arithmetic.

A training rule with `nodes > 1` (or several GPUs) runs a rendered `train.sh` instead of its
command. Under SLURM the script re-runs itself through `srun` once per node; each copy starts one
launcher (`accelerate launch` or `torchrun`) with the node's rank `$SLURM_NODEID` and the
rendezvous address of the first host of `$SLURM_JOB_NODELIST`. Outside SLURM it runs the command
directly. Everything here is pure except `main`, the tiny CLI the script falls back to when
`scontrol` is missing (`python -m fleming_dsl.emit.launch first-host 'gpu[01-03]'`).
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Literal

import jinja2

from fleming_dsl.errors import FlemingError
from fleming_dsl.resources import resource_dir

Launcher = Literal["accelerate", "torchrun"]
DEFAULT_PORT = 29500

# One bracket group: `[01-03,07]`; everything outside brackets is literal text.
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


class HostlistError(FlemingError, ValueError):
    """A SLURM nodelist string that cannot be expanded."""


# ---------------------------------------------------------------- hostlists


def _split_top_level(nodelist: str) -> list[str]:
    """Split on commas that are not inside brackets: `a[1,2],b` -> [`a[1,2]`, `b`]."""
    parts, depth, current = [], 0, []
    for char in nodelist:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"nodelist {nodelist!r}: ']' without '['")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise HostlistError(f"nodelist {nodelist!r}: '[' is never closed")
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _expand_range(item: str, nodelist: str) -> list[str]:
    """`07` -> [`07`]; `01-03` -> [`01`, `02`, `03`] (zero padding kept, as SLURM does)."""
    low, sep, high = item.partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise HostlistError(f"nodelist {nodelist!r}: range {item!r} is not N or N-M")
    if not sep:
        return [low]
    start, stop = int(low), int(high)
    if stop < start:
        raise HostlistError(f"nodelist {nodelist!r}: range {item!r} runs backwards")
    width = len(low)
    return [str(n).zfill(width) for n in range(start, stop + 1)]


def _expand_one(pattern: str, nodelist: str) -> list[str]:
    """Expand every bracket group of one host pattern (several groups multiply out)."""
    match = _BRACKET.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end():]
    choices = [value for item in match.group(1).split(",") if item.strip()
               for value in _expand_range(item.strip(), nodelist)]
    if not choices:
        raise HostlistError(f"nodelist {nodelist!r}: empty brackets")
    return [head + choice + rest for choice in choices for rest in _expand_one(tail, nodelist)]


def expand_hostlist(nodelist: str) -> list[str]:
    """The hosts of a SLURM nodelist, in order: `gpu[01-02],cpu5` -> [gpu01, gpu02, cpu5]."""
    hosts = [host for pattern in _split_top_level(nodelist)
             for host in _expand_one(pattern, nodelist)]
    if not hosts:
        raise HostlistError(f"nodelist {nodelist!r} names no host")
    return hosts


def first_host(nodelist: str) -> str:
    """The rendezvous host: the first host of the job's nodelist (what `scontrol` prints first)."""
    return expand_hostlist(nodelist)[0]


# ---------------------------------------------------------------- ranks


def processes_per_node(gpus_per_node: int) -> int:
    """One process per GPU; a CPU-only node still runs one process."""
    return max(gpus_per_node, 1)


def world_size(nodes: int, gpus_per_node: int) -> int:
    """Total processes across the job."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    return nodes * processes_per_node(gpus_per_node)


def global_rank(node_rank: int, local_rank: int, gpus_per_node: int) -> int:
    """The rank torch.distributed gives process `local_rank` on node `node_rank`."""
    per_node = processes_per_node(gpus_per_node)
    if not 0 <= local_rank < per_node:
        raise ValueError(f"local rank {local_rank} is outside 0..{per_node - 1}")
    return node_rank * per_node + local_rank


def node_ranks(nodelist: str, gpus_per_node: int) -> list[tuple[str, int, list[int]]]:
    """For each host: its node rank (= `$SLURM_NODEID`) and the global ranks it runs."""
    per_node = processes_per_node(gpus_per_node)
    return [(host, node, [global_rank(node, local, gpus_per_node) for local in range(per_node)])
            for node, host in enumerate(expand_hostlist(nodelist))]


# ---------------------------------------------------------------- the wrapper script


@dataclass(frozen=True)
class ServerPlan:
    """The vLLM server a GRPO stage in server mode starts before training (check/rollout.py)."""

    python_args: tuple[str, ...]  # after `python`: ("-m", "trl.cli.main", "vllm-serve", ...); --port is added
    nodes: int  # whole nodes under SLURM (0: it shares the first node, on its first `gpus` GPUs)
    gpus: int  # tensor x data parallel
    timeout_s: int  # seconds to wait for GET /health
    port: int = 8000  # trl vllm-serve's


@dataclass(frozen=True)
class LaunchPlan:
    """What one training rule's wrapper starts, and on how many nodes and GPUs."""

    name: str  # shown in the log lines, e.g. "tiny/sft"
    python_args: tuple[str, ...]  # after `python`: ("-m", "fleming_dsl.cli", "job", "sft", ...)
    nodes: int = 1
    gpus_per_node: int = 0
    launcher: Launcher = "accelerate"
    port: int = DEFAULT_PORT
    accelerate_config: str | None = None  # the emitted accelerate YAML (deepspeed plugin etc.)
    extra_launcher_args: tuple[str, ...] = field(default=())
    server: ServerPlan | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"{self.name}: nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ValueError(f"{self.name}: gpus must be >= 0, got {self.gpus_per_node}")
        if not self.python_args:
            raise ValueError(f"{self.name}: nothing to launch")
        if self.launcher not in ("accelerate", "torchrun"):
            raise ValueError(f"{self.name}: unknown launcher {self.launcher!r}")

    @property
    def processes_per_node(self) -> int:
        return processes_per_node(self.gpus_per_node)

    @property
    def world_size(self) -> int:
        return world_size(self.nodes, self.gpus_per_node)


@functools.lru_cache(maxsize=1)  # one compiled template per process, not one per rule
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "launch")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["sh"] = lambda value: shlex.quote(str(value))
    env.filters["sh_join"] = lambda values: " ".join(shlex.quote(str(v)) for v in values)
    return env


def render_wrapper(plan: LaunchPlan) -> str:
    """The bash wrapper for `plan` (deterministic: same plan, same bytes)."""
    return _environment().get_template("train.sh.j2").render(plan=plan)


# ---------------------------------------------------------------- CLI fallback for the script


def main(argv: list[str] | None = None) -> int:
    """`first-host NODELIST` or `hosts NODELIST`: used by train.sh when scontrol is missing."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("first-host", "hosts"):
        print("usage: python -m fleming_dsl.emit.launch first-host|hosts NODELIST", file=sys.stderr)
        return 2
    try:
        hosts = expand_hostlist(args[1])
    except HostlistError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(hosts[:1] if args[0] == "first-host" else hosts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
