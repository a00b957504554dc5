"""The evaluate block's engine and metrics: what lowering accepts and its messages, word for word."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.plan.planner import plan


def evaluate(block: str) -> str:
    return MINIMAL.replace("evaluate [rl] on [test]", f"evaluate [rl] on [test] {{ {block} }}")


def errors(tmp_path: Path, text: str) -> list[tuple[str, str | None]]:
    with pytest.raises(SpecError) as info:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    return [(d.first_line(), d.hint) for d in info.value.diagnostics]


def test_engine_and_metrics_reach_the_eval_job(tmp_path: Path) -> None:
    text = evaluate('engine = vllm  samples = 8  metrics = ["pass@8", "maj@4"]  resources { gpus = 4 }')
    exp = load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    [job] = [j for j in plan(exp, "gen").jobs if j.kind == "eval"]
    assert (job.config.backend, job.config.tensor_parallel, job.config.metrics) == ("vllm", 4, ("pass@8", "maj@4"))


def test_the_default_engine_is_decided_where_the_job_runs(tmp_path: Path) -> None:
    exp = load_experiment(write_project(tmp_path, MINIMAL), project_root=tmp_path)
    [job] = [j for j in plan(exp, "gen").jobs if j.kind == "eval"]
    assert (job.config.backend, job.config.tensor_parallel, job.config.metrics) == ("auto", 1, ())


def test_a_metric_needs_as_many_samples(tmp_path: Path) -> None:
    assert errors(tmp_path, evaluate('samples = 4  metrics = ["maj@8"]')) == [
        ("spec.flm:15:40: error: 'maj@8' needs 8 samples of each question; the evaluation draws 4",
         "add samples = 8")]


def test_an_unknown_metric_says_what_is_allowed(tmp_path: Path) -> None:
    assert errors(tmp_path, evaluate('metrics = ["pass8"]')) == [
        ("spec.flm:15:38: error: 'metrics' takes metrics such as \"pass@8\" or \"maj@8\"; got 'pass8'",
         'write metrics = ["pass@8", "maj@8"] (accuracy is always reported)')]


def test_vllm_needs_gpus(tmp_path: Path) -> None:
    assert errors(tmp_path, evaluate("engine = vllm")) == [
        ("spec.flm:15:27: error: engine = vllm needs GPUs; the evaluation declares none",
         "add resources { gpus = 1 }, or use engine = transformers")]


def test_engine_does_not_apply_to_a_model_with_its_own_backend(tmp_path: Path) -> None:
    text = MINIMAL.replace("evaluate [rl] on [test]", 'model judge = hf("org/judge-1B") { backend = transformers() }\n'
                           "evaluate [rl, judge] on [test] { engine = transformers }")
    assert errors(tmp_path, text) == [
        ("spec.flm:16:34: error: 'engine' does not apply to model judge, which is evaluated through "
         "its own backend", "evaluate judge in an evaluate block of its own, without engine")]
