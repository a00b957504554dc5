"""filter: the multi-stage data filter, steps in the order the spec lists them.

- format: drops structurally broken items, and worked answers with encoding debris (see
  `format_problem`);
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
from fleming_dsl.ir import BUCKETS, EASY, HARD, MODERATE, REMOVING_STEPS
from fleming_dsl.plan.jobconfig import (
    DecontaminateStep,
    DedupeStep,
    DifficultyStep,
    FilterJob,
    FormatStep,
    VerifyLabelStep,
)
from fleming_dsl.runtime.data import shards, textsim
from fleming_dsl.runtime.data.formats import load_source
from fleming_dsl.runtime.data.items import (
    Item,
    extract_answer,
    is_well_formed,
    prompt_messages,
)
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.prompting import PromptError, render
from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher
from fleming_dsl.runtime.teachers.batching import complete_batched
from fleming_dsl.vocabulary import prompt_variables

GRADE_SCORES = dict(zip(BUCKETS, (1.0, 0.5, 0.0)))
_GRADE = re.compile(rf"\b({'|'.join(BUCKETS)})\b", re.IGNORECASE)
# Mojibake of UTF-8 read as Latin-1/CP1252 (Ã©, â€™), the replacement character, control chars.
_DEBRIS = re.compile(r"Ã[\x80-\xbf©¨§ ]|â€|Â[\xa0-\xbf]|\ufffd|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ROLES = {"system", "user", "assistant"}


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
    if _DEBRIS.search(final):  # a mis-decoded teacher answer would teach the debris
        return "encoding debris"
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


# ---------------------------------------------------------------- model-backed scores


def answer_requests(items: list[Item], n: int) -> list[Request]:
    return [Request(task="answer", messages=tuple(prompt_messages(item)), n=n,
                    context={"item": item.model_dump(exclude_none=True)}) for item in items]


def match_counts(items: list[Item], responses: list[Any]) -> tuple[list[int], list[int]]:
    """Per item, how many answers match the label, and how many named no option. An answer
    names an option by its letter or by its exact text in <answer> (accept = text): a model
    trained to answer with the option's text, as the embedded default's is, must not read as
    unreadable when it is asked for pass rates or votes."""
    matches, unreadable = [], []
    for item, response in zip(items, responses):
        letters = [extract_answer(text, item.options, "text")[0] for text in response.texts]
        unreadable.append(sum(letter is None for letter in letters))
        matches.append(sum(letter == item.answer for letter in letters))
    return matches, unreadable


def grade_requests(step: DifficultyStep, items: list[Item]) -> list[Request]:
    requests = []
    for item in items:
        user = render(step.prompt, **prompt_variables("difficulty", {
            "question": item.question, "options": item.options, "answer": item.answer,
            "answer_text": item.options[item.answer]}))
        requests.append(Request(task="grade", messages=({"role": "user", "content": user},),
                                context={"item": item.model_dump(exclude_none=True)}))
    return requests


class ModelScores:
    """verify_label votes and difficulty scores from the models the steps name.

    Every answer is also noted by input position and step index (`notes`): a shard job writes
    those notes, and the gather replays the filter with `NotedScores` instead of the models.
    """

    def __init__(self, cfg: FilterJob) -> None:
        self.cfg = cfg
        self.teacher_counts: dict[str, int] = {}
        self.notes: dict[int, dict[str, list]] = defaultdict(dict)

    def _teacher(self, generator: Any) -> Any:
        return make_teacher(generator, self.cfg.cache_dir, self.cfg.seed)

    def _count(self, teacher: Any) -> None:
        for key, value in teacher.counts().items():
            self.teacher_counts[key] = self.teacher_counts.get(key, 0) + value

    def _note(self, index: int, positions: list[int], values: list, unreadable: list) -> None:
        for pos, value, bad in zip(positions, values, unreadable):
            self.notes[pos][str(index)] = [value, bad]

    def verify(self, index: int, step: VerifyLabelStep, positions: list[int],
               items: list[Item]) -> tuple[list[int], list[int]]:
        judge = self._teacher(step.judge)
        responses = complete_batched(judge, answer_requests(items, step.votes), step.step)
        self._count(judge)
        matches, unreadable = match_counts(items, responses)
        self._note(index, positions, matches, unreadable)
        return matches, unreadable

    def difficulty(self, index: int, step: DifficultyStep, positions: list[int],
                   items: list[Item]) -> tuple[list[float | str], list[int]]:
        """Per item, the pass rate of k samples (pass_rate) or the grader's level (grader). An
        unreadable grade is "moderate", the rubric's middle, rather than dropping the item."""
        model = self._teacher(step.model)
        if step.method == "pass_rate":
            responses = complete_batched(model, answer_requests(items, step.samples), "pass rate")
            matches, unreadable = match_counts(items, responses)
            scores: list[float | str] = [m / step.samples for m in matches]
        else:
            responses = complete_batched(model, grade_requests(step, items), "grader")
            levels = [_GRADE.findall(r.texts[0] if r.texts else "") for r in responses]
            unreadable = [int(not found) for found in levels]
            scores = [found[-1].lower() if found else MODERATE for found in levels]
        self._count(model)
        self._note(index, positions, scores, unreadable)
        return scores, unreadable


