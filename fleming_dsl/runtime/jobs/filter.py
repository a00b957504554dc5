"""filter: the multi-stage data filter, steps in the order the spec lists them.

- format: drops structurally broken items (see `format_problem`);
- verify_label: k = votes judge answers per item; kept when >= agree match the label; failures
  go to the review file (on_fail = review) or are dropped;
- dedupe: exact (normalised stem + option set) or MinHash-LSH near duplicates (first one kept);
- decontaminate: drops an item whose question shares any `ngram`-word n-gram with a question
  of the declared evaluation sets;
- difficulty: a pass-like score per item, by the pass rate of k samples of a model or by an LLM
  grader's rubric level (easy 1.0, moderate 0.5, hard 0.0), bucketed with the thresholds.
Each step reports how many it removed and why (`ctx.counts["removed"]`, `["reasons"]`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import (
    DecontaminateStep,
    DedupeStep,
    DifficultyStep,
    FilterJob,
    FormatStep,
    VerifyLabelStep,
)
from fleming_dsl.runtime.data import textsim
from fleming_dsl.runtime.data.formats import load_source
from fleming_dsl.runtime.data.items import (
    Item,
    extract_answer,
    extract_choice,
    is_well_formed,
    prompt_messages,
)
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.prompting import PromptError, render
from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher
from fleming_dsl.runtime.teachers.batching import complete_batched

GRADE_SCORES = {"easy": 1.0, "moderate": 0.5, "hard": 0.0}
_GRADE = re.compile(r"\b(easy|moderate|hard)\b", re.IGNORECASE)
# Mojibake of UTF-8 read as Latin-1/CP1252 (Ã©, â€™), the replacement character, control chars.
_DEBRIS = re.compile(r"Ã[\x80-\xbf©¨§ ]|â€|Â[\xa0-\xbf]|\ufffd|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ROLES = {"system", "user", "assistant"}


def inputs(cfg: FilterJob) -> list[str]:
    paths = [cfg.source.path]
    for step in cfg.steps:
        if isinstance(step, DecontaminateStep):
            paths += [source.path for source in step.against]
        if isinstance(step, DifficultyStep) and step.method == "grader":
            paths.append(step.prompt)
    return paths


# ---------------------------------------------------------------- format


def messages_problem(item: Item) -> str | None:
    messages = item.messages
    if not all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
               for m in messages):
        return "malformed messages"
    if not messages or messages[-1]["role"] != "assistant":
        return "malformed messages"
    final = messages[-1]["content"]
    # the worked answer names its option by letter or by the option's exact text
    if not is_well_formed(final, True) or extract_answer(final, item.options, "text")[0] is None:
        return "malformed messages"
    return None


def format_problem(item: Item) -> str | None:
    """Why an item is unusable, or None."""
    texts = [item.question, *item.options.values()]
    if not item.question.strip() or any(not t.strip() for t in item.options.values()):
        return "empty text"
    if len(item.options) < 2:
        return "fewer than 2 options"
    if list(item.options) != [chr(ord("A") + i) for i in range(len(item.options))]:
        return "option letters not A.. in order"
    normalised = [" ".join(textsim.words(t)) for t in item.options.values()]
    if len(set(normalised)) != len(normalised):
        return "duplicate options"
    if item.answer not in item.options:
        return "answer not among options"
    if any(_DEBRIS.search(t) for t in texts):
        return "encoding debris"
    if item.messages is not None:
        return messages_problem(item)
    return None


def step_format(items: list[Item], reasons: Counter) -> list[Item]:
    kept = []
    for item in items:
        problem = format_problem(item)
        if problem:
            reasons[problem] += 1
        else:
            kept.append(item)
    return kept


# ---------------------------------------------------------------- verify_label


def answer_requests(items: list[Item], n: int) -> list[Request]:
    return [Request(task="answer", messages=tuple(prompt_messages(item)), n=n,
                    context={"item": item.model_dump(exclude_none=True)}) for item in items]


def match_counts(items: list[Item], responses: list[Any]) -> tuple[list[int], int]:
    """Per item, how many answers match the label; and how many answers had no letter."""
    matches, unreadable = [], 0
    for item, response in zip(items, responses):
        letters = [extract_choice(text, "".join(item.options)) for text in response.texts]
        unreadable += sum(letter is None for letter in letters)
        matches.append(sum(letter == item.answer for letter in letters))
    return matches, unreadable


def step_verify(cfg: FilterJob, step: VerifyLabelStep, items: list[Item], reasons: Counter,
                review: list[Item], counts: dict[str, Any]) -> list[Item]:
    judge = make_teacher(step.judge, cfg.cache_dir, cfg.seed)
    responses = complete_batched(judge, answer_requests(items, step.votes), "verify_label")
    matches, unreadable = match_counts(items, responses)
    kept = []
    for item, match in zip(items, matches):
        if match >= step.agree:
            kept.append(item)
            continue
        reasons[f"fewer than {step.agree} of {step.votes} votes match the label"] += 1
        if step.on_fail == "review":
            review.append(item.model_copy(update={"provenance": {
                **item.provenance, "label_votes": {"matching": match, "votes": step.votes}}}))
    _add_teacher_counts(counts, judge, unreadable)
    return kept


def _add_teacher_counts(counts: dict[str, Any], teacher: Any, unreadable: int) -> None:
    for key, value in teacher.counts().items():
        counts[key] = counts.get(key, 0) + value
    counts["malformed"] = counts.get("malformed", 0) + unreadable


# ---------------------------------------------------------------- dedupe / decontaminate


def _path_key(item: Item) -> str | None:
    """The sampled path an item is a variant of (synthesize `variants`), else None."""
    if "variant" not in (item.provenance or {}):
        return None
    return f"{item.source}:{item.provenance.get('id')}"


def step_dedupe(cfg: FilterJob, step: DedupeStep, items: list[Item], reasons: Counter
                ) -> list[Item]:
    """Exact then near duplicates, first one kept. The variants of one sampled path are one
    question here: only the first variant is compared, and the others follow its fate."""
    firsts = [item for item in items if not (item.provenance or {}).get("variant")]
    kept = {id(item) for item in _dedupe(cfg, step, firsts, reasons)}
    dropped_paths = {_path_key(item) for item in firsts if id(item) not in kept} - {None}
    result = []
    for item in items:
        if not (item.provenance or {}).get("variant"):
            if id(item) in kept:
                result.append(item)
        elif _path_key(item) in dropped_paths:
            reasons["variant of a removed duplicate"] += 1
        else:
            result.append(item)
    return result


def _dedupe(cfg: FilterJob, step: DedupeStep, items: list[Item], reasons: Counter) -> list[Item]:
    seen: set[str] = set()
    unique = []
    for item in items:
        key = textsim.exact_key(item)
        if key in seen:
            reasons["exact duplicate"] += 1
        else:
            seen.add(key)
            unique.append(item)
    if step.method == "exact":
        return unique
    near = textsim.near_duplicates(unique, step.threshold, seed=cfg.seed or 1)
    reasons[f"near duplicate (minhash jaccard >= {step.threshold})"] += len(near)
    return [item for index, item in enumerate(unique) if index not in near]


def step_decontaminate(step: DecontaminateStep, items: list[Item], reasons: Counter,
                       evidence: list[dict[str, str]]) -> list[Item]:
    index = textsim.NgramIndex((eval_item.question for source in step.against
                                for eval_item in load_source(source)),
                               step.ngram)
    kept = []
    for item in items:
        gram = index.shared(item.question)
        if gram is None:
            kept.append(item)
            continue
        reasons[f"shares a {step.ngram}-gram with an evaluation question"] += 1
        evidence.append({"id": item.id, "ngram": gram})
    return kept


# ---------------------------------------------------------------- difficulty


def bucket(score: float, step: DifficultyStep) -> str:
    if score >= step.easy:
        return "easy"
    return "moderate" if score >= step.moderate else "hard"


def grade_requests(step: DifficultyStep, items: list[Item]) -> list[Request]:
    requests = []
    for item in items:
        user = render(step.prompt, question=item.question, options=item.options,
                      answer=item.answer, answer_text=item.options[item.answer])
        requests.append(Request(task="grade", messages=({"role": "user", "content": user},),
                                context={"item": item.model_dump(exclude_none=True)}))
    return requests


def step_difficulty(cfg: FilterJob, step: DifficultyStep, items: list[Item],
                    counts: dict[str, Any]) -> list[Item]:
    """Annotates `pass_rate` and `difficulty`; removes nothing. An unreadable grade counts as
    malformed and scores 0.5 (moderate), the rubric's middle, rather than dropping the item."""
    model = make_teacher(step.model, cfg.cache_dir, cfg.seed)
    if step.method == "pass_rate":
        responses = complete_batched(model, answer_requests(items, step.samples), "pass rate")
        matches, unreadable = match_counts(items, responses)
        scores = [m / step.samples for m in matches]
    else:
        # A grader's answer is a level, not a pass rate: the item keeps the level as its bucket
        # and no pass rate (the report shows levels as levels).
        responses = complete_batched(model, grade_requests(step, items), "grader")
        levels = [_GRADE.findall(r.texts[0] if r.texts else "") for r in responses]
        unreadable = sum(not found for found in levels)
        _add_teacher_counts(counts, model, unreadable)
        return [item.model_copy(update={"pass_rate": None,
                                        "difficulty": found[-1].lower() if found else "moderate"})
                for item, found in zip(items, levels)]
    _add_teacher_counts(counts, model, unreadable)
    return [item.model_copy(update={"pass_rate": score, "difficulty": bucket(score, step)})
            for item, score in zip(items, scores)]


