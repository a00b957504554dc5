"""What a running job records about itself, written beside its output as `<output>.meta.json`.

A job is `run(cfg: <Kind>Job, ctx: JobContext) -> None`. It reads only `cfg` and the inputs named
in it, writes each output through `runtime.io.atomic_output`, puts counts and metrics into `ctx`,
and raises `JobError` for input it cannot use. `runtime.jobs.run_job` then writes `cfg.meta`.
"""

from __future__ import annotations

import contextlib
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


@dataclass
class JobContext:
    """What a running job records about itself; written to `cfg.meta` when it finishes."""

    config: JobBase
    config_sha256: str
    inputs: tuple[str, ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    kind: str = ""  # recorded kind when not the config's: a gather records its task's

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.monotonic() - start, 3)

    def record(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "job": cfg.job,
            "kind": self.kind or getattr(cfg, "kind", ""),
            "experiment": cfg.experiment,
            "config_sha256": self.config_sha256,
            "inputs": {p: sha256_path(p) for p in self.inputs if Path(p).exists()},
            "counts": self.counts,
            "metrics": self.metrics,
            "timings": {**self.timings, "total_s": round(time.monotonic() - self.started, 3)},
            "versions": library_versions(),
            "hardware": hardware(),
        }
