"""The template teacher: a deterministic, model-free stand-in for a real teacher.

It is what the embedded default (`specs/tiny.flm`) runs on CPU without weights:
- question: the prompt template's own `stem` macro verbalises the sampled path;
- reason: a short rationale (a sentence or two, <= ~40 tokens) that names the answer entity
  and only then its option ("The findings point to Y; Y is option C."), ending in
  `<answer>X</answer>`, so a tiny student learns the format fast; the distillation prompt may
  define a macro `answer_as(letter, text)` to put the option's text in the tag instead
  (prompts/reason_text.j2). It knows the graph: the option naming the item's masked entity
  (provenance); under protocol = search it is not given the label, so an item without provenance
  gets a guess. It is FALLIBLE when declared so, `template(error_rate = e, malformed_rate = m)`:
  each round of each item draws (seeded) whether it names a wrong option (probability e; never
  one it named before) and whether its answer comes back malformed (probability m: no answer
  tag, or text with encoding debris). A later round follows its strategy: it opens with the
  strategy's reflection on the answer before ("Wait, ..."), so e^(r-1)(1-e) of the items are
  solved in round r;
- rewrite: the attempts of a search as one chain, reflections kept, ending on the last answer;
- judge: "True" when the answer, normalised, is the reference's text;
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

from fleming_dsl.ir import BUCKETS, EASY, HARD, MODERATE
from fleming_dsl.runtime.data.chains import unit_draw
from fleming_dsl.runtime.data.items import normalise
from fleming_dsl.runtime.prompting import call_macro, optional_macro
from fleming_dsl.runtime.teachers.protocol import Request, TeacherError
from fleming_dsl.runtime.teachers.verbalise import path_facts
from fleming_dsl.vocabulary import prompt_variables

MAX_FACTS_IN_RATIONALE = 2


def oracle_letter(item: dict[str, Any]) -> str | None:
    """The option naming the provenance answer, else the item's label (None when a search
    request hides it)."""
    target = str(item.get("provenance", {}).get("answer", "")).strip().lower()
    if target:
        for letter, text in item["options"].items():
            if text.strip().lower() == target:
                return letter
    return item.get("answer")


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
        return EASY if words <= 18 else MODERATE if words <= 24 else HARD
    score = max(0, len(provenance.get("relations", [])) - 1)
    node = provenance["path"][provenance.get("mask_index", 0)]
    if "degree" in node:
        score += int(node["degree"] <= RARE_DEGREE)
    elif "answer_count" in provenance:
        score += int(provenance["answer_count"] <= RARE_COUNT)
    score += int(len(item["question"].split()) > 40)
    return BUCKETS[min(score, len(BUCKETS) - 1)]


# How a later round opens, by strategy: the teacher following the strategy prompt, in words.
REFLECTIONS = {
    None: "Wait, that answer does not hold up.",
    "backtrack": "Wait, {named} does not account for every finding; going back to the findings "
                 "themselves.",
    "explore": "Wait, {named} explains only part of the picture; starting from another finding "
               "instead.",
    "self_correct": "Wait, naming {named} was a mistake: it does not fit the findings.",
}
UNFINISHED = "Wait, I did not finish that answer; starting again from the findings."
DEBRIS = "\u00e2\u20ac\u2122"  # "’" read as CP1252: what a mis-decoded teacher output carries


def reflection(strategy: str | None, previous: dict[str, Any] | None) -> str:
    """The opening of a continued chain: the strategy applied to the previous answer."""
    if previous is None or not previous.get("named"):
        return UNFINISHED
    return REFLECTIONS.get(strategy, REFLECTIONS[None]).format(named=previous["named"])


class TemplateBackend:
    def __init__(self, settings: Any = None, seed: int = 0) -> None:
        self.error_rate = getattr(settings, "error_rate", 0.0)
        self.malformed_rate = getattr(settings, "malformed_rate", 0.0)
        self.seed = seed

    def identity(self) -> dict[str, Any]:
        params = {}
        if self.error_rate or self.malformed_rate:  # an oracle's answers do not depend on them
            params = {"error_rate": self.error_rate, "malformed_rate": self.malformed_rate,
                      "seed": self.seed}
        return {"backend": "template", "model": "", "params": params}

    def key_extra(self, request: Request) -> dict[str, Any]:
        # The answer comes from the context, so the context is part of what is cached.
        blob = json.dumps(request.context, sort_keys=True, ensure_ascii=False, default=str)
        return {"task": request.task, "context": hashlib.sha256(blob.encode()).hexdigest()}

    def choose(self, item: dict[str, Any], round_number: int, tried: set[str]) -> str:
        """The option this round names: the known one, unless the seeded draw says it errs; then
        (or when nothing is known) a seeded pick among the options not tried before."""
        known = oracle_letter(item)
        if known is not None and unit_draw(self.seed, "error", item["id"], round_number) >= self.error_rate:
            return known
        others = [x for x in item["options"] if x != known and x not in tried] or list(item["options"])
        return others[int(unit_draw(self.seed, "pick", item["id"], round_number) * len(others))]

    def reason(self, ctx: dict[str, Any]) -> str:
        item, round_number = ctx["item"], ctx.get("round", 1)
        chain = (ctx.get("variables") or {}).get("chain") or []
        tried = {x for x, text in item["options"].items() for a in chain if a.get("named") == text}
        letter = self.choose(item, round_number, tried)
        said = answer_as(ctx, letter, item["options"].get(letter, letter))
        thought = rationale(item, letter)
        if round_number > 1:
            previous = chain[-1] if chain else None
            thought = f"{reflection(ctx.get('strategy'), previous)} {thought}"
        draw = unit_draw(self.seed, "malformed", item["id"], round_number)
        if draw < self.malformed_rate / 2:  # cut off before it names an option
            return f"<think>{thought}"
        if draw < self.malformed_rate:  # mis-decoded text: readable, but not clean training data
            thought = thought.replace(" ", f" {DEBRIS} ", 1)
        return f"<think>{thought}</think><answer>{said}</answer>"

    def rewrite(self, ctx: dict[str, Any]) -> str:
        """One chain from the search: each attempt's reasoning in order, the reflections that
        open the later ones kept, then a check of the last answer against the question."""
        variables = ctx["variables"]
        steps = [a["reasoning"] for a in variables["chain"] if a.get("reasoning")]
        named = variables["chain"][-1].get("named") or variables["said"]
        natural = " ".join(steps + [f"Checking {named} against the question once more, it fits."])
        return f"<think>{natural}</think><answer>{variables['said']}</answer>"

    def _answer(self, request: Request) -> str:
        ctx = request.context
        if request.task == "question":
            facts = path_facts(ctx["row"])
            # the variables `fleming check` held the macro's parameters to
            return call_macro(ctx["template"], "stem", **prompt_variables("synthesize", facts))
        if request.task == "reason":
            return self.reason(ctx)
        if request.task == "rewrite":
            return self.rewrite(ctx)
        if request.task == "judge":
            return "True" if normalise(ctx["response"]) == normalise(ctx["reference"]) else "False"
        if request.task == "grade":
            return f"Difficulty: {grade_item(ctx['item'])}"
        raise TeacherError(f"template teacher: unknown task {request.task!r}")

    def votes(self, request: Request) -> list[str]:
        """Label votes and pass-rate samples: vote k errs by its own seeded draw."""
        item = request.context["item"]
        return [f"<answer>{self.choose(item, -k, set())}</answer>" for k in range(1, request.n + 1)]

    def generate(self, requests: list[Request]) -> list[list[str]]:
        return [self.votes(r) if r.task == "answer" else [self._answer(r)] * r.n for r in requests]
