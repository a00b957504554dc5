"""Snakemake against a real one-node SLURM cluster, on small handwritten workflows.

Both executors users have: the slurm plugin (`--executor slurm`, status from squeue because the
test cluster has no accounting) and the sbatch command line (`--executor cluster-generic`).
Then the failure paths: a failing job names its SLURM log; a job killed by `scancel` leaves no
partial output and a re-run finishes without redoing completed jobs.

All scenarios run at once, each in its own folder with its own job names: they mostly wait for
SLURM and the executors' status checks. Each test reports its own.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from slurm.harness import (  # noqa: F401  (slurm_cluster is a fixture)
    GENERIC_ARGS,
    SLURM_ARGS,
    job_fields,
    outcome,
    run_concurrently,
    slurm_cluster,
    snakemake,
    submitted_ids,
    wait_for_job,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TWO_RULES = """
rule all:
    input: "out/b.txt"

rule a:
    output: "out/a.txt"
    resources: mem_mb=200, runtime=5
    shell: "echo $SLURM_JOB_ID > {output}"

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    resources: mem_mb=300, runtime=5
    shell: "cat {input} > {output} && echo $SLURM_JOB_ID >> {output}"
"""


def _workflow(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / "Snakefile").write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


def _ran_as(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split()


EXECUTORS = ("slurm", "cluster-generic")


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory,
              slurm_cluster: str) -> dict[str, BaseException | None]:
    """Every scenario of this file, run at once: name -> what it raised, or None."""
    root = tmp_path_factory.mktemp("slurm-executors")
    run = functools.partial
    return run_concurrently({
        "slurm": run(_slurm_executor, root / "slurm", slurm_cluster),
        "cluster-generic": run(_cluster_generic, root / "generic", slurm_cluster),
        "failing": run(_failing_job, root / "failing", slurm_cluster),
        **{f"scancel-{executor}": run(_scancel_and_rerun, root / f"scancel-{executor}",
                                      slurm_cluster, executor) for executor in EXECUTORS},
    })


def test_slurm_executor_runs_each_rule_as_a_slurm_job(scenarios: dict) -> None:
    outcome(scenarios, "slurm")


def test_cluster_generic_submits_with_sbatch(scenarios: dict) -> None:
    outcome(scenarios, "cluster-generic")


def test_failing_job_names_its_slurm_log(scenarios: dict) -> None:
    outcome(scenarios, "failing")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_scancel_leaves_no_partial_output_and_rerun_resumes(scenarios: dict, executor: str) -> None:
    outcome(scenarios, f"scancel-{executor}")


def _slurm_executor(root: Path, slurm_cluster: str) -> None:
    workdir = _workflow(root, TWO_RULES)
    prefix = _prefix()
    result = snakemake(workdir, *SLURM_ARGS, "--slurm-jobname-prefix", prefix,
                       "--default-resources", f"slurm_partition={slurm_cluster}")
    assert result.returncode == 0, result.stdout[-4000:]
    ids = submitted_ids(result.stdout)
    assert len(ids) == 2, result.stdout[-4000:]
    # The job ids Snakemake logged are the ones the rules ran under, in dependency order.
    assert _ran_as(workdir / "out" / "b.txt") == ids
    a, b = (job_fields(i) for i in ids)
    assert (a["JobState"], a["Comment"], a["Partition"]) == ("COMPLETED", "rule_a", slurm_cluster)
    assert b["Comment"] == "rule_b"
    assert a["JobName"].startswith(prefix + "_")
    assert (a["MinMemoryNode"], b["MinMemoryNode"]) == ("200M", "300M")
    assert a["TimeLimit"] == "00:05:00"


def _cluster_generic(root: Path, slurm_cluster: str) -> None:
    workdir = _workflow(root, TWO_RULES)
    prefix = _prefix()
    submit = (f"mkdir -p logs/slurm && sbatch --parsable --partition={slurm_cluster} "
              f"--job-name={prefix}.{{rule}} --output=logs/slurm/{{rule}}-%j.out "
              "--cpus-per-task={threads} --mem={resources.mem_mb} --time={resources.runtime}")
    result = snakemake(workdir, *GENERIC_ARGS, "--cluster-generic-submit-cmd", submit)
    assert result.returncode == 0, result.stdout[-4000:]
    ids = submitted_ids(result.stdout)
    assert _ran_as(workdir / "out" / "b.txt") == ids and len(ids) == 2
    names = [job_fields(i)["JobName"] for i in ids]
    assert names == [f"{prefix}.a", f"{prefix}.b"]
    assert sorted(p.name for p in (workdir / "logs" / "slurm").iterdir()) == [
        f"a-{ids[0]}.out", f"b-{ids[1]}.out"]


FAILING = """
rule all:
    input: "out/never.txt"

