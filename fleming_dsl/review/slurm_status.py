"""The job-status command for `snakemake --executor cluster-generic` on SLURM.

    cluster-generic-status-cmd: python -m fleming_dsl.review.slurm_status

Snakemake calls it with one job id (what `sbatch --parsable` printed, maybe `id;cluster`) and
expects exactly one word: `running`, `success` or `failed`. Without a status command the
cluster-generic executor only learns that a job ended from marker files the job itself writes,
so a job killed by `scancel`, a time limit or the OOM killer would leave Snakemake waiting
forever. `squeue` answers with and without SLURM accounting (for MinJobAge seconds after the
end); `sacct` is the fallback for jobs squeue has forgotten, where accounting exists.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence

# States in which a job may still write its outputs (see `man squeue`, JOB STATE CODES).
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED",
})
SUCCESS_STATES = frozenset({"COMPLETED"})

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def bare_job_id(external_id: str) -> str:
    """`123;cluster` (sbatch --parsable on a multi-cluster site) -> `123`."""
    return external_id.strip().split(";", 1)[0]


def classify(state: str) -> str:
    """A SLURM job state (`RUNNING`, `CANCELLED by 0`, `FAILED`...) -> Snakemake's word."""
    word = state.strip().split()[0].rstrip("+").upper() if state.strip() else ""
    if word in ACTIVE_STATES:
        return "running"
    if word in SUCCESS_STATES:
        return "success"
    return "failed"


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)


def job_state(job_id: str, run: Runner = _run) -> str | None:
    """The job's state from squeue, else from sacct; None when neither knows the job."""
    squeue = run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"])
    if squeue.returncode == 0 and squeue.stdout.strip():
        return squeue.stdout.split()[0]
    try:
        sacct = run(["sacct", "--noheader", "--allocations", "--parsable2",
                     f"--jobs={job_id}", "--format=State"])
    except FileNotFoundError:
        return None
    if sacct.returncode == 0 and sacct.stdout.strip():
        return sacct.stdout.splitlines()[0]
    return None


def main(argv: Sequence[str] | None = None, run: Runner = _run) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m fleming_dsl.review.slurm_status JOBID", file=sys.stderr)
        return 2
    job_id = bare_job_id(args[0])
    state = job_state(job_id, run)
    if state is None:
        # Snakemake cannot tell "finished long ago" from "lost": report failure so the job is
        # retried or reported, never silently treated as done.
        print(f"slurm_status: SLURM has no record of job {job_id} (squeue forgot it after "
              "MinJobAge and sacct has no accounting); treating it as failed", file=sys.stderr)
        state = "UNKNOWN"
    print(classify(state))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
