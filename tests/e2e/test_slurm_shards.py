"""Sharded data jobs on a real SLURM, through both generated profiles.

`tests/specs/tiny_sharded.flm` cuts synthesize into 3 shards and distill and the filter's
model-backed steps into 2. Each shard must run as its own SLURM job. Two of synthesize's shards
run first; the third is cancelled with `scancel` while it is queued or running; the next
invocation submits that shard alone (the finished two are not redone), then the gathers and
the rest. The merged data must be byte-identical to the unsharded tiny spec run with the local
profile.

Marked slurm: it needs the test cluster of tests/slurm (root; `tests/slurm/cluster.sh`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO
from slurm.harness import (
    ARRAY_SUBMITTED,
    PARTITION,
    job_fields,
    slurm_cluster,  # noqa: F401  (the session fixture, used below)
    snakemake,
    submitted_ids,
    wait_for_job,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

SNAKEFILE = "generated/tiny/Snakefile"
TARGET = "runs/tiny/data/clean.jsonl"
SAMPLES = "runs/tiny/data/rare_dx.jsonl"
SHARDS = "runs/tiny/shards/synthesize_questions"
DATA = ("questions.jsonl", "cot.jsonl", "clean.jsonl", "clean.review.jsonl")
# Where SLURM keeps each profile's name for a job: the slurm plugin's --comment, the generic
# profile's sbatch job name.
SLURM_FIELD = {"slurm": "Comment", "slurm-generic": "JobName"}


def _project(root: Path, spec: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "tests" / "specs").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "specs" / "tiny_sharded.flm", root / "tests" / "specs")
    compiled = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "compile", spec],
                              cwd=root, text=True, capture_output=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return root


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
def unsharded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The data of the unsharded tiny spec, made with the local profile."""
    project = _project(tmp_path_factory.mktemp("tiny-local"), "specs/tiny.flm")
    result = snakemake(project, *_args("local", TARGET), "--cores", "2", timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    return _digests(project)


@pytest.mark.parametrize("profile", ["slurm", "slurm-generic"])
def test_a_cancelled_shard_is_rerun_alone_by_the_next_invocation(
        tmp_path: Path, unsharded: dict[str, str], profile: str) -> None:
    project = _project(tmp_path / profile, "tests/specs/tiny_sharded.flm")
    upstream = snakemake(project, *_args(profile, SAMPLES), timeout=300)
    assert upstream.returncode == 0, upstream.stdout[-4000:]

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
        job = wait_for_job(lambda j: j[key] == wanted and j["state"] in (
            "PENDING", "CONFIGURING", "RUNNING"), timeout=180)
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


def test_the_three_shards_of_a_step_run_as_one_job_array(tmp_path: Path) -> None:
    """The generated slurm profile names the shard rules in `slurm-array-jobs`: the three
    synthesize shards go out in one sbatch, as tasks 1-3 of one SLURM array."""
    project = _project(tmp_path / "array", "tests/specs/tiny_sharded.flm")
    upstream = snakemake(project, *_args("slurm", SAMPLES), timeout=300)
    assert upstream.returncode == 0, upstream.stdout[-4000:]
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
