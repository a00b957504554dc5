"""`fleming cost`: per-job estimates from the records an earlier run left (fixtures shaped as a
small run's metas), scaled to another spec with the run they came from, or the declared limit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from paths import REPO

from fleming_dsl.cli.main import main
from fleming_dsl.compiler import default_out_dir, load_experiment
from fleming_dsl.plan.planner import plan
from fleming_dsl.review import cost, impact


def _plan(spec: str):
    exp = load_experiment(REPO / spec, REPO)
    return plan(exp, default_out_dir(exp))


def _record(job, seconds: float, steps: int | None = None, parameters: int | None = None,
            gpus: int = 0) -> dict:
    """A meta as `runtime/jobs` writes it, with the fields an estimate reads."""
    return {"job": job.name, "kind": job.config.kind, "experiment": "tiny",
            "counts": {"parameters": parameters} if parameters else {},
            "metrics": {"steps": steps} if steps else {},
            "timings": {"load": 1.0, "total_s": seconds}, "hardware": {"gpus": gpus, "ranks": 1}}


def _write_run(tmp_path: Path, gpus: int = 0):
    """The tiny spec's plan, with records of an earlier run under tmp_path (the project root)."""
    tiny = _plan("specs/tiny.flm")
    for job in tiny.jobs:
        trains = job.kind in ("sft", "grpo")
        steps = (job.config.training.max_steps or 1500) if trains else None  # an epoch-bound run's count
        meta = tmp_path / job.config.meta
        meta.parent.mkdir(parents=True, exist_ok=True)
        seconds = {"sft": 120.0, "grpo": 90.0}.get(job.kind, 10.0)
        meta.write_text(json.dumps(_record(job, seconds, steps, 1_000_000 if trains else None, gpus)))
    return tiny


@pytest.fixture()
def tiny_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return _write_run(tmp_path)


def test_each_job_is_estimated_from_its_own_record(tiny_run) -> None:
    estimates = cost.estimate(tiny_run, (), own=cost.own_records(tiny_run))
    sft = next(e for e in estimates if e.job == "sft_cold_start")
    assert (sft.seconds, sft.basis, sft.note) == (
        120.0, "measured", "measured: runs/tiny/stages/cold_start.meta.json")
    assert {e.basis for e in estimates} == {"measured"}
    assert sum(e.seconds for e in estimates) == pytest.approx(
        sum(json.loads(Path(j.config.meta).read_text())["timings"]["total_s"] for j in tiny_run.jobs))


def test_a_cpu_run_is_not_scaled_to_the_7b_specs_gpu_jobs_and_each_says_why(tiny_run) -> None:
    big = _plan("specs/fleming_r1_7b.flm")
    estimates = {e.job: e for e in cost.estimate(big, cost.records_under(["runs/tiny"]))}
    assert {e.basis for e in estimates.values()} == {"declared"}
    assert estimates["sft_cold_start"].note == (
        "the declared time limit; not scaled from run runs/tiny, job sft_cold_start: it ran on "
        "CPU, this job asks for 8 GPUs")
    assert estimates["sample_rare_dx"].note == (
        "the declared time limit; not scaled from run runs/tiny, job sample_rare_dx: no model "
        "size or step count on both sides to scale by")


def test_the_7b_spec_is_scaled_from_a_gpu_run_and_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write_run(tmp_path, gpus=1)
    big = _plan("specs/fleming_r1_7b.flm")
    estimates = {e.job: e for e in cost.estimate(big, cost.records_under(["runs/tiny"]))}
    sft = next(e for e in estimates.values() if e.kind == "sft")
    job = big.job(sft.job)
    devices = job.resources.nodes * job.resources.gpus
    assert sft.basis == "scaled" and sft.note.startswith(
        "scaled from run runs/tiny, job sft_cold_start (")
    assert sft.note.endswith(f"(steps as recorded: the stage trains by epochs, 1M -> 7B parameters, "
                             f"1 device -> {devices} GPUs)")
    grpo = estimates["grpo_rl1_beta_0p0"]
    assert grpo.note.startswith("scaled from run runs/tiny, job grpo_rl1 (60 -> 2000 steps, 1M -> 7B")
    assert sft.gpu_hours == impact.gpu_hours(job.resources.nodes, job.resources.gpus, sft.seconds / 60)
    text = cost.render(list(estimates.values()))
    assert f"warning: {sft.job}: the estimate" in text  # 7,000x the parameters of a 2-minute SFT


def test_without_records_every_job_falls_back_to_its_declared_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = _plan("specs/tiny.flm")
    estimates = cost.estimate(tiny, (), own=cost.own_records(tiny))
    assert [e.seconds for e in estimates] == [j.resources.time_min * 60 for j in tiny.jobs]
    assert estimates[0].note == "no recorded build_model job: the declared time limit"
    assert cost.render(estimates).splitlines()[-1] == (
        f"total: {cost.duration(sum(e.seconds for e in estimates))} of job time, 0 GPU-hours "
        f"(0 measured, 0 scaled, {len(estimates)} declared)")


def test_an_estimate_over_the_time_limit_is_a_warning(tiny_run) -> None:
    sft = next(j for j in tiny_run.jobs if j.kind == "sft")
    Path(sft.config.meta).write_text(json.dumps(_record(sft, 7200.0, sft.config.training.max_steps)))
    text = cost.render(cost.estimate(tiny_run, (), own=cost.own_records(tiny_run)))
    assert ("warning: sft_cold_start: the estimate 2:00:00 exceeds its time limit 1:00:00: it will "
            "run in several allocations (checkpoint, requeue); raise its time") in text


def test_the_cost_command_prints_the_table(tiny_run, capsys: pytest.CaptureFixture[str]) -> None:
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, folder)
    assert main(["cost", "specs/tiny.flm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["job", "kind", "estimate", "limit", "GPU-h", "basis"]
    assert lines[-1].endswith(f"0 GPU-hours ({len(tiny_run.jobs)} measured, 0 scaled, 0 declared)")
    assert main(["cost", "specs/tiny.flm", "--from", "nowhere"]) == 1
    assert capsys.readouterr().err == "error: --from nowhere: no such folder\n"
