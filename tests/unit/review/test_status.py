"""`fleming status`: outputs missing, up to date or stale, judged from metadata records alone.

The workflow is the tiny recipe's plan written to `generated/tiny/jobs/`; outputs and their
metadata records are fabricated the way the job runtime writes them (sha256 of the job config
file bytes, sha256 of each input), so nothing runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from plan_fixtures import fabricate_outputs, tiny_experiment

from fleming_dsl import ir
from fleming_dsl.emit.workflow import emit
from fleming_dsl.hashing import sha256_path
from fleming_dsl.plan.planner import Plan, plan
from fleming_dsl.review import status

OUT = "generated/tiny"


def _write_configs(root: Path, workflow: Plan) -> None:
    """What `fleming compile` writes (the manifest's spec is not in the project: jobs/ rules)."""
    emit(workflow, root / OUT)


def _run_everything(root: Path, workflow: Plan) -> None:
    """Write every output and the metadata record the runtime would, in dependency order."""
    for job in workflow.jobs:
        for path in job.inputs:
            if not (root / path).exists():  # a project input: data, prompts
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(f"input {path}\n")
        fabricate_outputs(root, job)
        raw = (root / workflow.out_dir / "jobs" / f"{job.name}.json").read_bytes()
        meta = {"job": job.name, "config_sha256": hashlib.sha256(raw).hexdigest(),
                "inputs": {p: sha256_path(root / p) for p in job.inputs}}
        (root / job.config.meta).write_text(json.dumps(meta))


def _states(root: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    found = status.job_states(status.emitted_jobs(root / OUT), root)
    return {s.job: (s.state, s.reasons) for s in found}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    workflow = plan(tiny_experiment(), OUT)
    _write_configs(tmp_path, workflow)
    _run_everything(tmp_path, workflow)
    return tmp_path


def test_everything_up_to_date_after_a_run(project: Path) -> None:
    states = _states(project)
    assert len(states) == 13
    assert {state for state, _ in states.values()} == {"up to date"}


def test_a_reward_weight_edit_makes_grpo_eval_and_report_stale(project: Path) -> None:
    _write_configs(project, plan(tiny_experiment(form_weight=0.3), OUT))
    stale = {job: reasons for job, (state, reasons) in _states(project).items() if state == "stale"}
    assert stale == {
        "grpo_rl1": ("job config changed since it ran",),
        "grpo_rl2": ("job config changed since it ran", "upstream grpo_rl1 is stale"),
        "eval_rl1": ("upstream grpo_rl1 is stale",),
        "eval_rl2": ("upstream grpo_rl2 is stale",),
        "report": ("upstream eval_rl1 is stale", "upstream eval_rl2 is stale",
                   "upstream grpo_rl1 is stale", "upstream grpo_rl2 is stale"),
    }


def test_missing_outputs_and_changed_inputs(project: Path) -> None:
    (project / "runs/tiny/data/clean.jsonl").unlink()
    (project / "data/eval/pubmedqa.json").write_text("edited\n")
    states = _states(project)
    assert states["filter_clean"] == ("missing", ("runs/tiny/data/clean.jsonl does not exist",))
    assert states["grpo_rl1"] == ("stale", ("input runs/tiny/data/clean.jsonl is gone",
                                            "upstream filter_clean is missing",
                                            "upstream sft_cold_start is stale"))
    assert states["eval_rl1"][0] == "stale"
    assert "input data/eval/pubmedqa.json changed" in states["eval_cold_start"][1]
    assert states["distill_cot"][0] == "up to date"


def test_command_output_and_exit_codes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(workflow=str(project / OUT), root=str(project), json=False)
    assert status.main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "13 up to date, 0 stale, 0 missing"
    (project / "runs/tiny/eval/rl2.json").unlink()
    _write_configs(project, plan(tiny_experiment(form_weight=0.3), OUT))
    assert status.main(args) == 1
    assert capsys.readouterr().out == (
        "up to date  build_model_base      build_model\n"
        "up to date  graph_load_medkg      graph_load\n"
        "up to date  sample_rare_dx        sample\n"
        "up to date  synthesize_questions  synthesize\n"
        "up to date  distill_cot           distill\n"
        "up to date  filter_clean          filter\n"
        "up to date  sft_cold_start        sft\n"
        "up to date  eval_cold_start       eval\n"
        "stale       grpo_rl1              grpo         job config changed since it ran\n"
        "stale       eval_rl1              eval         upstream grpo_rl1 is stale\n"
        "stale       grpo_rl2              grpo         job config changed since it ran; "
        "upstream grpo_rl1 is stale\n"
        "missing     eval_rl2              eval         runs/tiny/eval/rl2.json does not exist\n"
        "stale       report                report       input runs/tiny/eval/rl2.json is gone; "
        "upstream eval_rl1 is stale; upstream eval_rl2 is missing; upstream grpo_rl1 is stale; "
        "upstream grpo_rl2 is stale\n"
        "8 up to date, 4 stale, 1 missing\n"
    )
    bad = argparse.Namespace(workflow=str(project / "nowhere"), root=str(project), json=False)
    assert status.main(bad) == 2
    assert capsys.readouterr().err == (
        f"{project / 'nowhere'}: not a compiled workflow (no jobs/ folder); run `fleming compile` first\n")


def test_a_spec_level_seed_change_stales_every_job(project: Path) -> None:
    edited = tiny_experiment().model_copy(update={"seed": 8})
    assert isinstance(edited, ir.Experiment)
    _write_configs(project, plan(edited, OUT))
    assert {state for state, _ in _states(project).values()} == {"stale"}


def test_manifest_records_library_versions_per_job() -> None:
    from importlib import metadata

    from plan_fixtures import gpu_experiment

    from fleming_dsl.emit.workflow import render

    manifest = json.loads(render(plan(gpu_experiment(), OUT))["manifest.json"])
    libraries = manifest["libraries"]
    assert set(libraries) == set(manifest["jobs"])
    assert libraries["grpo_rl1"]["trl"] == metadata.version("trl")
    assert libraries["grpo_rl1"]["deepspeed"] == metadata.version("deepspeed")  # zero2 declared
    assert "deepspeed" not in libraries["eval_rl1"]
    assert set(libraries["report"]) == {"fleming-dsl", "matplotlib", "scipy"}


def test_a_vllm_teacher_is_recorded_even_where_vllm_is_absent() -> None:
    from fleming_dsl.emit.provenance import libraries_for

    teacher = {"teacher": {"model": "m", "backend": {"kind": "vllm"}}}
    assert "vllm" in libraries_for("synthesize", teacher)
    assert "vllm" not in libraries_for("synthesize", {"teacher": {"backend": {"kind": "template"}}})


def test_status_sees_a_spec_edit_before_recompiling(tmp_path: Path, repo_root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny spec compiled for real; after an edit, status judges against the edited spec."""
    pytest.importorskip("fleming_dsl.spec.loader")
    from fleming_dsl.compiler import compile_spec

    for folder in ("specs", "data", "prompts"):
        if (repo_root / folder).is_dir():
            shutil.copytree(repo_root / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    compiled = compile_spec("specs/tiny.flm")
    _run_everything(tmp_path, compiled.plan)
    workflow = tmp_path / compiled.out_dir
    assert {s.state for s in status.job_states(status.current_jobs(workflow, tmp_path)[0], tmp_path)} \
        == {"up to date"}
    spec = tmp_path / "specs" / "tiny.flm"
    text = spec.read_text(encoding="utf-8")
    assert text.count("lr = 3e-3") == 1
    spec.write_text(text.replace("lr = 3e-3", "lr = 1e-3"), encoding="utf-8")
    jobs, note = status.current_jobs(workflow, tmp_path)
    assert note.startswith("note: specs/tiny.flm has changed since")
    states = {s.job: s.state for s in status.job_states(jobs, tmp_path)}
    assert sorted(job for job, state in states.items() if state == "stale") == [
        "eval_cold_start", "eval_rl1", "eval_rl2", "grpo_rl1", "grpo_rl2", "report", "sft_cold_start"]
    compiled_only, _ = status.current_jobs(workflow, tmp_path, compiled_only=True)
    assert {s.state for s in status.job_states(compiled_only, tmp_path)} == {"up to date"}
