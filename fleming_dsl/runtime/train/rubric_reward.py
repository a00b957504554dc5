"""`reward NAME = rubric(grader = MODEL, prompt = PROMPT)`: a GRPO reward graded by a teacher.

Each completion is graded as a rubric benchmark's responses are (`runtime/data/rubrics.py`, one
implementation for both): the grader reads the conversation, the completion and one criterion
through the rubric prompt and answers `criteria_met`; the reward is HealthBench's score, the
points of the met criteria over the positive points (below 0 when a completion meets negative
criteria). Every grader call goes through the teacher cache, so a re-run (same seed, same
rollouts) asks the grader nothing.

Which criteria: a HealthBench-format stage's rows carry their own (`rubrics` column, the item's
`criterion`/`points`); a multiple-choice row has none and is graded against one criterion, "the
final answer is the right option" (`rubrics.choice_item`), so a rubric prompt alone grades it.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.data import items as item_model
from fleming_dsl.runtime.data import rubrics
from fleming_dsl.runtime.teachers import TeacherError, make_teacher
from fleming_dsl.runtime.train.rewards import RewardFn, completion_text


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in prompt]


def graded_items(prompts: Sequence[Any], columns: dict[str, Any]) -> list[rubrics.RubricItem]:
    """One rubric item per completion, from the dataset columns TRL passes to a reward."""
    ids = columns.get("id") or [f"row-{i}" for i in range(len(prompts))]
    criteria = columns.get("rubrics")
    if criteria is not None:
        return [rubrics.rubric_item(str(i), _messages(p), c) for i, p, c in zip(ids, prompts, criteria)]
    answers, options = columns.get("answer"), columns.get("options")
    if answers is None:
        raise JobError("reward rubric: the training rows have neither 'rubrics' (HealthBench) nor "
                       "'answer' (multiple choice) to grade against")
    options = options if options is not None else [[] for _ in prompts]
    return [rubrics.choice_item(str(i), _messages(p), str(a), dict(zip(item_model.LETTERS, o)))
            for i, p, a, o in zip(ids, prompts, answers, options)]


@contextlib.contextmanager
def rng_kept() -> Iterator[None]:
    """Run a grader without touching the trainer's random state: a local grader seeds python,
    numpy and torch (transformers' set_seed) before it generates, and whether it generates at all
    depends on the cache, so without this a re-run served from the cache would roll out other
    completions than the run that filled it."""
    import numpy as np
    import torch

    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


# verdicts read before a grader none of whose verdicts could be read stops the run: past this
# many, the reward is 0 for every completion and the stage would "succeed" having learnt nothing
UNREADABLE_STOP = 8


def rubric(grader: Any, cache_dir: str, seed: int, prompt: str | None = None) -> RewardFn:
    """The reward function of a `rubric()` reward: `grader` is a job config's `Generator`."""
    teacher = make_teacher(grader, cache_dir, seed)
    prompt_path = prompt or rubrics.default_prompt()

    def reward(prompts, completions, **columns) -> list[float]:
        graded = graded_items(prompts, columns)
        try:
            with rng_kept():
                records = rubrics.grade(teacher, graded, [completion_text(c) for c in completions], prompt_path)
        except TeacherError as err:
            raise JobError(f"reward rubric: the grader failed: {err}") from None
        reward.unreadable += sum(r["unreadable"] for r in records)
        reward.verdicts += sum(len(r["met"]) for r in records)
        if reward.verdicts >= UNREADABLE_STOP and reward.unreadable == reward.verdicts:
            raise JobError(f"reward rubric: none of the grader's first {reward.verdicts} verdicts "
                           "could be read, so every completion would score 0; the grader must answer "
                           'in JSON such as {"criteria_met": true} (see the rubric prompt '
                           f"{prompt_path})")
        return [float(r["score"]) for r in records]

    reward.teacher = teacher  # type: ignore[attr-defined]  # the job records its calls and hits
    reward.unreadable = 0  # type: ignore[attr-defined]  # verdicts the grader gave in no readable form
    reward.verdicts = 0  # type: ignore[attr-defined]  # verdicts asked for so far
    return reward