# ---------------------------------------------------------------- the job


def run_steps(cfg: FilterJob, items: list[Item], ctx: JobContext) -> tuple[list[Item], list[Item]]:
    removed = {"format": 0, "verify_label": 0, "dedupe": 0, "decontaminate": 0}
    reasons: dict[str, Counter] = defaultdict(Counter)
    teacher_counts: dict[str, Any] = {}
    review: list[Item] = []
    evidence: list[dict[str, str]] = []
    for step in cfg.steps:
        before = len(items)
        with ctx.timed(step.step):
            if isinstance(step, FormatStep):
                items = step_format(items, reasons["format"])
            elif isinstance(step, VerifyLabelStep):
                items = step_verify(cfg, step, items, reasons["verify_label"], review,
                                    teacher_counts)
            elif isinstance(step, DedupeStep):
                items = step_dedupe(cfg, step, items, reasons["dedupe"])
            elif isinstance(step, DecontaminateStep):
                items = step_decontaminate(step, items, reasons["decontaminate"], evidence)
            else:
                items = step_difficulty(cfg, step, items, teacher_counts)
        if step.step in removed:
            removed[step.step] += before - len(items)
    ctx.counts.update({"removed": removed,
                       "reasons": {k: dict(sorted(v.items())) for k, v in reasons.items()},
                       **teacher_counts})
    ctx.metrics["contamination_examples"] = evidence[:20]
    return items, review


