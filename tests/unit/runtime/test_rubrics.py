"""HealthBench-layout rubric data: loading, the grader's verdicts, HealthBench's score, grading
through the cached teacher, and `evaluate [...] on [healthbench] { grader = judge }` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_stub import ChatStub, criterion_of, serving, verdict
from flm_fixtures import MINIMAL, write_project
from training_fixtures import tiny_model  # noqa: F401

from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import JobError, SpecError
from fleming_dsl.ir import Backend
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan
from fleming_dsl.runtime.data import rubrics
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.teachers.cache import CachedTeacher, DiskCache

ROWS = [
    {"prompt_id": "p1", "prompt": [{"role": "user", "content": "I have chest pain when climbing stairs."}],
     "rubrics": [{"criterion": "[met] Advises prompt evaluation by a clinician.", "points": 5,
                  "tags": ["axis:completeness"]},
                 {"criterion": "Mentions that exertional chest pain can be angina.", "points": 3, "tags": []},
                 {"criterion": "[met] Recommends ignoring the symptom.", "points": -4, "tags": []}],
     "example_tags": ["theme:emergency_referrals"]},
    {"prompt_id": "p2", "prompt": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Is ibuprofen safe with warfarin?"}],
     "rubrics": [{"criterion": "[met] Warns about bleeding risk.", "points": 6, "tags": []}],
     "example_tags": []},
]


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_healthbench_rows(tmp_path: Path) -> None:
    items = rubrics.load_rubric_items(write_rows(tmp_path / "hb.jsonl", ROWS))
    assert [i.id for i in items] == ["p1", "p2"]
    assert items[0].rubrics[2] == rubrics.Criterion("[met] Recommends ignoring the symptom.", -4.0, ())
    assert items[1].messages[0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": [], "rubrics": ROWS[0]["rubrics"]},
     "field 'prompt' must be a non-empty list of {role, content} messages"),
    ({"prompt": ROWS[0]["prompt"], "rubrics": [{"criterion": "x", "points": "5"}]},
     "field 'rubrics[0].points' must be a number"),
    ({"prompt": ROWS[0]["prompt"], "rubrics": [{"criterion": "x", "points": -1}]},
     "field 'rubrics' has no criterion with positive points"),
])
def test_bad_rows_are_located(tmp_path: Path, row: dict, message: str) -> None:
    path = write_rows(tmp_path / "hb.jsonl", [ROWS[1], row])
    with pytest.raises(JobError) as err:
        rubrics.load_rubric_items(path)
    assert str(err.value) == f"{path}:2: {message}"


def test_verdicts_and_score() -> None:
    assert rubrics.criteria_met('{"explanation": "ok", "criteria_met": true}') is True
    assert rubrics.criteria_met('Sure. {"criteria_met": false, "explanation": "no"}') is False
    assert rubrics.criteria_met("Yes, it does.") is True and rubrics.criteria_met("no") is False
    assert rubrics.criteria_met("I cannot tell") is None
    crit = [rubrics.Criterion("a", 5), rubrics.Criterion("b", 3), rubrics.Criterion("c", -4)]
    assert rubrics.score(crit, [True, False, True]) == pytest.approx(1 / 8)
    assert rubrics.score(crit, [False, False, True]) == pytest.approx(-0.5)
    assert rubrics.set_score([{"score": -0.5}, {"score": 0.25}]) == 0.0  # clipped, as published


class Grader:
    """A backend that meets exactly the criteria marked [met]; counts what it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    def identity(self):
        return {"backend": "test-grader"}

    def key_extra(self, request):
        return {}

    def generate(self, requests):
        self.asked += len(requests)
        return [[json.dumps({"explanation": "-", "criteria_met": "[met]" in r.context["criterion"]})]
                for r in requests]


def test_grading_goes_through_the_cached_teacher(tmp_path: Path) -> None:
    items = rubrics.load_rubric_items(write_rows(tmp_path / "hb.jsonl", ROWS))
    backend = Grader()
    teacher = CachedTeacher(backend, DiskCache(tmp_path / "cache"))
    records = rubrics.grade(teacher, items, ["see a doctor", "bleeding risk"])
    assert [(r["id"], r["met"]) for r in records] == [("p1", [True, False, True]), ("p2", [True])]
    assert records[0]["score"] == pytest.approx((5 - 4) / 8) and records[1]["score"] == 1.0
    again = CachedTeacher(backend, DiskCache(tmp_path / "cache"))
    rubrics.grade(again, items, ["see a doctor", "bleeding risk"])
    assert backend.asked == 4 and again.counts() == {"teacher_calls": 0, "cache_hits": 4}


