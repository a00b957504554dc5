"""A job told to stop before its time limit (or preempted): stop cleanly, requeue, resume later.

SLURM sends `PREEMPT_SIGNAL` a lead time before a job's limit (`sbatch --signal`, from the
generated profiles), and a scheduler's preemption or `scancel --signal=URG JOBID` sends the same.
While a trainer runs inside `cooperative()`, the handler only raises a flag: the trainer's
callback (`runtime/train/preemption.py`) saves a checkpoint at the end of the step and stops.
Anywhere else the handler raises `Preempted` at once, and `atomic_output` removes what was half
written. Either way `run_job` then asks SLURM to requeue the job (`scontrol requeue`): it keeps its
job id, so Snakemake keeps waiting for it, and the next allocation resumes from the checkpoint
(or from the teacher cache). Outside SLURM the job exits 1 and a re-run resumes the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import PREEMPT_SIGNAL

SIGNAL = getattr(signal, f"SIG{PREEMPT_SIGNAL}")


class Preempted(JobError):
    """The job stopped on the signal; what it saved is in the message."""


class _State:
    requested = False
    cooperative = 0


_state = _State()


def requested() -> bool:
    """Whether the signal has arrived since the job started."""
    return _state.requested


def _handler(signum: int, _frame: Any) -> None:
    _state.requested = True
    if not _state.cooperative:
        raise Preempted(f"stopped by SIG{PREEMPT_SIGNAL} (time limit near, or preempted) "
                        "before its work was done; a re-run starts it again")


@contextlib.contextmanager
def on_signal() -> Iterator[None]:
    """Handle the signal while a job runs (main thread only; signals are delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.requested, _state.cooperative = False, 0
    previous = signal.signal(SIGNAL, _handler)
    try:
        yield
    finally:
        signal.signal(SIGNAL, previous)


@contextlib.contextmanager
def cooperative() -> Iterator[None]:
    """Within this block the signal only sets the flag: the caller stops at a safe point."""
    _state.cooperative += 1
    try:
        yield
    finally:
        _state.cooperative -= 1


def slurm_job_id(env: Mapping[str, str]) -> str | None:
    """The id `scontrol requeue` takes: `<array job>_<task>` for an array task, else the job's."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def requeue(env: Mapping[str, str] | None = None, run: Runner = _run) -> str:
    """Put this SLURM job back in the queue; returns what happened, for the job's last line."""
    job_id = slurm_job_id(os.environ if env is None else env)
    if job_id is None:
        return "not under SLURM: run the workflow again to resume"
    try:
        done = run(["scontrol", "requeue", job_id])
    except (OSError, subprocess.SubprocessError) as err:
        return f"could not requeue SLURM job {job_id} ({err}): run the workflow again to resume"
    if done.returncode != 0:
        return (f"could not requeue SLURM job {job_id} ({done.stderr.strip() or done.returncode}): "
                "run the workflow again to resume")
    return f"requeued SLURM job {job_id}: the next allocation resumes it"