rule broken:
    output: "out/never.txt"
    resources: mem_mb=100, runtime=5
    shell: "echo 'the reason it broke' >&2; exit 3"
"""


def _failing_job(root: Path, slurm_cluster: str) -> None:
    workdir = _workflow(root, FAILING)
    result = snakemake(workdir, *SLURM_ARGS, "--default-resources",
                       f"slurm_partition={slurm_cluster}")
    assert result.returncode != 0
    [job_id] = submitted_ids(result.stdout)
    log = workdir / ".snakemake" / "slurm_logs" / "rule_broken" / f"{job_id}.log"
    assert str(log) in result.stdout.split("Error in rule broken", 1)[1], result.stdout[-3000:]
    assert "the reason it broke" in log.read_text(encoding="utf-8")
    assert job_fields(job_id)["JobState"] == "FAILED"
    assert not (workdir / "out" / "never.txt").exists()


# `slow` writes its output through the project's atomic_output, line by line into a temp file
# renamed into place at the end, as every fleming job does.
CANCELLABLE = """
rule all:
    input: "out/slow.txt"

rule fast:
    output: "out/fast.txt"
    resources: mem_mb=100, runtime=5
    shell: "echo $SLURM_JOB_ID > {output}"

rule slow:
    input: "out/fast.txt"
    output: "out/slow.txt"
    resources: mem_mb=100, runtime=5
    params: seconds=config.get("seconds", 60)
    shell: "PYTHON -u slow_job.py {output} {params.seconds}"
"""

SLOW_JOB = """
import sys, time
from fleming_dsl.runtime.io import atomic_output, exit_on_sigterm

final, seconds = sys.argv[1], int(sys.argv[2])
with exit_on_sigterm(), atomic_output(final) as temp, open(temp, "w") as handle:
    for second in range(seconds):
        handle.write(f"{second}\\n")
        handle.flush()
        print("progress", second, flush=True)
        time.sleep(1)
"""


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "out").rglob("*") if p.is_file())


def _scancel_and_rerun(root: Path, slurm_cluster: str, executor: str) -> None:
    workdir = _workflow(root, CANCELLABLE.replace("PYTHON", sys.executable))
    (workdir / "slow_job.py").write_text(SLOW_JOB, encoding="utf-8")
    prefix = _prefix()
    if executor == "slurm":
        args = [*SLURM_ARGS, "--slurm-jobname-prefix", prefix,
                "--default-resources", f"slurm_partition={slurm_cluster}"]
        is_slow = lambda job: job["name"].startswith(prefix) and job["comment"] == "rule_slow"  # noqa: E731
    else:
        args = [*GENERIC_ARGS, "--cluster-generic-submit-cmd",
                f"sbatch --parsable --partition={slurm_cluster} --job-name={prefix}.{{rule}} "
                "--output=slurm-%j.out --mem={resources.mem_mb}"]
        is_slow = lambda job: job["name"] == f"{prefix}.slow"  # noqa: E731
    run = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=workdir, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        slow = wait_for_job(lambda job: is_slow(job) and job["state"] == "RUNNING")
        # Let it write a few lines into its temp file first: there is something partial to leak.
        assert _poll_temp(workdir), "the slow job never started writing"
        fast_record = (workdir / "out" / "fast.txt").read_text()
        fast_mtime = (workdir / "out" / "fast.txt").stat().st_mtime_ns
        subprocess.run(["scancel", slow["id"]], check=True)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0, output[-3000:]
    assert "Error in rule slow" in output, output[-3000:]
    assert _files(workdir) == ["out/fast.txt"], "a cancelled job left files behind"

    rerun = snakemake(workdir, *args, "--config", "seconds=2")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert len(submitted_ids(rerun.stdout)) == 1, "the re-run should submit only `slow`"
    assert "rule fast" not in rerun.stdout
    assert (workdir / "out" / "fast.txt").read_text() == fast_record
    assert (workdir / "out" / "fast.txt").stat().st_mtime_ns == fast_mtime
    assert (workdir / "out" / "slow.txt").read_text().split() == ["0", "1"]
    assert _files(workdir) == ["out/fast.txt", "out/slow.txt"]


def _poll_temp(workdir: Path, timeout: float = 60.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        temps = [p for p in (workdir / "out").glob(".slow.txt.tmp-*")
                 if p.is_file() and p.read_text().count("\n") >= 2]
        if temps:
            return temps
        time.sleep(0.5)
    return []
