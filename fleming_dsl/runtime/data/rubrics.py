"""Rubric-graded data in HealthBench's published layout, graded by a declared teacher.

A row (HealthBench JSONL, as released): `prompt_id`, `prompt` (a list of chat messages ending
with the user turn), `rubrics` (a list of `{criterion, points, tags}`; negative points mark what
a response must not do), `example_tags`. A response is graded criterion by criterion: the grader
model reads the conversation, the response and one criterion (a rubric prompt, `criteria_met`
true/false in JSON), every call going through the cached teacher like any other teacher call.
The score of a response is the points of the criteria it meets over the positive points available
(HealthBench's score; it can fall below 0 when a response meets negative criteria), and a set's
score is the mean clipped to [0, 1]. The same grading is a GRPO reward
(`reward NAME = rubric(grader = MODEL)`, runtime/train/rubric_reward.py): one score per completion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.io import read_jsonl
from fleming_dsl.runtime.teachers.protocol import Request, Teacher
from fleming_dsl.vocabulary import RUBRIC_VARIABLES


def default_prompt() -> str:
    """The built-in rubric prompt (templates/rubric/grader.j2, shipped in the wheel)."""
    from fleming_dsl.resources import resource_dir

    return str(resource_dir("templates") / "rubric" / "grader.j2")


@dataclass(frozen=True)
class Criterion:
    criterion: str
    points: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RubricItem:
    id: str
    messages: tuple[dict[str, str], ...]
    rubrics: tuple[Criterion, ...]
    tags: tuple[str, ...] = ()
    # extra variables for the rubric prompt: a multiple-choice item's answer (see `choice_item`)
    reference: tuple[tuple[str, Any], ...] = ()


def _row_item(row: Any, where: str) -> RubricItem:
    if not isinstance(row, dict):
        raise JobError(f"{where}: row must be a JSON object")
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in prompt):
        raise JobError(f"{where}: field 'prompt' must be a non-empty list of {{role, content}} messages")
    rubrics = row.get("rubrics")
    if not isinstance(rubrics, list) or not rubrics:
        raise JobError(f"{where}: field 'rubrics' must be a non-empty list")
    criteria = []
    for number, rubric in enumerate(rubrics):
        if not isinstance(rubric, dict) or not isinstance(rubric.get("criterion"), str):
            raise JobError(f"{where}: field 'rubrics[{number}].criterion' must be a string")
        points = rubric.get("points")
        if isinstance(points, bool) or not isinstance(points, (int, float)):
            raise JobError(f"{where}: field 'rubrics[{number}].points' must be a number")
        criteria.append(Criterion(rubric["criterion"], float(points), tuple(map(str, rubric.get("tags") or ()))))
    if not any(c.points > 0 for c in criteria):
        raise JobError(f"{where}: field 'rubrics' has no criterion with positive points")
    return RubricItem(id=str(row.get("prompt_id") or row.get("id") or where),
                      messages=tuple({"role": str(m["role"]), "content": m["content"]} for m in prompt),
                      rubrics=tuple(criteria), tags=tuple(map(str, row.get("example_tags") or ())))


def criteria_json(item: RubricItem) -> str:
    """An item's criteria as HealthBench writes them (one dataset column of a GRPO stage)."""
    return json.dumps([{"criterion": c.criterion, "points": c.points, "tags": list(c.tags)} for c in item.rubrics],
                      ensure_ascii=False)


def rubric_item(id: str, messages: Sequence[dict[str, str]], criteria: str) -> RubricItem:
    """An item back from `criteria_json` and the conversation it grades."""
    return _row_item({"prompt_id": id, "prompt": list(messages), "rubrics": json.loads(criteria)}, id)