class NotedScores:
    """The scores the shard jobs noted, looked up by input position (the gather's models)."""

    def __init__(self, notes: list[dict[str, list]], teacher_counts: dict[str, int]) -> None:
        self.by_pos = notes
        self.teacher_counts = teacher_counts

    def _lookup(self, index: int, positions: list[int]) -> tuple[list, list]:
        values, unreadable = [], []
        for pos in positions:
            note = self.by_pos[pos].get(str(index))
            if note is None:  # a shard drops no item the whole filter keeps: a bug, not input
                raise JobError(f"no shard scored item {pos} for filter step {index + 1}")
            values.append(note[0])
            unreadable.append(note[1])
        return values, unreadable

    def verify(self, index, step, positions, items):
        return self._lookup(index, positions)

    def difficulty(self, index, step, positions, items):
        return self._lookup(index, positions)


# ---------------------------------------------------------------- the steps


Pairs = list[tuple[int, Item]]  # (input position, item): positions key the noted scores


def step_verify(step: VerifyLabelStep, index: int, pairs: Pairs, scores: Any,
                reasons: Counter, review: list[Item], counts: dict[str, Any]) -> Pairs:
    positions, items = [p for p, _ in pairs], [i for _, i in pairs]
    matches, unreadable = scores.verify(index, step, positions, items)
    kept = []
    for pair, match in zip(pairs, matches):
        if match >= step.agree:
            kept.append(pair)
            continue
        item = pair[1]
        reasons[f"fewer than {step.agree} of {step.votes} votes match the label"] += 1
        if step.on_fail == "review":
            review.append(item.model_copy(update={"provenance": {
                **item.provenance, "label_votes": {"matching": match, "votes": step.votes}}}))
    counts["malformed"] = counts.get("malformed", 0) + sum(unreadable)
    return kept


def _path_key(item: Item) -> str | None:
    """The sampled path an item is a variant of (synthesize `variants`), else None."""
    if "variant" not in (item.provenance or {}):
        return None
    return f"{item.source}:{item.provenance.get('id')}"


def step_dedupe(cfg: FilterJob, step: DedupeStep, pairs: Pairs, reasons: Counter) -> Pairs:
    """Exact then near duplicates, first one kept. The variants of one sampled path are one
    question here: only the first variant is compared, and the others follow its fate."""
    firsts = [pair for pair in pairs if not (pair[1].provenance or {}).get("variant")]
    kept = {pos for pos, _ in _dedupe(cfg, step, firsts, reasons)}
    dropped_paths = {_path_key(item) for pos, item in firsts if pos not in kept} - {None}
    result = []
    for pos, item in pairs:
        if not (item.provenance or {}).get("variant"):
            if pos in kept:
                result.append((pos, item))
        elif _path_key(item) in dropped_paths:
            reasons["variant of a removed duplicate"] += 1
        else:
            result.append((pos, item))
    return result


def _dedupe(cfg: FilterJob, step: DedupeStep, pairs: Pairs, reasons: Counter) -> Pairs:
    seen: set[str] = set()
    unique = []
    for pair in pairs:
        key = textsim.exact_key(pair[1])
        if key in seen:
            reasons["exact duplicate"] += 1
        else:
            seen.add(key)
            unique.append(pair)
    if step.method == "exact":
        return unique
    near = textsim.near_duplicates([item for _, item in unique], step.threshold,
                                   seed=cfg.seed or 1)
    reasons[f"near duplicate (minhash jaccard >= {step.threshold})"] += len(near)
    return [pair for index, pair in enumerate(unique) if index not in near]


def step_decontaminate(step: DecontaminateStep, pairs: Pairs, reasons: Counter,
                       evidence: list[dict[str, str]]) -> Pairs:
    index = textsim.NgramIndex((eval_item.question for source in step.against
                                for eval_item in load_source(source)),
                               step.ngram)
    kept = []
    for pair in pairs:
        gram = index.shared(pair[1].question)
        if gram is None:
            kept.append(pair)
            continue
        reasons[f"shares a {step.ngram}-gram with an evaluation question"] += 1
        evidence.append({"id": pair[1].id, "ngram": gram})
    return kept


def bucket(score: float, step: DifficultyStep) -> str:
    if score >= step.easy:
        return EASY
    return MODERATE if score >= step.moderate else HARD


