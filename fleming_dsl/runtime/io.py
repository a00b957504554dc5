"""What every job shares: atomic outputs, the metadata record, and one-line failures.

A job is `run(cfg: <Kind>Job, ctx: JobContext) -> None`. It reads only `cfg` and the inputs named
in it, writes each output through `atomic_output` (a temp path renamed into place on success, so
a killed job leaves nothing half-written), puts counts and metrics into `ctx`, and raises
`JobError` for input it cannot use. `fleming_dsl.runtime.jobs.run_job` then writes `cfg.meta`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from fleming_dsl.plan.jobconfig import JobBase


class JobError(Exception):
    """Input or config a job cannot use. The message is one line naming the file and the field."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: str | Path) -> str:
    """Content hash of a file, or of a directory tree (relative names and file hashes)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(child.relative_to(path).as_posix().encode() + b"\0")
        digest.update(sha256_file(child).encode() + b"\n")
    return digest.hexdigest()


def _temp_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_output(final: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `final`; rename it over `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(final)
    _remove(temp)
    if directory:
        temp.mkdir()
    try:
        yield temp
    except BaseException:
        _remove(temp)
        raise
    if final.exists():
        _remove(final)
    os.replace(temp, final)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a job runs, so `atomic_output` removes its temp files.

    `scancel` and SLURM time limits send SIGTERM; Python's default action kills the process
    without unwinding, which would leave `.x.tmp-<pid>` files behind. The old handler returns after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_json(path: str | Path, data: Any) -> None:
    with atomic_output(path) as temp:
        temp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with atomic_output(path) as temp, open(temp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line is a JobError naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise JobError(f"{path}:{number}: not valid JSON ({err.msg})") from None
    return rows


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
            "kind": getattr(cfg, "kind", ""),
            "experiment": cfg.experiment,
            "config_sha256": self.config_sha256,
            "inputs": {p: sha256_path(p) for p in self.inputs if Path(p).exists()},
            "counts": self.counts,
            "metrics": self.metrics,
            "timings": {**self.timings, "total_s": round(time.monotonic() - self.started, 3)},
            "versions": library_versions(),
        }
