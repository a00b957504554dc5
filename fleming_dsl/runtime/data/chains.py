"""Reasoning chains of a distillation: one attempt as the teacher wrote it, the strategy a failed
chain continues with, and a multi-round search joined into one chain.

Pure functions of their arguments; `runtime/jobs/distill.py` runs the rounds and the teacher,
`runtime/teachers/backends/template.py` writes attempts the same way a model would.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fleming_dsl.runtime.data.items import extract_answer

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TRUE = re.compile(r"\btrue\b", re.IGNORECASE)

# HuatuoGPT-o1's verifier prompt (search_for_complex_reasoning_path.py, `verify_prompt`): the
# judge compares an answer that names no option exactly with the reference answer.
JUDGE_PROMPT = """<Model Response>
{response}
</Model Response>

<Reference Answer>
{reference}
</Reference Answer>

You are provided with a model-generated response (<Model Response>) and a reference answer \
(<Reference Answer>). Compare the model response with the reference answer and determine its \
correctness. Your task is to simply output "True" if the response is correct, and "False" \
otherwise."""


@dataclass
class Attempt:
    letter: str | None  # the option it commits to (after the verifier, for a judged answer)
    reasoning: str
    text: str  # the raw answer, kept in provenance
    named_by: str | None = None  # "letter" or "text": how the teacher named its option
    strategy: str | None = None  # the strategy this round continued with (None in round 1)
    said: str = ""  # the <answer> tag's content, what a judge reads
    judged: bool = False  # the option was decided by the judge, not an exact match

    def record(self, round_number: int, answer: str) -> dict:
        """This round in the item's provenance."""
        return {"round": round_number, "strategy": self.strategy, "answer": self.letter,
                "verified": self.letter == answer, "judged": self.judged, "text": self.text}


def parse_attempt(text: str, options: dict[str, str], strategy: str | None = None) -> Attempt:
    """The committed option and the reasoning (the <think> body, else the text without tags).
    A teacher may name its option by letter or by the option's exact text (what the prompt
    asks for); the worked answer keeps that choice."""
    letter, how = extract_answer(text, options, "text")
    think = _THINK.findall(text)
    reasoning = think[-1] if think else _ANSWER_TAG.sub("", text)
    tags = _ANSWER_TAG.findall(text)
    return Attempt(letter=letter, reasoning=reasoning.strip(), text=text, named_by=how,
                   strategy=strategy, said=tags[-1].strip() if tags else "")


def unit_draw(seed: int, *key: object) -> float:
    """A number in [0, 1) fixed by the seed and the key: the same item draws the same number in
    every run, in every shard, whatever else the job holds."""
    digest = hashlib.sha256(":".join(map(str, (seed, *key))).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def drawn_strategy(refine: tuple[str, ...], seed: int, item_id: str, round_number: int) -> str | None:
    """Search: the strategy round `round_number` continues a failed chain with, drawn from the
    declared set per item and round (HuatuoGPT-o1 draws one at random each time)."""
    if round_number == 1 or not refine:
        return None
    return refine[int(unit_draw(seed, "strategy", item_id, round_number) * len(refine))]


def cycled_strategy(refine: tuple[str, ...], round_number: int) -> str | None:
    """Rationale: round r > 1 takes the declared strategies in order."""
    return None if round_number == 1 or not refine else refine[(round_number - 2) % len(refine)]


def stitched(attempts: list[Attempt]) -> str:
    """The raw search as one chain: every attempt's reasoning in order (a later attempt opens
    with its reflection on the one before)."""
    return "\n\n".join(a.reasoning for a in attempts if a.reasoning)


def words(text: str) -> int:
    return len(text.split())


def judge_says_true(text: str) -> bool:
    return _TRUE.search(text) is not None