def step_difficulty(step: DifficultyStep, index: int, pairs: Pairs, scores: Any,
                    counts: dict[str, Any]) -> Pairs:
    """Annotates `difficulty` (and `pass_rate` for method pass_rate); removes nothing. A
    grader's answer is a level, not a pass rate: the item keeps the level as its bucket and no
    pass rate (the report shows levels as levels)."""
    positions, items = [p for p, _ in pairs], [i for _, i in pairs]
    values, unreadable = scores.difficulty(index, step, positions, items)
    counts["malformed"] = counts.get("malformed", 0) + sum(unreadable)
    if step.method == "grader":
        return [(pos, item.model_copy(update={"pass_rate": None, "difficulty": level}))
                for pos, item, level in zip(positions, items, values)]
    return [(pos, item.model_copy(update={"pass_rate": score, "difficulty": bucket(score, step)}))
            for pos, item, score in zip(positions, items, values)]


# ---------------------------------------------------------------- the job


def run_steps(cfg: FilterJob, pairs: Pairs, scores: Any, ctx: JobContext,
              global_steps: bool = True) -> tuple[Pairs, list[Item]]:
    """The steps in spec order. A shard runs them without the global step (dedupe keeps the
    first of a pair across the whole input), so it scores a superset of what the filter keeps."""
    removed = dict.fromkeys(REMOVING_STEPS, 0)
    reasons: dict[str, Counter] = defaultdict(Counter)
    malformed: dict[str, Any] = {}
    review: list[Item] = []
    evidence: list[dict[str, str]] = []
    for index, step in enumerate(cfg.steps):
        before = len(pairs)
        with ctx.timed(step.step):
            if isinstance(step, FormatStep):
                pairs = [pair for pair in pairs if _format_ok(pair[1], reasons[step.step])]
            elif isinstance(step, VerifyLabelStep):
                pairs = step_verify(step, index, pairs, scores, reasons[step.step], review,
                                    malformed)
            elif isinstance(step, DedupeStep):
                if global_steps:
                    pairs = step_dedupe(cfg, step, pairs, reasons[step.step])
            elif isinstance(step, DecontaminateStep):
                pairs = step_decontaminate(step, pairs, reasons[step.step], evidence)
            else:
                pairs = step_difficulty(step, index, pairs, scores, malformed)
        if step.step in removed:
            removed[step.step] += before - len(pairs)
    ctx.counts.update({"removed": removed,
                       "reasons": {k: dict(sorted(v.items())) for k, v in reasons.items()},
                       **scores.teacher_counts, **malformed})
    ctx.metrics["contamination_examples"] = evidence[:20]
    return pairs, review


def _format_ok(item: Item, reasons: Counter) -> bool:
    problem = format_problem(item)
    if problem:
        reasons[problem] += 1
    return problem is None


def run(cfg: FilterJob, ctx: JobContext) -> None:
    with ctx.timed("load"):
        items = load_source(cfg.source)
    picked = shards.positions([item.id for item in items], cfg.shard)
    scores = ModelScores(cfg)
    try:
        if cfg.shard is not None:
            run_steps(cfg, [(pos, items[pos]) for pos in picked], scores, ctx,
                      global_steps=False)
        else:
            kept, review = run_steps(cfg, list(enumerate(items)), scores, ctx)
    except (PromptError, TeacherError) as err:
        raise JobError(str(err)) from None
    if cfg.shard is not None:
        # what the gather needs: the noted scores of every item of the slice ({} if none)
        outs = [scores.notes.get(pos, {}) for pos in picked]
        ctx.counts.clear()  # the gather counts removals over the whole input
        shards.finish_shard(cfg, ctx, len(items), picked, outs, scores.teacher_counts)
        return
    write_outputs(cfg, ctx, len(items), kept, review)


def finish(cfg: FilterJob, ctx: JobContext, total: int, outs: list[dict[str, list]],
           teacher_counts: dict[str, int]) -> None:
    """The gather: the whole filter again over the whole input, the model-backed steps answered
    from the shards' notes (the cheap global steps are re-run here, exactly as unsharded)."""
    items = load_source(cfg.source)
    if len(items) != total:
        raise JobError(f"{cfg.source.path}: {len(items)} items, but the shards read {total}; "
                       "the source changed after they ran")
    kept, review = run_steps(cfg, list(enumerate(items)), NotedScores(outs, teacher_counts), ctx)
    write_outputs(cfg, ctx, total, kept, review)


def write_outputs(cfg: FilterJob, ctx: JobContext, total: int, pairs: Pairs,
                  review: list[Item]) -> None:
    kept = [item for _, item in pairs]
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
                                   for name in BUCKETS}})
    by_bucket: dict[str, list[float]] = defaultdict(list)
    for item in kept:
        if item.difficulty and item.pass_rate is not None:
            by_bucket[item.difficulty].append(item.pass_rate)
    ctx.metrics["pass_rate_by_bucket"] = {name: round(sum(v) / len(v), 4)
                                          for name, v in sorted(by_bucket.items())}
    methods = [step.method for step in cfg.steps if isinstance(step, DifficultyStep)]
    if methods:
        ctx.metrics["difficulty_method"] = methods[-1]
