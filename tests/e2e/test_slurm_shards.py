"""Sharded data jobs on a real SLURM, through both generated profiles.

`tests/specs/tiny_sharded.flm` cuts synthesize into 3 shards and distill and the filter's
model-backed steps into 2. Each shard must run as its own SLURM job. Each scenario starts from a
copy of the session's local run of the unsharded tiny spec (tests/tiny_data_fixtures.py) with the
sharded variant compiled over it and the sharded steps' data removed: the graph and the sampled
paths, which no shard makes, are not made again. Two of synthesize's shards run first; the third is cancelled with `scancel` while it is queued or running; the next
invocation submits that shard alone (the finished two are not redone), then the gathers and
the rest. The merged data must be byte-identical to the unsharded run's.

The three scenarios (the cancelled shard through each profile, the job array) run at once, each
in its own project: they mostly wait for SLURM's status checks. Each test reports its own.

Marked slurm: it needs the test cluster of tests/slurm (root; `tests/slurm/cluster.sh`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from slurm.harness import (
    ARRAY_SUBMITTED,
    PARTITION,
    job_fields,
    outcome,
    run_concurrently,
    slurm_cluster,  # noqa: F401  (the session fixture, used below)
    snakemake,
    submitted_ids,
    wait_for_job,
)
from tiny_data_fixtures import CLEAN as TARGET
from tiny_data_fixtures import SNAKEFILE, compile_spec, copy_run

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

PROFILES = ("slurm", "slurm-generic")
SHARDS = "runs/tiny/shards/synthesize_questions"
DATA = ("questions.jsonl", "cot.jsonl", "clean.jsonl", "clean.review.jsonl")
# Where SLURM keeps each profile's name for a job: the slurm plugin's --comment, the generic
# profile's sbatch job name.
SLURM_FIELD = {"slurm": "Comment", "slurm-generic": "JobName"}


def _project(root: Path, unsharded_run: Path) -> Path:
    """A copy of the unsharded run, the sharded variant compiled over it, the sharded steps'
    data removed (Snakemake makes it again by the shards)."""
    project = copy_run(unsharded_run, root)
    compile_spec(project, "tests/specs/tiny_sharded.flm")
    for name in DATA:
        (project / "runs" / "tiny" / "data" / name).unlink()
    return project


def _args(profile: str, *targets: str, arrays: bool = False) -> list[str]:
    """Snakemake's arguments; with the slurm profile each shard is its own sbatch unless `arrays`
    (the profile's `slurm-array-jobs`), so SLURM's record names the shard each job ran."""
    args = [*targets, "-s", SNAKEFILE, "--profile", f"generated/tiny/profiles/{profile}"]
    if profile == "slurm":  # the plugin needs the partition; the generic profile uses the default
        args += ["--default-resources", f"slurm_partition={PARTITION}"]
        if not arrays:
            args += ["--slurm-array-jobs", "none"]  # no rule of that name: no arrays
    return args


def _digests(project: Path) -> dict[str, str]:
    data = project / "runs" / "tiny" / "data"
    return {name: hashlib.sha256((data / name).read_bytes()).hexdigest() for name in DATA}


def _labels(project: Path, profile: str) -> dict[str, str]:
    """SLURM's name for each job -> the job: the slurm plugin comments `rule_<rule>_wildcards_
    <stem>` (one rule per job kind, the job's stem as wildcard), the generic profile names the
    sbatch job `tiny.<job>`. A grouped job goes by its group's label and is not listed."""
    rows = json.loads((project / "generated" / "tiny" / "jobs.json").read_text())["jobs"]
    if profile == "slurm":
        return {f"rule_{r['rule']}_wildcards_{r['stem']}": r["name"] for r in rows}
    return {f"tiny.{r['name']}": r["name"] for r in rows}


def _jobs(project: Path, ids: list[str], profile: str) -> list[str]:
    """The job each SLURM job ran, read back from SLURM itself."""
    labels = _labels(project, profile)
    names = [job_fields(job_id)[SLURM_FIELD[profile]] for job_id in ids]
    return [labels.get(name, name) for name in names]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory,
              tiny_local_data: Path) -> dict[str, BaseException | None]:
    """Every scenario of this file, run at once: name -> what it raised, or None."""
    root = tmp_path_factory.mktemp("slurm-shards")
    unsharded = _digests(tiny_local_data)
    return run_concurrently({
        **{profile: functools.partial(_cancel_and_rerun, _project(root / profile, tiny_local_data),
                                      profile, unsharded) for profile in PROFILES},
        "array": functools.partial(_array, _project(root / "array", tiny_local_data)),
    })


@pytest.mark.parametrize("profile", PROFILES)
def test_a_cancelled_shard_is_rerun_alone_by_the_next_invocation(
        scenarios: dict[str, BaseException | None], profile: str) -> None:
    outcome(scenarios, profile)


def test_the_three_shards_of_a_step_run_as_one_job_array(
        scenarios: dict[str, BaseException | None]) -> None:
    """The generated slurm profile names the shard rules in `slurm-array-jobs`: the three
    synthesize shards go out in one sbatch, as tasks 1-3 of one SLURM array."""
    outcome(scenarios, "array")


def _cancel_and_rerun(project: Path, profile: str, unsharded: dict[str, str]) -> None:
    # Two of the three shards, each its own SLURM job.
    first = snakemake(project, *_args(profile, f"{SHARDS}/synthesize_questions_shard1of3.jsonl",
                                      f"{SHARDS}/synthesize_questions_shard3of3.jsonl"), timeout=300)
    assert first.returncode == 0, first.stdout[-4000:]
    ids = submitted_ids(first.stdout)
    assert sorted(_jobs(project, ids, profile)) == ["synthesize_questions_shard1of3",
                                            "synthesize_questions_shard3of3"]
    assert {job_fields(job_id)["JobState"] for job_id in ids} == {"COMPLETED"}
    finished = {p: p.stat().st_mtime_ns for p in (project / SHARDS).glob("*.meta.json")}
    assert len(finished) == 2

    # The third, cancelled by scancel before it can finish.
    key = "comment" if profile == "slurm" else "name"
    wanted = next(label for label, name in _labels(project, profile).items()
                  if name == "synthesize_questions_shard2of3")
    run = subprocess.Popen([sys.executable, "-m", "snakemake", *_args(profile, TARGET)],
                           cwd=project, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        job = wait_for_job(lambda j: (j[key], j["workdir"]) == (wanted, str(project.resolve()))
                           and j["state"] in ("PENDING", "CONFIGURING", "RUNNING"), timeout=180)
        subprocess.run(["scancel", job["id"]], check=True)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0, output[-3000:]
    assert not (project / SHARDS / "synthesize_questions_shard2of3.jsonl").exists()
    assert not (project / "runs" / "tiny" / "data" / "questions.jsonl").exists()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished

    # The next invocation: the cancelled shard alone, then the gathers and the other steps.
    rerun = snakemake(project, *_args(profile, TARGET), timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert "localrule " not in rerun.stdout  # every job went through SLURM
    rules = _jobs(project, submitted_ids(rerun.stdout), profile)
    synthesize = sorted(r for r in rules if r.startswith("synthesize_questions"))
    assert synthesize == ["synthesize_questions", "synthesize_questions_shard2of3"], rules
    assert {"distill_cot_shard1of2", "distill_cot_shard2of2", "distill_cot",
            "filter_clean_shard1of2", "filter_clean_shard2of2", "filter_clean"} <= set(rules)
    assert _digests(project) == unsharded


def _array(project: Path) -> None:
    shards = [f"{SHARDS}/synthesize_questions_shard{i}of3.jsonl" for i in (1, 2, 3)]
    result = snakemake(project, *_args("slurm", *shards, arrays=True), timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    arrays = ARRAY_SUBMITTED.findall(result.stdout)
    assert [(first, last) for _, first, last in arrays] == [("1", "3")], result.stdout[-3000:]
    ids = submitted_ids(result.stdout)
    assert ids == [f"{arrays[0][0]}_{task}" for task in (1, 2, 3)]
    assert {job_fields(job_id)["JobState"] for job_id in ids} == {"COMPLETED"}
    assert {job_fields(job_id)["ArrayJobId"] for job_id in ids} == {arrays[0][0]}
    assert all((project / shard).is_file() for shard in shards)
