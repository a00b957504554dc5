"""The template teacher: a deterministic, model-free stand-in for a real teacher.

It is what the embedded default (`specs/tiny.flm`) runs on CPU without weights:
- question: the prompt template's own `stem` macro verbalises the sampled path;
- reason: a short rationale (a sentence or two, <= ~40 tokens) that names the answer entity
  and only then its option ("The findings point to Y; Y is option C."), ending in `<answer>X</answer>`, so a tiny student learns the format fast; the
  distillation prompt may define a macro `answer_as(letter, text)` to put the option's text
  in the tag instead (prompts/reason_text.j2);
- answer (label votes, pass-rate samples): it is ORACLE-LIKE. It answers from the item's
  provenance (the option naming the masked KG entity) or, without provenance, from the label.
  So `verify_label` votes with a template judge always agree with each other, and only catch
  items whose label disagrees with their provenance;
- grade (difficulty rubric): decided from provenance, see `grade_item`.
A real teacher (transformers / vllm / openai) replaces it by changing one line of the spec.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fleming_dsl.runtime.prompting import call_macro, optional_macro
from fleming_dsl.runtime.teachers.protocol import Request, TeacherError
from fleming_dsl.runtime.teachers.verbalise import path_facts

MAX_FACTS_IN_RATIONALE = 2


def oracle_letter(item: dict[str, Any]) -> str:
    """The option naming the provenance answer, else the item's label."""
    target = str(item.get("provenance", {}).get("answer", "")).strip().lower()
    if target:
        for letter, text in item["options"].items():
            if text.strip().lower() == target:
                return letter
    return item["answer"]


def rationale(item: dict[str, Any], letter: str) -> str:
    """Reasoning that names the answer entity first and only then its option ("The findings
    point to Y; Y is option C."), so a student learns the knowledge (findings -> entity) apart
    from the lookup (entity -> letter). For a graph item the path facts come first."""
    answer_text = item["options"].get(letter, letter)
    provenance = item.get("provenance") or {}
    named = f"{answer_text}; {answer_text} is option {letter}."
    if provenance.get("path") and provenance.get("relations") is not None:
        clues = path_facts(provenance)["facts"][:MAX_FACTS_IN_RATIONALE]
        if clues:  # facts not about the answer (a multi-hop path): say them, then conclude
            return f"{'; '.join(clues)}. The findings point to {named}"
    return f"The findings point to {named}"


def answer_as(ctx: dict[str, Any], letter: str, text: str) -> str:
    """What goes inside <answer>: the letter, unless the distillation prompt defines a macro
    `answer_as(letter, text)` (e.g. returning the option's text); the prompt decides."""
    template = ctx.get("template")
    if not template:
        return letter
    said = optional_macro(template, "answer_as", ctx.get("variables") or {}, letter=letter,
                          text=text)
    return said if said else letter


RARE_DEGREE = 3  # a masked node with at most this many edges is rare knowledge
RARE_COUNT = 3  # ... or, without degrees, an answer drawn at most this often in the sample set


def grade_item(item: dict[str, Any]) -> str:
    """Rubric level from provenance, deterministic:
    KG items score one point per hop past the first (a reasoning step), one for a rare answer
    (node degree <= RARE_DEGREE when the sampler recorded it, else sampled <= RARE_COUNT times;
    inverse-degree sampling draws long-tail entities rarely) and one for a long stem (> 40
    words): 0 easy (basic knowledge), 1 moderate (intermediate reasoning), 2+ hard (specialised,
    multi-step or rare). Items without a path are graded by the words of stem plus options
    (<= 18 basic, <= 24 intermediate, longer specialised)."""
    provenance = item.get("provenance") or {}
    if not provenance.get("path"):
        words = len(item["question"].split()) + sum(len(o.split())
                                                    for o in item["options"].values())
        return "easy" if words <= 18 else "moderate" if words <= 24 else "hard"
    score = max(0, len(provenance.get("relations", [])) - 1)
    node = provenance["path"][provenance.get("mask_index", 0)]
    if "degree" in node:
        score += int(node["degree"] <= RARE_DEGREE)
    elif "answer_count" in provenance:
        score += int(provenance["answer_count"] <= RARE_COUNT)
    score += int(len(item["question"].split()) > 40)
    return ("easy", "moderate", "hard")[min(score, 2)]


class TemplateBackend:
    def identity(self) -> dict[str, Any]:
        return {"backend": "template", "model": "", "params": {}}

    def key_extra(self, request: Request) -> dict[str, Any]:
        # The answer comes from the context, so the context is part of what is cached.
        blob = json.dumps(request.context, sort_keys=True, ensure_ascii=False, default=str)
        return {"task": request.task, "context": hashlib.sha256(blob.encode()).hexdigest()}

    def _answer(self, request: Request) -> str:
        ctx = request.context
        if request.task == "question":
            facts = path_facts(ctx["row"])
            return call_macro(ctx["template"], "stem", **facts)
        if request.task == "reason":
            letter = ctx["item"]["answer"]
            said = answer_as(ctx, letter, ctx["item"]["options"].get(letter, letter))
            return f"<think>{rationale(ctx['item'], letter)}</think><answer>{said}</answer>"
        if request.task == "answer":
            return f"<answer>{oracle_letter(ctx['item'])}</answer>"
        if request.task == "grade":
            return f"Difficulty: {grade_item(ctx['item'])}"
        raise TeacherError(f"template teacher: unknown task {request.task!r}")

    def generate(self, requests: list[Request]) -> list[list[str]]:
        return [[self._answer(r)] * r.n for r in requests]
