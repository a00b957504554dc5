"""Fixtures and helpers for the tests that run Snakemake against the test SLURM cluster (two nodes).

The session fixture `slurm_cluster` starts the cluster with `tests/slurm/cluster.sh start` and
stops it at the end unless it was already running (or FLEMING_KEEP_SLURM=1). Without root the
tests are skipped: the script installs Debian packages and starts slurmctld/slurmd.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PARTITION = "debug"

# What the two executors print when they submit (snakemake-executor-plugin-slurm 2.x and
# cluster-generic 1.0.x): the SLURM job id and, for the slurm plugin, the job's log file. A
# group job is named by a uuid instead of a number ("Submitted group job <uuid> with ...").
SLURM_SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: ([^)]+)\)")
# A job array (--slurm-array-jobs): one SLURM job, one task per Snakemake job.
ARRAY_SUBMITTED = re.compile(r"Submitted array job with Snakemake IDs [\d,]+ and SLURM job ID "
                             r"(\d+)\. The individual task IDs are (\d+)-(\d+)\.")
GENERIC_SUBMITTED = re.compile(
    r"Submitted (?:group )?job [\w-]+ with external jobid '(\d+)(?:;[^']*)?'")

# Fast status polling for tests: the first check after 1 s (the plugin then backs off by 10 s
# while nothing finishes). Finished jobs stay visible to squeue for MinJobAge=600 s.
SLURM_ARGS = (
    "--executor", "slurm", "--jobs", "4", "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "10",
)
STATUS_CMD = f"{sys.executable} -m fleming_dsl.review.slurm_status"
GENERIC_ARGS = (
    "--executor", "cluster-generic", "--jobs", "4", "--latency-wait", "10",
    "--seconds-between-status-checks", "2",
    "--cluster-generic-status-cmd", STATUS_CMD, "--cluster-generic-cancel-cmd", "scancel",
)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("SLURM tests need root: tests/slurm/cluster.sh installs munge/slurmctld/"
                    "slurmd from Debian and starts them (CI runs as root)")


def cluster(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLUSTER_SH), command], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """A running two-node cluster (fleming-n1, fleming-n2); yields the partition to submit to."""
    need_root()
    was_up = cluster("status").returncode == 0
    started = cluster("start")
    assert started.returncode == 0, started.stderr
    yield PARTITION
    if not was_up and os.environ.get("FLEMING_KEEP_SLURM") != "1":
        stopped = cluster("stop")
        assert stopped.returncode == 0, stopped.stderr


def snakemake(workdir: Path, *args: str, timeout: int = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in `workdir`; stdout and stderr together in `.stdout`."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          env=env)


def submitted_ids(output: str) -> list[str]:
    """SLURM job ids that Snakemake reported submitting, in order (either executor); an array's
    tasks as `<array job>_<task>`."""
    ids = [m.group(1) for m in SLURM_SUBMITTED.finditer(output)]
    ids += [f"{m.group(1)}_{task}" for m in ARRAY_SUBMITTED.finditer(output)
            for task in range(int(m.group(2)), int(m.group(3)) + 1)]
    return ids + [m.group(1) for m in GENERIC_SUBMITTED.finditer(output)]


def job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (MinJobAge keeps finished jobs there for 10 minutes)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def wait_for_job(predicate, timeout: float = 120.0) -> dict[str, str]:
    """Poll squeue until a job's fields (id, name, comment, state and workdir: the folder it was
    submitted from, which tells apart the same job of two projects) satisfy `predicate`; returns
    those fields."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "--noheader", "--states=all",
                              "--format=%i|%T|%Z|%j|%k"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            job_id, state, workdir, name, comment = line.strip().split("|", 4)
            fields = {"id": job_id, "name": name, "comment": comment, "state": state,
                      "workdir": workdir}
            if predicate(fields):
                return fields
        time.sleep(0.5)
    raise AssertionError(f"no SLURM job matched within {timeout} s")


def run_concurrently(scenarios: dict[str, Callable[[], object]]) -> dict[str, BaseException | None]:
    """Run each scenario in its own thread and wait for all: name -> the exception it raised, or
    None. Scenarios that submit to SLURM spend most of their time waiting for the executor's
    next status check (the slurm plugin waits 1 s, then 10 s longer each time nothing finished),
    not on the CPU, so their waits overlap instead of adding up. A test re-raises its own
    scenario's exception, so each failure is still reported by the test it belongs to."""
    with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
        futures = {name: pool.submit(scenario) for name, scenario in scenarios.items()}
    return {name: future.exception() for name, future in futures.items()}


def outcome(outcomes: dict[str, BaseException | None], name: str) -> None:
    """Pass if scenario `name` of `run_concurrently` passed; else raise what it raised."""
    if outcomes[name] is not None:
        raise outcomes[name]
