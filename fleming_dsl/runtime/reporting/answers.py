"""A few evaluation answers per stage, right and wrong, so a reader sees what the figures count.

The choice is deterministic and the same for every stage: items in the order of a hash of
(benchmark, id), so the first wrong answer of the base model is often the same question the cold
start then gets right. Per stage and benchmark: the first right and the first wrong answer in that
order (first sample of each item).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from fleming_dsl.runtime.data.items import answer_tag

PER_KIND = 1  # right answers, and wrong ones, shown per stage and benchmark
QUESTION_CHARS = 90
ANSWER_CHARS = 60


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters (+ "...")."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut + "..."


def _order(row: dict[str, Any]) -> str:
    return hashlib.sha256(f"{row['benchmark']}/{row['id']}".encode()).hexdigest()


def model_answer(completion: str) -> str:
    """What the completion answered: its <answer> tag, else its end (no tag: cut or unformed)."""
    tag = answer_tag(completion)
    if tag is not None:
        return shorten(tag, ANSWER_CHARS)
    tail = " ".join(completion.split())[-ANSWER_CHARS:]
    return f"(no answer tag) ...{tail}" if tail else "(no answer tag; blank)"


def gold(row: dict[str, Any]) -> str:
    text = (row.get("options") or {}).get(row["answer"])
    return f"{row['answer']}. {shorten(text, ANSWER_CHARS)}" if text else str(row["answer"])


def example(row: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": row["benchmark"], "id": row["id"], "correct": row["correct"],
            "question": shorten(row.get("question") or "", QUESTION_CHARS),
            "answer": model_answer(row.get("completion") or ""), "extracted": row.get("extracted"),
            "gold": gold(row)}


def pick_answers(rows: Sequence[dict[str, Any]], per_kind: int = PER_KIND) -> list[dict[str, Any]]:
    """One stage's shown answers: per benchmark (in first-seen order) the first `per_kind` right
    and wrong ones in hash order."""
    firsts = sorted((row for row in rows if row.get("sample", 0) == 0), key=_order)
    shown = []
    for bench in dict.fromkeys(row["benchmark"] for row in rows):
        for correct in (True, False):
            picked = [row for row in firsts if row["benchmark"] == bench and row["correct"] is correct]
            shown += [example(row) for row in picked[:per_kind]]
    return shown
