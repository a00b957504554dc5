"""The item: one multiple-choice question as every data job reads and writes it (one JSON per line).

Synthesis writes items, distillation adds `messages`, the filter adds `difficulty`/`pass_rate`,
training and evaluation read them. Loaders of published benchmark formats (`formats.py`) turn
each benchmark's rows into items too, so there is one shape downstream.

Also here: how a question is put to the student model and how an answer is read back, because
SFT, GRPO rewards and evaluation must agree on both exactly.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict

from fleming_dsl.vocabulary import OPTION_LETTERS

LETTERS = OPTION_LETTERS
# MedXpertQA's published categories: the row fields the loader keeps in an item's provenance,
# which evaluation scores and the report tabulates accuracy by
MEDXPERTQA_GROUPS = ("medical_task", "body_system", "question_type")

SYSTEM_PROMPT = (
    "You are a careful medical expert. Think step by step inside <think></think>, "
    "then give the letter of the single best option inside <answer></answer>."
)


class Item(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    question: str
    options: dict[str, str]  # letter -> option text, in letter order
    answer: str  # the correct letter
    source: str = ""
    provenance: dict[str, Any] = {}
    messages: list[dict[str, str]] | None = None  # chat transcript with the worked answer
    difficulty: str | None = None  # easy | moderate | hard
    pass_rate: float | None = None


def user_message(item: Item) -> str:
    lines = [item.question.strip(), ""]
    lines += [f"{letter}. {text}" for letter, text in item.options.items()]
    return "\n".join(lines)


def prompt_messages(item: Item) -> list[dict[str, str]]:
    """The conversation the student sees, without the answer (GRPO prompts, evaluation)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(item)},
    ]


def completion_text(reasoning: str, letter: str) -> str:
    """The target shape of a student answer; the format reward checks exactly this."""
    return f"<think>{reasoning.strip()}</think><answer>{letter}</answer>"


FORMAT_RE = re.compile(r"^\s*<think>.*?</think>\s*<answer>\s*[A-Z]\s*</answer>\s*$", re.DOTALL)
# The same shape with any short answer inside the tag: the letter or an option's text.
FORMAT_TEXT_RE = re.compile(r"^\s*<think>.*?</think>\s*<answer>([^<]{1,200})</answer>\s*$", re.DOTALL)
ACCEPT = ("letter", "text")  # how an answer may name its option (choice_match, evaluate)

_ANSWER_PATTERNS = (
    re.compile(r"<answer>\s*\(?([A-Z])\)?\s*</answer>", re.DOTALL),
    # The letter itself is case-sensitive: "the answer is a beta blocker" names no option.
    re.compile(r"(?i:answer\s+is)\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])"),
    # "Answer: C", "**Answer:** (C)", LaTeX "\boxed{C}" (eval engineer: seen in teacher outputs)
    re.compile(r"(?i:answer)\s*\**\s*:\s*\**\s*\(?([A-Z])\)?(?![A-Za-z])"),
    re.compile(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}"),
    re.compile(r"^\s*\(?([A-Z])\)?[.):]?\s*$"),
)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_tag(text: str) -> str | None:
    """What the last <answer> tag of a completion says, or None without one."""
    tags = _ANSWER_TAG.findall(text)
    return tags[-1] if tags else None


def extract_choice(text: str, valid: str = LETTERS) -> str | None:
    """The option letter a completion commits to, or None.

    Tries, in order: an <answer> tag (the last one wins), "the answer is (C)", a bare letter.
    """
    tags = _ANSWER_PATTERNS[0].findall(text)
    if tags:
        return tags[-1] if tags[-1] in valid else None
    for pattern in _ANSWER_PATTERNS[1:]:
        found = pattern.findall(text)
        if found:
            letter = found[-1].upper()
            return letter if letter in valid else None
    return None


def normalise(text: str) -> str:
    """An option's text for comparison: Unicode-folded, case-folded, single-spaced, without
    surrounding quotes or a final full stop."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip("\"'`*").rstrip(".").strip()


def extract_answer(text: str, options: dict[str, str], accept: str = "letter"
                   ) -> tuple[str | None, str | None]:
    """(letter, how): the option a completion commits to and whether it named it by "letter"
    or by "text"; (None, None) when it commits to none.

    With accept = "letter" only letters count (`extract_choice`). With accept = "text" the last
    <answer> tag may also hold an option's exact text (compared after `normalise`), so
    `<answer>pneumonia</answer>` picks the option reading "Pneumonia"."""
    if accept == "text":
        tag = answer_tag(text)
        if tag is not None:
            said = normalise(tag)
            for letter, option in options.items():
                if said == normalise(option):
                    return letter, "text"
    letter = extract_choice(text, "".join(options))
    return (letter, "letter") if letter is not None else (None, None)


def is_well_formed(text: str, text_answers: bool = False) -> bool:
    """The trained shape, `<think>..</think><answer>X</answer>` with X a letter; with
    `text_answers` X may be any short text (an answer named by its text: whether it names an
    option is `extract_answer`'s question, not the shape's)."""
    if FORMAT_RE.match(text) is not None:
        return True
    return text_answers and FORMAT_TEXT_RE.match(text) is not None
