"""The tiny experiment's data jobs and SFT through a real one-node SLURM, with the generated profiles.

A copy of the project is compiled with `fleming compile specs/tiny.flm` and run with Snakemake
using `generated/tiny/profiles/slurm` (the slurm executor plugin; only the partition is added on
the command line) and `generated/tiny/profiles/slurm-generic` (plain sbatch through the
cluster-generic executor, unchanged). Every job must run as a SLURM job, and the data it writes
must be byte-identical to the same targets run with `generated/tiny/profiles/local` (the
session's shared run, tests/tiny_data_fixtures.py): where a job runs may not change what it
computes. The two profiles' runs go at once, each in its own project: they mostly wait for
SLURM's status checks. Each test reports its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from slurm.harness import (
    PARTITION,
    job_fields,
    outcome,
    run_concurrently,
    slurm_cluster,  # noqa: F401  (the session fixture, used below)
    snakemake,
    submitted_ids,
)
from tiny_data_fixtures import SNAKEFILE, compile_spec, copy_inputs

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

DATA_RULES = ("graph_load_medkg", "sample_rare_dx", "synthesize_questions", "distill_cot",
              "filter_clean")
SFT_RULES = ("build_model_base", *DATA_RULES, "sft_cold_start")
SFT_BLOCK = "stage cold_start = sft(base, clean) {\n"


def _project(root: Path) -> Path:
    """A fresh copy of the project's inputs, compiled as a user would."""
    copy_inputs(root)
    # What is tested here is where jobs run, not what the model learns: the cold start stops after
    # a few steps instead of the demo's 1,500 (the data jobs, compared byte for byte, are unchanged).
    spec = root / "specs" / "tiny.flm"
    text = spec.read_text(encoding="utf-8")
    assert SFT_BLOCK in text, "specs/tiny.flm's cold start changed: update SFT_BLOCK"
    spec.write_text(text.replace(SFT_BLOCK, SFT_BLOCK + "  max_steps = 20\n"), encoding="utf-8")
    compile_spec(root, "specs/tiny.flm")
    return root


def _main_output(project: Path, job: str) -> str:
    """A job is targeted by its main output (the Snakefile has one rule per job kind)."""
    rows = json.loads((project / "generated" / "tiny" / "jobs.json").read_text())["jobs"]
    return next(row["outputs"]["main"] for row in rows if row["name"] == job)


def _run(project: Path, profile: str, job: str, *extra: str,
         timeout: int = 300) -> subprocess.CompletedProcess[str]:
    # Targets go first: --default-resources takes every word after it.
    result = snakemake(project, _main_output(project, job), "-s", SNAKEFILE, "--profile",
                       f"generated/tiny/profiles/{profile}", *extra, timeout=timeout)
    assert result.returncode == 0, result.stdout[-5000:]
    return result


def _data_digests(project: Path) -> dict[str, str]:
    """sha256 of every data file and the graph store (not the .meta.json: those hold timings)."""
    runs = project / "runs" / "tiny"
    files = [*(runs / "data").glob("*.jsonl"), *(runs / "graph").iterdir()]
    return {str(p.relative_to(runs)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if p.is_file() and not p.name.endswith(".meta.json")}


def _rules_by_job(ids: list[str], field: str) -> dict[str, str]:
    """Each SLURM job's id -> the field naming its job(s) (a group job names all of them)."""
    return {job_id: job_fields(job_id)[field] for job_id in ids}


def _plugin_labels(project: Path, jobs: tuple[str, ...]) -> tuple[str, ...]:
    """How the slurm plugin's --comment names each job: `rule_<rule>_wildcards_<stem>` for a job
    alone (one rule per job kind, the job's stem as wildcard), the group id (which lists the
    group's jobs) for a grouped one."""
    rows = {row["name"]: row for row in json.loads(
        (project / "generated" / "tiny" / "jobs.json").read_text())["jobs"]}
    return tuple(name if rows[name]["group"] else f"rule_{rows[name]['rule']}_wildcards_"
                 f"{rows[name]['stem']}" for name in jobs)


def _assert_each_rule_ran_in_one_completed_job(ids: list[str], field: str,
                                               rules: tuple[str, ...]) -> None:
    names = _rules_by_job(ids, field)
    for rule in rules:
        holders = [job_id for job_id, name in names.items() if rule in name]
        assert len(holders) == 1, f"{rule} in SLURM jobs {holders}: {names}"
    assert all(any(rule in name for rule in rules) for name in names.values()), names
    states = {job_id: job_fields(job_id)["JobState"] for job_id in ids}
    assert set(states.values()) == {"COMPLETED"}, states


def _assert_nothing_ran_locally(output: str) -> None:
    # Snakemake announces a job it runs on the submitting host as "localrule <name>:".
    assert "localrule " not in output, output[-5000:]


@pytest.fixture(scope="module")
def local_data(tiny_local_data: Path) -> dict[str, str]:
    """The data jobs run with the local profile: the reference both SLURM runs must match."""
    digests = _data_digests(tiny_local_data)
    assert {"data/rare_dx.jsonl", "data/questions.jsonl", "data/cot.jsonl", "data/clean.jsonl",
            "graph/medkg.npz"} <= set(digests), digests
    return digests


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory,
              local_data: dict[str, str]) -> dict[str, BaseException | None]:
    """Both profiles' runs, at once: profile -> what its scenario raised, or None."""
    root = tmp_path_factory.mktemp("slurm-tiny")
    return run_concurrently({
        "slurm": functools.partial(_slurm_profile, root / "tiny-slurm", local_data),
        "slurm-generic": functools.partial(_generic_profile, root / "tiny-generic", local_data),
    })