# ---------------------------------------------------------------- the spec and the eval job


HB = 'dataset hb = healthbench("test.jsonl")\n'


def spec(evaluate: str) -> str:
    text = MINIMAL.replace('dataset test = mcq("test.jsonl")\n', 'dataset test = mcq("test.jsonl")\n' + HB)
    text = text.replace("model teacher = template()",
                        'model teacher = template()\nmodel judge = openai(base_url = "http://x/v1", model = "g")')
    return text.replace("evaluate [rl] on [test]", evaluate)


def first_error(tmp_path: Path, text: str) -> tuple[str, str | None]:
    with pytest.raises(SpecError) as info:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    return str(info.value).splitlines()[0].split(": error: ", 1)[1], info.value.diagnostics[0].hint


def test_planner_gives_the_eval_its_grader(tmp_path: Path) -> None:
    exp = load_experiment(write_project(tmp_path, spec("evaluate [rl] on [test, hb] { grader = judge }")),
                          project_root=tmp_path)
    job = plan(exp, "gen").job("eval_rl").config
    assert job.grader == jc.Generator(model="g", backend=Backend(kind="openai", base_url="http://x/v1"))
    assert (job.cache_dir, job.rubric_prompt) == ("runs/t/cache/teacher", None)


@pytest.mark.parametrize(("evaluate", "message", "hint"), [
    ("evaluate [rl] on [test, hb]", "benchmark 'hb' is graded against rubrics and needs a grader",
     "add { grader = judge }, a model with a backend"),
    ("evaluate [rl] on [test] { grader = judge }",
     "'grader' grades rubric benchmarks (healthbench); none is evaluated here",
     "remove it, or evaluate on a healthbench() dataset"),
    ("evaluate [rl] on [hb] { grader = teacher }", "the grader 'teacher' has no generation backend",
     "give model teacher a block such as { backend = vllm(tp = 8) }"),
    ("evaluate [rl] on [hb] { grader = hb }", "'hb' is a dataset, but the rubric grader must be a model",
     "declared model names: base, teacher, judge"),
])
def test_bad_rubric_evaluations(tmp_path: Path, evaluate: str, message: str, hint: str) -> None:
    assert first_error(tmp_path, spec(evaluate)) == (message, hint)


class MarkedGrader(ChatStub):
    """An OpenAI-compatible grader meeting the criteria marked [met] in its prompt."""

    asked = 0

    def answer(self, body: dict) -> list[str]:
        type(self).asked += 1
        return verdict("[met]" in criterion_of(body))


@pytest.mark.slow
def test_eval_job_grades_a_rubric_benchmark(tiny_model: str, tmp_path: Path) -> None:
    MarkedGrader.asked = 0
    with serving(MarkedGrader) as url:
        cfg = jc.EvalJob(job="eval_rl", experiment="t", seed=1, meta=str(tmp_path / "e.meta.json"), target="rl",
                         model=tiny_model, benchmarks=(jc.Benchmark(
                             name="hb", path=str(write_rows(tmp_path / "hb.jsonl", ROWS)), format="healthbench"),),
                         samples=1, temperature=0.0, max_tokens=8, limit=None, output=str(tmp_path / "eval.json"),
                         grader=jc.Generator(model="g", backend=Backend(kind="openai", base_url=url)),
                         cache_dir=str(tmp_path / "cache"))
        path = tmp_path / "eval.config.json"
        path.write_text(cfg.model_dump_json())
        run_job("eval", str(path))
        results = json.loads((tmp_path / "eval.json").read_text())
        hb = results["rubric_benchmarks"]["hb"]
        assert (hb["n"], hb["score"], hb["unreadable_verdicts"]) == (2, round((1 / 8 + 1) / 2, 6), 0)
        assert MarkedGrader.asked == 4
        run_job("eval", str(path))  # the grader's verdicts come from the cache
        assert MarkedGrader.asked == 4