def run(cfg: FilterJob, ctx: JobContext) -> None:
    with ctx.timed("load"):
        items = load_source(cfg.source)
    total = len(items)
    try:
        kept, review = run_steps(cfg, items, ctx)
    except (PromptError, TeacherError) as err:
        raise JobError(str(err)) from None
    if not kept:  # an empty training set would look like a finished filter
        removed = ", ".join(f"{k} {v}" for k, v in ctx.counts.get("removed", {}).items() if v)
        raise JobError(f"{cfg.job}: no items left of {total} (removed: {removed or 'none'}"
                       f"{f'; {len(review)} sent to review' if review else ''}); "
                       "nothing for later jobs to use")
    write_jsonl(cfg.output, (item.model_dump(exclude_none=True) for item in kept))
    write_jsonl(cfg.review, (item.model_dump(exclude_none=True) for item in review))
    buckets = Counter(item.difficulty for item in kept if item.difficulty)
    ctx.counts.update({"input": total, "kept": len(kept), "review": len(review),
                       "buckets": {name: buckets.get(name, 0)
                                   for name in ("easy", "moderate", "hard")}})
    by_bucket: dict[str, list[float]] = defaultdict(list)
    for item in kept:
        if item.difficulty and item.pass_rate is not None:
            by_bucket[item.difficulty].append(item.pass_rate)
    ctx.metrics["pass_rate_by_bucket"] = {name: round(sum(v) / len(v), 4)
                                          for name, v in sorted(by_bucket.items())}
    methods = [step.method for step in cfg.steps if isinstance(step, DifficultyStep)]
    if methods:
        ctx.metrics["difficulty_method"] = methods[-1]
