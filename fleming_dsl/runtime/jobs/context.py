"""What a running job records about itself, written beside its output as `<output>.meta.json`.

A job is `run(cfg: <Kind>Job, ctx: JobContext) -> None`. It reads only `cfg` and the inputs named
in it, writes each output through `runtime.io.atomic_output`, puts counts and metrics into `ctx`,
and raises `JobError` for input it cannot use. `runtime.jobs.run_job` then writes `cfg.meta`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from fleming_dsl.hashing import sha256_path
from fleming_dsl.plan.jobconfig import JobBase

_LIBRARIES = ("fleming-dsl", "torch", "transformers", "trl", "peft", "accelerate", "deepspeed",
              "vllm", "numpy", "numba", "networkx", "tokenizers", "datasketch")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def hardware() -> dict[str, int]:
    """What the job ran on, for `fleming cost` to scale by: GPUs in use (one per rank when torch
    sees CUDA; torch is asked only if the job imported it) and ranks."""
    from fleming_dsl.runtime import ranks

    torch = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_available()
    return {"gpus": ranks.world_size() if cuda else 0, "ranks": ranks.world_size()}


def process_started() -> float:
    """`time.monotonic()` when this process began (Linux: /proc/self/stat), so a job's `total_s`
    counts the interpreter's start, the config and the imports (torch, transformers): seconds a
    short job's own timer would miss, and `fleming cost` would leave out. Elsewhere: now."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(after_name[19])  # field 22, starttime, in clock ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
    return time.monotonic() - min(max(0.0, age), 3600.0)  # a sane bound on a clock mix-up


def cpu_seconds() -> float:
    """CPU time this process and its finished children used (user + system): the job's work,
    which other processes on a shared machine do not stretch as they stretch its wall time."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 3)


@dataclass
class JobContext:
    """What a running job records about itself; written to `cfg.meta` when it finishes."""

    config: JobBase
    config_sha256: str
    inputs: tuple[str, ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)  # `fleming job`: process_started()
    kind: str = ""  # recorded kind when not the config's: a gather records its task's
    startup_s: float = 0.0  # from the process's start to this context: part of total_s
    # inputs do not change while their job runs: hashed once, for the run key and the record
    _input_hashes: dict[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.startup_s = round(time.monotonic() - self.started, 3)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.monotonic() - start, 3)

    def input_hashes(self) -> dict[str, str]:
        if self._input_hashes is None:
            self._input_hashes = {p: sha256_path(p) for p in self.inputs if Path(p).exists()}
        return self._input_hashes

    def run_key(self) -> str:
        """What this run trains from: its config and its inputs' content. A checkpoint left by a
        run with another key is not this run's to resume (`resume_checkpoint`)."""
        return hashlib.sha256(json.dumps([self.config_sha256, self.input_hashes()],
                                         sort_keys=True).encode()).hexdigest()

    def record(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "job": cfg.job,
            "kind": self.kind or getattr(cfg, "kind", ""),
            "experiment": cfg.experiment,
            "config_sha256": self.config_sha256,
            "inputs": self.input_hashes(),
            "counts": self.counts,
            "metrics": self.metrics,
            "timings": {**self.timings, "startup_s": self.startup_s, "cpu_s": cpu_seconds(),
                        "total_s": round(time.monotonic() - self.started, 3)},
            "versions": library_versions(),
            "hardware": hardware(),
        }
