"""synthesize: sampled knowledge-graph paths -> multiple-choice items.

Each sampled path (a row of the sample job's JSONL) becomes one prompt rendered from the spec's
template; the teacher writes the question stem. The masked entity is the answer; it and the
row's distractors are shuffled into options A.. by a generator seeded with (seed, row id), so the
letter of the answer is uniform and repeatable. With `variants = N` each path gives N items
sharing the stem, each with its own draw of `options - 1` distractors from the row's and the
answer at a different letter (`variant_options`): what stops a small student from memorising
one letter per question. A stem that is empty, is not a question, or
names the answer is counted as malformed and recorded, never a crash.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import SynthesizeJob
from fleming_dsl.runtime.data import shards
from fleming_dsl.runtime.data.items import LETTERS, Item
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.prompting import PromptError, render
from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher
from fleming_dsl.runtime.teachers.batching import complete_batched
from fleming_dsl.runtime.teachers.verbalise import path_facts
from fleming_dsl.vocabulary import prompt_variables

SYSTEM = "You write clear, accurate multiple-choice questions for medical licensing exams."
MALFORMED_EXAMPLES = 20


def read_rows(path: str) -> list[tuple[int, dict[str, Any]]]:
    import json

    rows = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise JobError(f"{path}: cannot read sampled paths ({err.strerror})") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise JobError(f"{path}:{number}: not valid JSON ({err.msg})") from None
    return rows


def check_row(row: Any) -> str | None:
    """What is wrong with a sampled-path row, as "field 'x' ...", or None."""
    if not isinstance(row, dict):
        return "row must be a JSON object"
    for name in ("id", "path", "relations", "mask_index", "answer", "answer_type", "distractors"):
        if name not in row:
            return f"field '{name}' is missing"
    path = row["path"]
    if not isinstance(path, list) or len(path) < 2 or not all(
            isinstance(step, dict) and "node" in step and "type" in step for step in path):
        return "field 'path' must be a list of at least 2 {node, type} objects"
    if not isinstance(row["relations"], list) or len(row["relations"]) != len(path) - 1:
        return "field 'relations' must hold one relation per hop (len(path) - 1)"
    mask = row["mask_index"]
    if not isinstance(mask, int) or not 0 <= mask < len(path):
        return f"field 'mask_index' must be an index into 'path', got {mask!r}"
    if path[mask]["node"] != row["answer"]:
        return "field 'answer' must be the masked path entity"
    if not isinstance(row["distractors"], list) or not row["distractors"]:
        return "field 'distractors' must be a non-empty list"
    return None


def shuffled_options(answer: str, distractors: list[str], seed: int,
                     row_id: str) -> tuple[dict[str, str], str]:
    """Options A.. holding the answer and the distinct distractors, and the answer's letter."""
    choices = [answer] + list(dict.fromkeys(d for d in distractors if d != answer))
    random.Random(f"{seed}:{row_id}").shuffle(choices)
    choices = choices[:len(LETTERS)]
    options = {LETTERS[i]: text for i, text in enumerate(choices)}
    return options, LETTERS[choices.index(answer)]


def variant_options(answer: str, distractors: list[str], seed: int, row_id: str, variant: int,
                    size: int | None) -> tuple[dict[str, str], str]:
    """Options for variant `variant` of a path: `size - 1` distractors drawn from the row's
    (a fresh draw per variant) and the answer at a letter that moves on by one per variant, so
    the variants of a path put its answer at different letters. Deterministic per seed."""
    pool = list(dict.fromkeys(d for d in distractors if d != answer))
    size = min(size or len(pool) + 1, len(pool) + 1, len(LETTERS))
    draw = random.Random(f"{seed}:{row_id}:{variant}").sample(pool, size - 1)
    position = (random.Random(f"{seed}:{row_id}").randrange(size) + variant) % size
    choices = draw[:position] + [answer] + draw[position:]
    return {LETTERS[i]: text for i, text in enumerate(choices)}, LETTERS[position]


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_LABEL = re.compile(r"^\s*(question|stem)\s*:\s*", re.IGNORECASE)


def clean_stem(text: str, answer: str) -> tuple[str, str | None]:
    """(stem, problem): the teacher's question without reasoning or a "Question:" label."""
    stem = _LABEL.sub("", _THINK.sub("", text)).strip().strip('"').strip()
    if not stem:
        return stem, "empty question"
    if "?" not in stem:
        return stem, "not a question (no question mark)"
    if re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", stem, re.IGNORECASE):
        return stem, "question names the answer"
    return stem, None


