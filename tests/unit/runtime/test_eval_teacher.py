"""`evaluate [teacher]` runs through the teacher's own backend (issue 11, finding 3): here an
OpenAI-compatible endpoint, cached like any teacher call; a template() teacher is refused at check
time (tests/unit/check/test_rules.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_stub import ChatStub, serving
from flm_fixtures import MINIMAL, write_project

from fleming_dsl.compiler import load_experiment
from fleming_dsl.ir import Backend
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan
from fleming_dsl.runtime.jobs import run_job


class AnswersB(ChatStub):
    asked: list[dict] = []

    def answer(self, body: dict) -> list[str]:
        AnswersB.asked.append(body)
        return ["<think>b fits</think><answer>B</answer>"] * body.get("n", 1)


@pytest.fixture
def endpoint():
    AnswersB.asked = []
    with serving(AnswersB) as url:
        yield url


def test_the_planner_evaluates_an_openai_teacher_through_its_backend(tmp_path: Path) -> None:
    text = MINIMAL.replace("model teacher = template()",
                           'model judge = openai(base_url = "http://x/v1", model = "served-m")\n'
                           "model teacher = template()")
    text = text.replace("evaluate [rl] on [test]", "evaluate [rl, judge] on [test] { temperature = 0.0  max_tokens = 64 }")
    exp = load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    job = plan(exp, "generated/t").job("eval_judge")
    assert job.config.teacher == jc.Generator(model="served-m", backend=Backend(
        kind="openai", base_url="http://x/v1", temperature=0.0, max_tokens=64))
    assert job.config.cache_dir == "runs/t/cache/teacher"
    assert plan(exp, "generated/t").job("eval_rl").config.teacher is None


def test_an_openai_teacher_is_evaluated_and_its_answers_cached(tmp_path: Path, endpoint: str) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": str(i), "question": f"q{i}?", "options": {"A": "x", "B": "y"},
                                         "answer": "B" if i % 2 else "A"}) + "\n" for i in range(4)))
    cfg = jc.EvalJob(job="eval_judge", experiment="t", seed=1, meta=str(tmp_path / "e.meta.json"),
                     target="judge", model="served-m",
                     benchmarks=(jc.Benchmark(name="b", path=str(bench), format="mcq"),),
                     samples=1, temperature=0.0, max_tokens=64, limit=None,
                     output=str(tmp_path / "eval.json"),
                     teacher=jc.Generator(model="served-m", backend=Backend(kind="openai", base_url=endpoint)),
                     cache_dir=str(tmp_path / "cache"))
    config = tmp_path / "eval.config.json"
    config.write_text(cfg.model_dump_json())
    run_job("eval", str(config))
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["benchmarks"]["b"]["accuracy"] == 0.5 and results["format_rate"] == 1.0
    assert len(AnswersB.asked) == 4 and AnswersB.asked[0]["model"] == "served-m"
    meta = json.loads((tmp_path / "e.meta.json").read_text())
    assert (meta["counts"]["teacher_calls"], meta["counts"]["cache_hits"]) == (4, 0)
    run_job("eval", str(config))  # again: every answer from the cache
    meta = json.loads((tmp_path / "e.meta.json").read_text())
    assert (meta["counts"]["teacher_calls"], meta["counts"]["cache_hits"]) == (0, 4)
    assert len(AnswersB.asked) == 4
