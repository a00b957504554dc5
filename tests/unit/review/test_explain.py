"""`fleming explain`: a job's resolved config traced back to the spec lines it came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_fixtures import tiny_experiment

from fleming_dsl import ir
from fleming_dsl.review.explain import ExplainError, explain_job

SPEC = """\
reward correct = choice_match(tag = "answer")
reward form    = regex("^<think>.*</think><answer>[A-D]</answer>$")
reward brevity = length_penalty(max_tokens = 96)
stage rl1 = grpo(cold_start, clean[easy, moderate]) {
  rewards = 1.0 * correct + 0.2 * form + 0.1 * brevity
  generations = 4  batch = 8  beta = 0.0  lr = 5e-5  max_completion_length = 48
  max_steps = 8
  until = plateau(reward, patience = 4)  # stop when the reward flattens
}
"""


def _span(line: int, end_line: int | None = None) -> ir.Span:
    return ir.Span(file="specs/t.flm", line=line, col=1, end_line=end_line or line, end_col=2)


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ir.Experiment:
    """The tiny recipe with rl1 and the rewards placed in a small spec file in a temp project."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "t.flm").write_text(SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    exp = tiny_experiment()
    rewards = tuple(r.model_copy(update={"span": _span(n)}) for n, r in enumerate(exp.rewards, 1))
    stages = tuple(s.model_copy(update={"span": _span(4, 9) if s.name == "rl1" else None})
                   for s in exp.stages)
    filters = tuple(f.model_copy(update={"span": None}) for f in exp.filters)
    return exp.model_copy(update={"rewards": rewards, "stages": stages, "filters": filters})


def test_options_point_at_the_lines_that_set_them(experiment: ir.Experiment) -> None:
    lines = explain_job(experiment, "grpo_rl1").splitlines()
    assert lines[:3] == ["job grpo_rl1 (grpo) from specs/t.flm:4",
                         "config: generated/tiny/jobs/grpo_rl1.json", ""]
    flat = [" ".join(line.split()) for line in lines]  # the padding follows the longest field name
    assert "training.lr = 5e-05 <- specs/t.flm:6" in flat
    assert "training.batch_size = 8 <- specs/t.flm:6" in flat
    assert "training.max_steps = 8 <- specs/t.flm:7" in flat
    assert 'plateau = {"metric": "reward", "min_delta": 0.0, "patience": 4} <- specs/t.flm:8' in flat
    assert 'output = "runs/tiny/stages/rl1"' in flat  # derived: no spec line


def test_the_declaration_and_what_it_uses_are_quoted(experiment: ir.Experiment) -> None:
    text = explain_job(experiment, "rl1")  # the declaration name finds its job
    assert text.split("\nspec:\n", 1)[1] == (
        "  specs/t.flm:4: stage rl1 = grpo(cold_start, clean[easy, moderate]) {\n"
        "  specs/t.flm:5:   rewards = 1.0 * correct + 0.2 * form + 0.1 * brevity\n"
        "  specs/t.flm:6:   generations = 4  batch = 8  beta = 0.0  lr = 5e-5  "
        "max_completion_length = 48\n"
        "  specs/t.flm:7:   max_steps = 8\n"
        "  specs/t.flm:8:   until = plateau(reward, patience = 4)  # stop when the reward flattens\n"
        "  specs/t.flm:9: }\n"
        "\n"
        "declarations it uses:\n"
        "  stage cold_start\n"
        "  filter clean\n"
        '  specs/t.flm:1: reward correct = choice_match(tag = "answer")\n'
        '  specs/t.flm:2: reward form    = regex("^<think>.*</think><answer>[A-D]</answer>$")\n'
        "  specs/t.flm:3: reward brevity = length_penalty(max_tokens = 96)\n"
    )


def test_an_unknown_job_lists_the_jobs_and_suggests_one(experiment: ir.Experiment) -> None:
    with pytest.raises(ExplainError) as caught:
        explain_job(experiment, "grpo-rl1")
    assert str(caught.value) == (
        "no job 'grpo-rl1' in experiment 'tiny'; did you mean 'grpo_rl1'? (jobs: build_model_base, "
        "graph_load_medkg, sample_rare_dx, synthesize_questions, distill_cot, filter_clean, "
        "sft_cold_start, grpo_rl1, grpo_rl2, eval_cold_start, eval_rl1, eval_rl2, report)")