def build_request(cfg: SynthesizeJob, row: dict[str, Any]) -> Request:
    user = render(cfg.prompt, **prompt_variables("synthesize", path_facts(row)))
    return Request(task="question",
                   messages=({"role": "system", "content": SYSTEM},
                             {"role": "user", "content": user}),
                   context={"template": cfg.prompt, "row": row})


def make_item(cfg: SynthesizeJob, row: dict[str, Any], text: str,
              answer_counts: Counter) -> dict[str, Any]:
    """What one sampled path became: {"items": [...]} (one per variant) or {"malformed": {id,
    problem, text}}."""
    stem, problem = clean_stem(text, row["answer"])
    if problem:
        return {"malformed": {"id": row["id"], "problem": problem, "text": stem[:200]}}
    # A distractor named elsewhere in the path would be a second right answer to
    # "which ... other than those named": leave it out.
    named = {step["node"] for step in row["path"]} - {row["answer"]}
    distractors = [d for d in row["distractors"] if d not in named]
    if not distractors:
        return {"malformed": {"id": row["id"], "problem": "no distractor left", "text": stem}}
    provenance = {**row, "answer_count": answer_counts[row["answer"]]}
    job = cfg.logical_job  # a shard names items after the whole job, as the unsharded job does
    if cfg.variants == 1 and cfg.options is None:
        options, letter = shuffled_options(row["answer"], distractors, cfg.seed, str(row["id"]))
        item = Item(id=f"{job}-{row['id']}", question=stem, options=options, answer=letter,
                    source=job, provenance=provenance)
        return {"items": [item.model_dump(exclude_none=True)]}
    items = []
    for variant in range(cfg.variants):
        options, letter = variant_options(row["answer"], distractors, cfg.seed, str(row["id"]),
                                          variant, cfg.options)
        suffix = f"-v{variant}" if variant else ""
        items.append(Item(id=f"{job}-{row['id']}{suffix}", question=stem, options=options,
                          answer=letter, source=job, provenance={**provenance, "variant": variant}
                          ).model_dump(exclude_none=True))
    return {"items": items}


def run(cfg: SynthesizeJob, ctx: JobContext) -> None:
    numbered = read_rows(cfg.samples)
    for number, row in numbered:
        problem = check_row(row)
        if problem:
            raise JobError(f"{cfg.samples}:{number}: {problem}")
    rows = [row for _, row in numbered]
    # How often each answer was sampled, over the whole input (however it is sharded): a
    # rarity signal the template grader may use.
    answer_counts = Counter(row["answer"] for row in rows)
    picked = shards.positions([str(row["id"]) for row in rows], cfg.shard)
    teacher = make_teacher(cfg.teacher, cfg.cache_dir, cfg.seed)
    try:
        with ctx.timed("render"):
            requests = [build_request(cfg, rows[pos]) for pos in picked]
        with ctx.timed("teacher"):
            responses = complete_batched(teacher, requests, "synthesize")
    except (PromptError, TeacherError) as err:
        raise JobError(str(err)) from None
    outs = [make_item(cfg, rows[pos], response.texts[0] if response.texts else "", answer_counts)
            for pos, response in zip(picked, responses)]
    if cfg.shard is not None:
        shards.finish_shard(cfg, ctx, len(rows), picked, outs, teacher.counts())
    else:
        finish(cfg, ctx, len(rows), outs, teacher.counts())


def finish(cfg: SynthesizeJob, ctx: JobContext, total: int, outs: list[dict[str, Any]],
           teacher_counts: dict[str, int]) -> None:
    """Write the items of every sampled path, in input order (the gather calls this too)."""
    items = [item for out in outs for item in out.get("items", ())]
    malformed = [out["malformed"] for out in outs if "malformed" in out]
    if not items:  # an empty question set would look like a finished synthesis
        first = f"; first: {malformed[0]['problem']}" if malformed else ""
        raise JobError(f"{cfg.job}: no question was usable of {total} samples "
                       f"({len(malformed)} malformed{first})")
    write_jsonl(cfg.output, items)
    ctx.counts.update({"input": total, "output": len(items), "malformed": len(malformed),
                       **teacher_counts, "rounds": {}})
    ctx.metrics["malformed_examples"] = malformed[:MALFORMED_EXAMPLES]
    ctx.metrics["answer_letters"] = dict(sorted(Counter(i["answer"] for i in items).items()))