def choice_item(id: str, messages: Sequence[dict[str, str]], answer: str, options: dict[str, str]) -> RubricItem:
    """A multiple-choice item as a one-criterion rubric (1 point: the right option is the final
    answer), so a rubric prompt alone grades it; the prompt also sees `answer`, `answer_text` and
    `options` (letter -> text)."""
    text = options.get(answer, "")
    criterion = f"The response's final answer is option {answer}" + (f": {text}." if text else ".")
    return RubricItem(id=id, messages=tuple(messages), rubrics=(Criterion(criterion, 1.0),),
                      reference=(("answer", answer), ("answer_text", text), ("options", dict(options))))


def load_rubric_items(path: str | Path) -> list[RubricItem]:
    """Every row of a HealthBench-layout JSONL file; a bad row fails with file:line and the field."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"{path}: dataset file not found")
    try:
        rows = list(read_jsonl(path))
    except ValueError as err:
        raise JobError(f"{path}: not JSON lines ({err})") from None
    return [_row_item(row, f"{path}:{number}") for number, row in enumerate(rows, 1)]


def grading_request(item: RubricItem, response: str, criterion: Criterion, prompt_path: str) -> Request:
    from fleming_dsl.runtime.prompting import render

    variables = {"conversation": list(item.messages), "response": response,
                 "criterion": criterion.criterion, "points": criterion.points, **dict(item.reference)}
    if not variables.keys() <= set(RUBRIC_VARIABLES):  # what `fleming check` holds prompts to
        raise JobError(f"rubric prompt variables {sorted(variables.keys() - set(RUBRIC_VARIABLES))} "
                       "are not in vocabulary.py RUBRIC_VARIABLES")
    text = render(prompt_path, **variables)
    return Request(task="grade", messages=({"role": "user", "content": text},),
                   context={"criterion": criterion.criterion})


_MET = re.compile(r'"criteria_met"\s*:\s*(true|false)', re.IGNORECASE)


def criteria_met(answer: str) -> bool | None:
    """The grader's verdict: JSON `criteria_met`, else a leading yes/no; None when unreadable."""
    text = answer.strip()
    try:
        data = json.loads(text[text.find("{"): text.rfind("}") + 1]) if "{" in text else None
        if isinstance(data, dict) and isinstance(data.get("criteria_met"), bool):
            return data["criteria_met"]
    except ValueError:
        pass
    match = _MET.search(text)
    if match:
        return match.group(1).lower() == "true"
    first = text.split(None, 1)[0].strip(".,:;!").lower() if text else ""
    return {"yes": True, "no": False}.get(first)


def score(criteria: Sequence[Criterion], met: Sequence[bool | None]) -> float:
    """Points of the met criteria over the positive points available (an unreadable verdict
    counts as not met)."""
    possible = sum(c.points for c in criteria if c.points > 0)
    achieved = sum(c.points for c, m in zip(criteria, met) if m)
    return achieved / possible


def grade(teacher: Teacher, items: Sequence[RubricItem], responses: Sequence[str],
          prompt_path: str | None = None) -> list[dict[str, Any]]:
    """One record per response: its score, the verdict per criterion, and unreadable verdicts."""
    prompt_path = prompt_path or default_prompt()
    requests, spans = [], []
    for item, response in zip(items, responses, strict=True):
        start = len(requests)
        requests += [grading_request(item, response, c, prompt_path) for c in item.rubrics]
        spans.append((start, len(requests)))
    answers = teacher.complete(requests)
    out = []
    for item, (start, end) in zip(items, spans):
        verdicts = [criteria_met(a.texts[0] if a.texts else "") for a in answers[start:end]]
        out.append({"id": item.id, "score": score(item.rubrics, verdicts),
                    "met": [bool(v) for v in verdicts], "unreadable": sum(v is None for v in verdicts)})
    return out


def set_score(records: Sequence[dict[str, Any]]) -> float:
    """HealthBench's aggregate: the mean response score, clipped to [0, 1]."""
    if not records:
        return 0.0
    return min(1.0, max(0.0, sum(r["score"] for r in records) / len(records)))
