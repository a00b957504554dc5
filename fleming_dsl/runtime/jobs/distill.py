"""distill: chain-of-thought cold-start data from a teacher, with iterative refinement.

For every item of the sources the teacher, given the question and the verified answer, writes a
short rationale ending in `<answer>X</answer>` (X the letter or, if the prompt asks for it,
the option's exact text). An attempt whose letter differs from the label
(or has none) is refined: round r > 1 sends a new prompt with the previous attempt and the
instruction of strategy `refine[(r - 2) % len(refine)]` (backtrack, explore, self_correct).
`max_rounds` counts all attempts, the first included, so `max_rounds = 1` means no refinement.
With `keep = correct` only trajectories ending on the label are written; with `keep = all` an
unsolved item keeps its last parseable attempt. Output items carry
`messages = prompt_messages(item) + [assistant: <think>reasoning</think><answer>X</answer>]`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import DistillJob
from fleming_dsl.runtime.data import shards
from fleming_dsl.runtime.data.formats import load_source
from fleming_dsl.runtime.data.items import (
    Item,
    completion_text,
    extract_answer,
    prompt_messages,
)
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.prompting import PromptError, render
from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher
from fleming_dsl.runtime.teachers.batching import complete_batched
from fleming_dsl.runtime.teachers.verbalise import path_facts

SYSTEM = "You are an expert physician who explains the answers to medical exam questions."
MALFORMED_EXAMPLES = 20
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>.*?</answer>", re.DOTALL)


@dataclass
class Attempt:
    letter: str | None
    reasoning: str
    text: str
    named_by: str | None = None  # "letter" or "text": how the teacher named its option


@dataclass
class Trajectory:
    item: Item
    attempts: list[Attempt] = field(default_factory=list)
    solved_round: int | None = None
    malformed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].letter == self.item.answer


def parse_attempt(text: str, options: dict[str, str]) -> Attempt:
    """The committed option and the reasoning (the <think> body, else the text without tags).
    A teacher may name its option by letter or by the option's exact text (what the prompt
    asks for); the worked answer keeps that choice."""
    letter, how = extract_answer(text, options, "text")
    think = _THINK.findall(text)
    reasoning = think[-1] if think else _ANSWER_TAG.sub("", text)
    return Attempt(letter=letter, reasoning=reasoning.strip(), text=text, named_by=how)


def strategy_for(round_number: int, refine: tuple[str, ...]) -> str | None:
    return None if round_number == 1 else refine[(round_number - 2) % len(refine)]


def build_request(cfg: DistillJob, trajectory: Trajectory, round_number: int) -> Request:
    item = trajectory.item
    provenance = item.provenance or {}
    facts = path_facts(provenance)["all_facts"] if provenance.get("path") else []
    strategy = strategy_for(round_number, cfg.refine)
    previous = trajectory.attempts[-1].text if trajectory.attempts else ""
    variables = {"question": item.question, "options": item.options, "answer": item.answer,
                 "answer_text": item.options[item.answer], "facts": facts, "strategy": strategy,
                 "previous": previous}
    user = render(cfg.prompt, **variables)
    # The template teacher reads the prompt's optional `answer_as` macro (how to name the option).
    return Request(task="reason",
                   messages=({"role": "system", "content": SYSTEM},
                             {"role": "user", "content": user}),
                   context={"item": item.model_dump(exclude_none=True), "round": round_number,
                            "strategy": strategy, "template": cfg.prompt,
                            "variables": variables})


def load_sources(cfg: DistillJob) -> list[Item]:
    items: list[Item] = []
    for source in cfg.sources:
        loaded = load_source(source)
        for item in loaded:
            item.source = source.name or item.source
        items += loaded
    return items


def refine_all(cfg: DistillJob, trajectories: list[Trajectory], teacher: Any) -> None:
    """Run the rounds; each trajectory records the round it was solved in and its malformed
    attempts (so a shard's trajectories tell the gather what the whole job's would)."""
    pending = trajectories
    rounds = cfg.max_rounds if cfg.refine else 1
    for round_number in range(1, rounds + 1):
        if not pending:
            break
        requests = [build_request(cfg, t, round_number) for t in pending]
        responses = complete_batched(teacher, requests, f"distill round {round_number}")
        still = []
        for trajectory, response in zip(pending, responses):
            text = response.texts[0] if response.texts else ""
            attempt = parse_attempt(text, trajectory.item.options)
            if attempt.letter is None or not attempt.reasoning:
                trajectory.malformed.append({
                    "id": trajectory.item.id, "round": round_number,
                    "problem": "no answer letter" if attempt.letter is None
                    else "empty reasoning", "text": text[:200]})
            trajectory.attempts.append(attempt)
            if trajectory.solved and attempt.reasoning:
                trajectory.solved_round = round_number
            else:
                still.append(trajectory)
        pending = still


def final_item(trajectory: Trajectory, keep: str) -> Item | None:
    usable = [a for a in trajectory.attempts if a.letter and a.reasoning]
    if not usable:
        return None
    last = usable[-1]
    if last.letter != trajectory.item.answer and keep == "correct":
        return None
    item = trajectory.item.model_copy(deep=True)
    said = item.options[last.letter] if last.named_by == "text" else last.letter
    item.messages = prompt_messages(item) + [
        {"role": "assistant", "content": completion_text(last.reasoning, said)}]
    item.provenance = {**item.provenance, "distill_rounds": len(trajectory.attempts),
                       "distill_correct": last.letter == item.answer}
    return item


def outcome(trajectory: Trajectory, keep: str) -> dict[str, Any]:
    """What one item became: the kept item (or None), its round, its malformed attempts."""
    item = final_item(trajectory, keep)
    solved = trajectory.solved_round
    return {"item": item.model_dump(exclude_none=True) if item is not None else None,
            "solved": str(solved) if solved is not None else "unsolved",
            "malformed": trajectory.malformed}


def run(cfg: DistillJob, ctx: JobContext) -> None:
    if cfg.max_rounds < 1:
        raise JobError(f"{cfg.job}: field 'max_rounds' must be >= 1, got {cfg.max_rounds}")
    with ctx.timed("load"):
        items = load_sources(cfg)
    picked = shards.positions([item.id for item in items], cfg.shard)
    teacher = make_teacher(cfg.teacher, cfg.cache_dir, cfg.seed)
    trajectories = [Trajectory(items[pos]) for pos in picked]
    try:
        with ctx.timed("teacher"):
            refine_all(cfg, trajectories, teacher)
    except (PromptError, TeacherError) as err:
        raise JobError(str(err)) from None
    outs = [outcome(t, cfg.keep) for t in trajectories]
    if cfg.shard is not None:
        shards.finish_shard(cfg, ctx, len(items), picked, outs, teacher.counts())
    else:
        finish(cfg, ctx, len(items), outs, teacher.counts())


def finish(cfg: DistillJob, ctx: JobContext, total: int, outs: list[dict[str, Any]],
           teacher_counts: dict[str, int]) -> None:
    """Write the kept trajectories in input order (the gather calls this too)."""
    kept = [out["item"] for out in outs if out["item"] is not None]
    rounds = Counter(out["solved"] for out in outs if out["solved"] != "unsolved")
    rounds["unsolved"] = sum(out["solved"] == "unsolved" for out in outs)
    # round by round, items in input order within a round: the order the rounds found them
    malformed = sorted((m for out in outs for m in out["malformed"]), key=lambda m: m["round"])
    if not kept:  # nothing to train on would look like a finished distillation
        raise JobError(f"{cfg.job}: no trajectory kept of {total} items (keep = {cfg.keep}, "
                       f"{len(malformed)} malformed answers)")
    write_jsonl(cfg.output, kept)
    ctx.counts.update({"input": total, "output": len(kept), "malformed": len(malformed),
                       **teacher_counts, "rounds": dict(sorted(rounds.items())),
                       "by_source": dict(sorted(Counter(i["source"] for i in kept).items()))})
    ctx.metrics["malformed_examples"] = malformed[:MALFORMED_EXAMPLES]
