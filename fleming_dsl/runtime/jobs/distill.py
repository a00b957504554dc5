"""distill: chain-of-thought cold-start data from a teacher, by one of two protocols.

rationale: the teacher is given the question and the verified answer and writes a short
rationale ending in `<answer>X</answer>` (X the letter or, if the prompt asks for it, the option's
exact text). An attempt whose option differs from the label (or names none) is revised: round
r > 1 sends the previous attempt with strategy `refine[(r - 2) % len(refine)]`; the last attempt
is the item's chain.

search (HuatuoGPT-o1's search): the label is hidden; with `evidence` the sampled path's facts that
do not name the answer are given. A verifier checks each answer: exact option match (letter or
option text), else, with a declared `judge`, the judge compares the answer with the reference.
A failed chain continues, the whole chain so far in the prompt, with a strategy drawn per item and
round (seeded) from `refine`. A search solved after round 1 becomes one chain: the `rewrite`
prompt turns all attempts, in order, into one natural chain that keeps its reflections ("wait,
..."), or, without it (or when the rewrite names another option), the attempts joined as they
are. Round-1 successes need no rewrite.

Both: `max_rounds` counts all attempts, the first included. With `keep = correct` only chains
ending on the label are written; with `keep = all` an unsolved item keeps its last readable
attempt. Every round's attempt and strategy is in the item's provenance (`distill`), and the
metadata reports the protocol, items solved per round, strategies used and chain lengths.
Output items carry `messages = prompt_messages(item) + [assistant: <think>chain</think><answer>X</answer>]`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import DistillJob
from fleming_dsl.runtime.data import shards
from fleming_dsl.runtime.data.chains import (
    JUDGE_PROMPT,
    Attempt,
    cycled_strategy,
    drawn_strategy,
    judge_says_true,
    parse_attempt,
    stitched,
    words,
)
from fleming_dsl.runtime.data.formats import load_source
from fleming_dsl.runtime.data.items import Item, completion_text, prompt_messages
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.prompting import PromptError, render
from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher
from fleming_dsl.runtime.teachers.batching import complete_batched
from fleming_dsl.runtime.teachers.verbalise import path_facts
from fleming_dsl.vocabulary import prompt_variables

SYSTEM = "You are an expert physician who explains the answers to medical exam questions."
MALFORMED_EXAMPLES = 20


@dataclass
class Trajectory:
    item: Item
    attempts: list[Attempt] = field(default_factory=list)
    solved_round: int | None = None
    malformed: list[dict[str, Any]] = field(default_factory=list)
    chain: str | None = None  # search: the kept chain of a search solved after round 1
    rewrite: str = "none"  # none | rewritten | joined (no rewrite prompt) | failed (joined)

    @property
    def solved(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].letter == self.item.answer


def evidence(item: Item) -> list[str]:
    """Search evidence: the sampled path's facts that do not name the answer, and what the path
    says of the answer with the answer left out ("the disease asked for presents with fever")."""
    provenance = item.provenance or {}
    if not provenance.get("path"):
        return []
    facts = path_facts(provenance)
    return facts["facts"] + [f"the {facts['answer_type']} asked for {clue}" for clue in facts["clues"]]


def search_item(item: Item) -> dict[str, Any]:
    """What a search request carries of its item: everything but the label."""
    return item.model_dump(exclude_none=True, exclude={"answer", "messages"})


def chain_so_far(trajectory: Trajectory) -> list[dict[str, Any]]:
    """The attempts a search continues, in order: what each said and the option it named."""
    options = trajectory.item.options
    return [{"strategy": a.strategy, "text": a.text, "reasoning": a.reasoning,
             "named": options.get(a.letter) if a.letter else None} for a in trajectory.attempts]


def strategy_of(cfg: DistillJob, trajectory: Trajectory, round_number: int) -> str | None:
    if cfg.protocol == "search":
        return drawn_strategy(cfg.refine, cfg.seed, trajectory.item.id, round_number)
    return cycled_strategy(cfg.refine, round_number)


def build_request(cfg: DistillJob, trajectory: Trajectory, round_number: int) -> Request:
    item = trajectory.item
    strategy = strategy_of(cfg, trajectory, round_number)
    if cfg.protocol == "search":
        variables = prompt_variables("search", {
            "question": item.question, "options": item.options,
            "facts": evidence(item) if cfg.evidence else [], "strategy": strategy,
            "chain": chain_so_far(trajectory)})
        shown = search_item(item)
    else:
        provenance = item.provenance or {}
        facts = path_facts(provenance)["all_facts"] if provenance.get("path") else []
        previous = trajectory.attempts[-1].text if trajectory.attempts else ""
        variables = prompt_variables("distill", {
            "question": item.question, "options": item.options, "answer": item.answer,
            "answer_text": item.options[item.answer], "facts": facts, "strategy": strategy,
            "previous": previous})
        shown = item.model_dump(exclude_none=True)
    user = render(cfg.prompt, **variables)
    # The template teacher reads the prompt's optional `answer_as` macro (how to name the option).
    return Request(task="reason",
                   messages=({"role": "system", "content": SYSTEM},
                             {"role": "user", "content": user}),
                   context={"item": shown, "round": round_number, "strategy": strategy,
                            "protocol": cfg.protocol, "template": cfg.prompt,
                            "variables": variables})


def load_sources(cfg: DistillJob) -> list[Item]:
    items: list[Item] = []
    for source in cfg.sources:
        loaded = load_source(source)
        for item in loaded:
            item.source = source.name or item.source
        items += loaded
    return items


def judge_free_answers(judge: Any, pending: list[tuple[Trajectory, Attempt]]) -> None:
    """The judge decides the attempts that name no option exactly (search with a judge)."""
    asked = [(t, a) for t, a in pending if a.letter is None and a.said and a.reasoning]
    if not asked:
        return
    requests = [Request(task="judge", messages=({"role": "user", "content": JUDGE_PROMPT.format(
        response=a.said, reference=t.item.options[t.item.answer])},),
        context={"response": a.said, "reference": t.item.options[t.item.answer]})
        for t, a in asked]
    for (trajectory, attempt), response in zip(asked, complete_batched(judge, requests, "judge")):
        if response.texts and judge_says_true(response.texts[0]):
            attempt.letter, attempt.named_by, attempt.judged = trajectory.item.answer, "text", True


def refine_all(cfg: DistillJob, trajectories: list[Trajectory], teacher: Any,
               judge: Any = None) -> None:
    """Run the rounds; each trajectory records the round it was solved in and its malformed
    attempts (so a shard's trajectories tell the gather what the whole job's would)."""
    pending = trajectories
    rounds = cfg.max_rounds if cfg.refine else 1
    for round_number in range(1, rounds + 1):
        if not pending:
            break
        requests = [build_request(cfg, t, round_number) for t in pending]
        responses = complete_batched(teacher, requests, f"distill round {round_number}")
        attempts = [parse_attempt(r.texts[0] if r.texts else "", t.item.options,
                                  request.context["strategy"])
                    for t, r, request in zip(pending, responses, requests)]
        if judge is not None:
            judge_free_answers(judge, list(zip(pending, attempts)))
        still = []
        for trajectory, attempt in zip(pending, attempts):
            if attempt.letter is None or not attempt.reasoning:
                trajectory.malformed.append({
                    "id": trajectory.item.id, "round": round_number,
                    "problem": "no answer letter" if attempt.letter is None
                    else "empty reasoning", "text": attempt.text[:200]})
            trajectory.attempts.append(attempt)
            if trajectory.solved and attempt.reasoning:
                trajectory.solved_round = round_number
            else:
                still.append(trajectory)
        pending = still


def rewrite_request(cfg: DistillJob, trajectory: Trajectory) -> Request:
    item, last = trajectory.item, trajectory.attempts[-1]
    said = item.options[last.letter] if last.named_by == "text" else last.letter
    variables = prompt_variables("rewrite", {"question": item.question, "options": item.options,
                                             "chain": chain_so_far(trajectory), "said": said})
    return Request(task="rewrite",
                   messages=({"role": "system", "content": SYSTEM},
                             {"role": "user", "content": render(cfg.rewrite, **variables)}),
                   context={"item": search_item(item), "variables": variables})


def rewrite_all(cfg: DistillJob, trajectories: list[Trajectory], teacher: Any) -> None:
    """Searches solved after round 1 become one chain: rewritten by the declared prompt when it
    ends on the same option, else the attempts joined as they are."""
    multi = [t for t in trajectories if t.solved_round is not None and t.solved_round > 1]
    for trajectory in multi:
        trajectory.chain, trajectory.rewrite = stitched(trajectory.attempts), "joined"
    if not cfg.rewrite or not multi:
        return
    requests = [rewrite_request(cfg, t) for t in multi]
    for trajectory, response in zip(multi, complete_batched(teacher, requests, "distill rewrite")):
        natural = parse_attempt(response.texts[0] if response.texts else "", trajectory.item.options)
        if natural.letter == trajectory.item.answer and natural.reasoning:
            trajectory.chain, trajectory.rewrite = natural.reasoning, "rewritten"
        else:
            trajectory.rewrite = "failed"


def final_item(trajectory: Trajectory, keep: str, protocol: str) -> Item | None:
    usable = [a for a in trajectory.attempts if a.letter and a.reasoning]
    if not usable:
        return None
    last = usable[-1]
    if last.letter != trajectory.item.answer and keep == "correct":
        return None
    item = trajectory.item.model_copy(deep=True)
    said = item.options[last.letter] if last.named_by == "text" else last.letter
    chain = trajectory.chain if trajectory.chain is not None else last.reasoning
    item.messages = prompt_messages(item) + [
        {"role": "assistant", "content": completion_text(chain, said)}]
    item.provenance = {
        **item.provenance, "distill_rounds": len(trajectory.attempts),
        "distill_correct": last.letter == item.answer,
        "distill": {"protocol": protocol, "solved_round": trajectory.solved_round,
                    "rewrite": trajectory.rewrite,
                    "attempts": [a.record(n, item.answer)
                                 for n, a in enumerate(trajectory.attempts, start=1)]}}
    return item


def outcome(trajectory: Trajectory, keep: str, protocol: str) -> dict[str, Any]:
    """What one item became: the kept item (or None), its round, its malformed attempts, the
    strategies its chain continued with and, for a joined search, its length before and after
    the rewrite."""
    item = final_item(trajectory, keep, protocol)
    solved = trajectory.solved_round
    lengths = None
    if trajectory.chain is not None:
        lengths = [words(stitched(trajectory.attempts)), words(trajectory.chain)]
    return {"item": item.model_dump(exclude_none=True) if item is not None else None,
            "solved": str(solved) if solved is not None else "unsolved",
            "malformed": trajectory.malformed,
            "strategies": [a.strategy for a in trajectory.attempts if a.strategy],
            "rewrite": trajectory.rewrite, "words": lengths}


def run(cfg: DistillJob, ctx: JobContext) -> None:
    if cfg.max_rounds < 1:
        raise JobError(f"{cfg.job}: field 'max_rounds' must be >= 1, got {cfg.max_rounds}")
    with ctx.timed("load"):
        items = load_sources(cfg)
    picked = shards.positions([item.id for item in items], cfg.shard)
    teacher = make_teacher(cfg.teacher, cfg.cache_dir, cfg.seed)
    judge = make_teacher(cfg.judge, cfg.cache_dir, cfg.seed) if cfg.judge else None
    trajectories = [Trajectory(items[pos]) for pos in picked]
    try:
        with ctx.timed("teacher"):
            refine_all(cfg, trajectories, teacher, judge)
            if cfg.protocol == "search":
                rewrite_all(cfg, trajectories, teacher)
    except (PromptError, TeacherError) as err:
        raise JobError(str(err)) from None
    outs = [outcome(t, cfg.keep, cfg.protocol) for t in trajectories]
    counts = teacher.counts()
    if judge is not None:
        counts = {key: counts[key] + judge.counts()[key] for key in counts}
    if cfg.shard is not None:
        shards.finish_shard(cfg, ctx, len(items), picked, outs, counts)
    else:
        finish(cfg, ctx, len(items), outs, counts)


def chain_lengths(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """Words per joined search before (all attempts) and after the rewrite, summed and counted."""
    joined = [out["words"] for out in outs if out.get("words")]
    return {"searches": len(joined), "words_before": sum(b for b, _ in joined),
            "words_after": sum(a for _, a in joined),
            "rewrites": dict(sorted(Counter(out["rewrite"] for out in outs
                                            if out["rewrite"] != "none").items()))}


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
    strategies = Counter(s for out in outs for s in out["strategies"])
    ctx.counts.update({"input": total, "output": len(kept), "malformed": len(malformed),
                       **teacher_counts, "rounds": dict(sorted(rounds.items())),
                       "strategies": dict(sorted(strategies.items())),
                       "chains": chain_lengths(outs),
                       "by_source": dict(sorted(Counter(i["source"] for i in kept).items()))})
    ctx.metrics["protocol"] = cfg.protocol
    ctx.metrics["malformed_examples"] = malformed[:MALFORMED_EXAMPLES]
