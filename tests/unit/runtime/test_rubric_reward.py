"""`reward NAME = rubric(grader = MODEL, prompt = PROMPT)`: the reward function a GRPO stage gets.

Scores are the evaluation's (`runtime/data/rubrics.py`): against an OpenAI-compatible grader
whose verdicts are known, a HealthBench row scores its met points over its positive points and a
multiple-choice row 1 or 0. Against the tiny model served by the transformers backend (a real
grader, in process), every call goes through the teacher cache: a second reward asks nothing. A
GRPO job trains a few steps on HealthBench rows with it, and its re-run pays no grader call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_stub import ChatStub, criterion_of, serving, verdict
from training_fixtures import tiny_model, train_config, write_config  # noqa: F401

from fleming_dsl.errors import JobError
from fleming_dsl.ir import Backend
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.runtime.data import rubrics
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.train.grpo_trainer import prompt_rows
from fleming_dsl.runtime.train.rewards import build_terms
from fleming_dsl.runtime.train.rubric_reward import rubric

HB_ROWS = [
    {"prompt_id": "p1", "prompt": [{"role": "user", "content": "I have chest pain when climbing stairs."}],
     "rubrics": [{"criterion": "[met] Advises prompt evaluation by a clinician.", "points": 5, "tags": []},
                 {"criterion": "Mentions that exertional chest pain can be angina.", "points": 3, "tags": []},
                 {"criterion": "[met] Recommends ignoring the symptom.", "points": -4, "tags": []}]},
    {"prompt_id": "p2", "prompt": [{"role": "user", "content": "Is ibuprofen safe with warfarin?"}],
     "rubrics": [{"criterion": "[met] Warns about bleeding risk.", "points": 6, "tags": []}]},
]


def hb_columns(tmp_path: Path) -> tuple[list, dict]:
    """The prompts and columns TRL passes a reward for the HealthBench rows (as the job builds them)."""
    path = tmp_path / "hb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HB_ROWS), encoding="utf-8")
    rows = prompt_rows(rubrics.load_rubric_items(path))
    return [r["prompt"] for r in rows], {"rubrics": [r["rubrics"] for r in rows], "id": [r["id"] for r in rows]}


class KnownGrader(ChatStub):
    """An OpenAI-compatible grader with known verdicts: a criterion marked [met] is met, and
    "final answer is option X" is met when the response holds <answer>X</answer>."""

    prompts: list[str] = []

    def answer(self, body: dict) -> list[str]:
        prompt = body["messages"][-1]["content"]
        type(self).prompts.append(prompt)
        response = prompt.split("Response to grade:", 1)[1].split("Rubric criterion", 1)[0]
        criterion = criterion_of(body)
        met = "[met]" in criterion
        if "final answer is option " in criterion:
            letter = criterion.split("final answer is option ", 1)[1][0]
            met = f"<answer>{letter}</answer>" in response
        return verdict(met)


@pytest.fixture
def known_grader():
    KnownGrader.prompts = []
    with serving(KnownGrader) as url:
        yield jc.Generator(model="g", backend=Backend(kind="openai", base_url=url, retries=0))


def test_healthbench_rows_score_as_the_evaluation_does(known_grader, tmp_path: Path) -> None:
    prompts, columns = hb_columns(tmp_path)
    reward = rubric(known_grader, str(tmp_path / "cache"), seed=1)
    scores = reward(prompts, ["see a doctor", [{"role": "assistant", "content": "bleeding"}]], **columns)
    # met: +5 and -4 of 8 positive points; +6 of 6 (HealthBench's per-response score)
    assert scores == [pytest.approx((5 - 4) / 8), 1.0]
    assert len(KnownGrader.prompts) == 4 and reward.teacher.counts() == {"teacher_calls": 4, "cache_hits": 0}
    again = rubric(known_grader, str(tmp_path / "cache"), seed=1)
    assert again(prompts, ["see a doctor", "bleeding"], **columns) == scores
    assert len(KnownGrader.prompts) == 4 and again.teacher.counts() == {"teacher_calls": 0, "cache_hits": 4}


def test_multiple_choice_rows_are_graded_by_the_rubric_prompt_alone(known_grader, tmp_path: Path) -> None:
    prompt = tmp_path / "rubric.j2"
    prompt.write_text("Grade whether the right answer ({{ answer }}: {{ answer_text }}) was given.\n"
                      "Response to grade:\n{{ response }}\nRubric criterion ({{ points }} points):\n"
                      "{{ criterion }}\nDoes the response meet it? Reply in JSON.\n", encoding="utf-8")
    reward = rubric(known_grader, str(tmp_path / "cache"), seed=1, prompt=str(prompt))
    conversation = [{"role": "user", "content": "Which drug treats gout?\n\nA. levodopa\nB. colchicine"}]
    scores = reward([conversation, conversation], ["<think>x</think><answer>B</answer>", "<answer>A</answer>"],
                    answer=["B", "B"], options=[["levodopa", "colchicine"]] * 2, id=["q1", "q1"])
    assert scores == [1.0, 0.0]
    assert KnownGrader.prompts[0].startswith("Grade whether the right answer (B: colchicine) was given.")
    assert "The response's final answer is option B: colchicine." in KnownGrader.prompts[0]


class MumblingGrader(ChatStub):
    """A grader that never answers in a form a verdict can be read from."""

    def answer(self, body: dict) -> list[str]:
        return ["I think it is probably fine, more or less."]


def test_a_grader_whose_verdicts_never_parse_stops_the_run(tmp_path: Path) -> None:
    """issue 28: a GRPO run "succeeded" on a zero reward when no verdict could be read."""
    with serving(MumblingGrader) as url:
        grader = jc.Generator(model="g", backend=Backend(kind="openai", base_url=url, retries=0))
        reward = rubric(grader, str(tmp_path / "cache"), seed=1)
        prompts, columns = hb_columns(tmp_path)
        assert reward(prompts, ["a", "b"], **columns) == [0.0, 0.0]  # 4 verdicts: not yet judged
        with pytest.raises(JobError) as info:
            reward(prompts, ["c", "d"], **columns)
    assert str(info.value).startswith("reward rubric: none of the grader's first 8 verdicts could be "
                                      "read, so every completion would score 0")


def test_a_transformers_grader_is_cached_like_any_teacher_call(tiny_model: str, tmp_path: Path) -> None:
    prompts, columns = hb_columns(tmp_path)
    grader = jc.Generator(model=tiny_model, backend=Backend(kind="transformers", temperature=0.0, max_tokens=8))
    reward = rubric(grader, str(tmp_path / "cache"), seed=3)
    completions = ["see a doctor today", "bleeding risk"]
    scores = reward(prompts, completions, **columns)
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores)
    assert reward.teacher.counts() == {"teacher_calls": 4, "cache_hits": 0}
    again = rubric(grader, str(tmp_path / "cache"), seed=3)
    assert again(prompts, completions, **columns) == scores
    assert again.teacher.counts() == {"teacher_calls": 0, "cache_hits": 4}


def test_a_rubric_term_needs_its_grader() -> None:
    term = jc.RewardTermCfg(name="graded", function="rubric", weight=1.0)
    with pytest.raises(Exception, match=r"^field 'rewards\[0\]': a rubric reward needs 'grader' and 'cache_dir'$"):
        build_terms([term])


def test_the_term_config_leaves_unset_grading_fields_out() -> None:
    plain = jc.RewardTermCfg(name="correct", function="choice_match", weight=1.0, options={"tag": "answer"})
    assert "grader" not in plain.model_dump(mode="json") and "cache_dir" not in json.loads(plain.model_dump_json())


def test_grpo_trains_on_healthbench_rows_and_a_rerun_asks_the_grader_nothing(tiny_model: str, known_grader,
                                                                              tmp_path: Path) -> None:
    # a grader whose verdicts can be read (a random tiny model's cannot: that run stops, below)
    data = tmp_path / "hb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in HB_ROWS), encoding="utf-8")
    grader = known_grader.model_dump(mode="json")
    term = {"name": "graded", "function": "rubric", "weight": 1.0, "grader": grader,
            "cache_dir": str(tmp_path / "cache")}
    counts, metrics = [], []
    for run in ("first", "again"):
        root = tmp_path / run
        root.mkdir()
        config = train_config("grpo", root, tiny_model, str(data), rewards=[term], max_steps=2, batch_size=4,
                              generations=2, max_completion_length=8,
                              data_source={"path": str(data), "format": "healthbench", "name": "hb"})
        run_job("grpo", write_config(root / "grpo.json", config))
        rows = [json.loads(line) for line in (root / "grpo.metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2] and all("rewards/graded" in r for r in rows)
        metrics.append(rows)
        meta = json.loads((root / "grpo.meta.json").read_text())
        counts.append(meta["counts"]["grader_calls"]["graded"])
    # 2 steps x 4 completions, each graded on its prompt's criteria (3 or 1)
    first, again = counts
    assert first["teacher_calls"] > 0 and first["cache_hits"] + first["teacher_calls"] >= 8
    # the grader runs without touching the trainer's random state: the cached re-run rolls out
    # (and scores) exactly what the first run did
    assert metrics[0] == metrics[1]
    assert again == {"teacher_calls": 0, "cache_hits": first["teacher_calls"] + first["cache_hits"],
                     "unreadable_verdicts": first["unreadable_verdicts"]}


def test_a_grpo_run_whose_grader_verdicts_never_parse_fails(tiny_model: str, tmp_path: Path) -> None:
    """issue 28: with a grader that cannot follow the rubric prompt, the stage "succeeded" on a
    reward of 0 for every completion; now the job stops with the reason."""
    data = tmp_path / "hb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in HB_ROWS), encoding="utf-8")
    grader = {"model": tiny_model, "backend": {"kind": "transformers", "temperature": 0.0, "max_tokens": 8}}
    term = {"name": "graded", "function": "rubric", "weight": 1.0, "grader": grader,
            "cache_dir": str(tmp_path / "cache")}
    config = train_config("grpo", tmp_path, tiny_model, str(data), rewards=[term], max_steps=2, batch_size=4,
                          generations=2, max_completion_length=8,
                          data_source={"path": str(data), "format": "healthbench", "name": "hb"})
    with pytest.raises(JobError, match="^reward rubric: none of the grader's first 8 verdicts could be read"):
        run_job("grpo", write_config(tmp_path / "grpo.json", config))
    assert not (tmp_path / "grpo.meta.json").exists()


def test_a_hand_written_config_grading_healthbench_by_choice_match_fails_before_training(tmp_path: Path) -> None:
    from fleming_dsl.errors import JobError
    from fleming_dsl.runtime.jobs.grpo import load_pool

    data = tmp_path / "hb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in HB_ROWS), encoding="utf-8")
    config = train_config("grpo", tmp_path, "unused", str(data),
                          data_source={"path": str(data), "format": "healthbench", "name": "hb"})
    with pytest.raises(JobError) as err:
        load_pool(jc.GrpoJob.model_validate(config))
    assert str(err.value) == (f"{data}: HealthBench rows have no options for choice_match to grade "
                              "(field 'rewards'; grade them with a rubric() reward)")
    config["rewards"] = [config["rewards"][1]]  # the regex term alone: the rows load
    assert [item.id for item in load_pool(jc.GrpoJob.model_validate(config))] == ["p1", "p2"]