def _assert_loadable_trained_model(stage: Path, base: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(stage)
    tokenizer = AutoTokenizer.from_pretrained(stage)
    start = AutoModelForCausalLM.from_pretrained(base)
    moved = [name for name, p in model.state_dict().items()
             if not torch.equal(p, start.state_dict()[name])]
    assert moved, "the SFT stage holds the base model's weights unchanged"
    inputs = tokenizer("Which drug treats", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()


def test_slurm_profile_runs_data_jobs_and_sft_as_slurm_jobs(
        scenarios: dict[str, BaseException | None]) -> None:
    outcome(scenarios, "slurm")


def test_slurm_generic_profile_runs_data_jobs_through_sbatch(
        scenarios: dict[str, BaseException | None]) -> None:
    outcome(scenarios, "slurm-generic")


def _slurm_profile(root: Path, local_data: dict[str, str]) -> None:
    project = _project(root)
    result = _run(project, "slurm", "sft_cold_start", "--default-resources",
                  f"slurm_partition={PARTITION}", timeout=900)
    _assert_nothing_ran_locally(result.stdout)
    ids = submitted_ids(result.stdout)
    # The slurm plugin puts the rule and wildcards (or the group id) into the job's --comment.
    _assert_each_rule_ran_in_one_completed_job(ids, "Comment", _plugin_labels(project, SFT_RULES))
    fields = [job_fields(job_id) for job_id in ids]
    assert {f["Partition"] for f in fields} == {PARTITION}
    assert all(f["JobName"].startswith("tiny_") for f in fields), fields
    # The rules' resources reached sbatch unchanged: the cold start asks 2 CPUs (tiny.flm's
    # `resources { cpus = 2 }`), every other job the default 1.
    (sft_label,) = _plugin_labels(project, ("sft_cold_start",))
    assert {f["MinMemoryNode"] for f in fields} == {"4G"}
    assert sorted((sft_label in f["Comment"], f["NumCPUs"]) for f in fields) == sorted(
        (sft_label in f["Comment"], "2" if sft_label in f["Comment"] else "1") for f in fields)
    assert any(sft_label in f["Comment"] for f in fields)
    assert _data_digests(project) == local_data
    runs = project / "runs" / "tiny"
    _assert_loadable_trained_model(runs / "stages" / "cold_start", runs / "models" / "base")


def _generic_profile(root: Path, local_data: dict[str, str]) -> None:
    project = _project(root)
    # The default partition of the test cluster takes the jobs; the profile is used unchanged.
    result = _run(project, "slurm-generic", "filter_clean", timeout=300)
    _assert_nothing_ran_locally(result.stdout)
    ids = submitted_ids(result.stdout)
    # The profile's sbatch line names each job tiny.<rule or group> and logs it per job id.
    _assert_each_rule_ran_in_one_completed_job(ids, "JobName", DATA_RULES)
    assert all(job_fields(job_id)["JobName"].startswith("tiny.") for job_id in ids)
    logs = {p.name for p in (project / "runs" / "tiny" / "logs" / "slurm").iterdir()}
    assert {log.rsplit("-", 1)[1] for log in logs} == {f"{job_id}.out" for job_id in ids}, logs
    assert _data_digests(project) == local_data
