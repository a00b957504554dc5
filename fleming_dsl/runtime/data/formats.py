"""Loaders of published medical QA formats: every benchmark row becomes an `items.Item`.

`load_items(path, format)` reads a file as its publishers ship it (JSONL, a JSON list, a JSON
object keyed by id, or parquet via pyarrow) and maps each row to an item with options A.. and
the correct letter. A row it cannot use raises `JobError("<file>:<line>: field 'x' ...")`; for
JSON objects and parquet the "line" is the row's key or 1-based row number.

Formats (field names as published):
- medqa: question, options {A..}, answer_idx (letter), answer (text).
- medmcqa: id, question, opa..opd, cop. `cop` is 1-based in the original JSON release and
  0-based in the common HF parquet/JSONL copies. Detected per file: any cop 0 -> 0-based; any
  cop 4 -> 1-based; otherwise (only 1..3 seen) by extension: `.json` (the original release)
  1-based, anything else 0-based.
- pubmedqa: ori_pqal.json, {PMID: {QUESTION, CONTEXTS, final_decision, LONG_ANSWER, ...}};
  options A=yes B=no C=maybe; the question shows the contexts then the question.
- medxpertqa: id, question, options {A..J}, label, medical_task, body_system, question_type
  (kept in provenance: the eval reports accuracy per value of each).
- medagentsbench: MedAgentsBench's layout shared by all its subsets (e.g. medqa/test_hard.jsonl):
  realidx, question, options {A..}, answer_idx (letter), answer, meta_info.
- mmlu: question, choices (list) or options, answer (index or letter).
- mmlu_pro: question_id, question, options (list), answer (letter) / answer_index.
- medbullets: question, opa..ope (or options), answer_idx (letter).
- careqa: question, op1..op4, cop (1-based), unique_id.
- jmed, mcq: question, options (dict or list, up to 21 for JMED), answer (letter) / answer_idx.
- items: the project's own item JSONL. chat: {"messages": [...]} whose user turn is rendered
  by `items.user_message` (question, blank line, "A. text" lines); the answer comes from an
  `answer` field or the assistant turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleming_dsl.errors import FlemingError, JobError
from fleming_dsl.runtime.data.items import LETTERS, MEDXPERTQA_GROUPS, Item, extract_choice
from fleming_dsl.vocabulary import SPLIT_FIELDS, answer_letter, option_table

Row = dict[str, Any]
FORMATS = ("medqa", "medmcqa", "pubmedqa", "mmlu", "mmlu_pro", "medxpertqa", "medbullets",
           "careqa", "jmed", "mcq", "medagentsbench", "items", "chat")
PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


class RowError(FlemingError, ValueError):
    """A row a loader cannot use; `load_items` adds the file and line."""


# ---------------------------------------------------------------- reading files


def _read_rows(path: Path) -> Iterator[tuple[str, Row]]:
    """(location, row) pairs: JSONL line numbers, JSON list indices, or JSON object keys.

    `.jsonl` is always one row per line. Any other text file is first read as one JSON
    document: a list holds rows, an object of objects is keyed by id (ori_pqal.json); anything
    else (MedMCQA's original `.json` files are JSONL) is read line by line.
    """
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # installed with `datasets`

        for number, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield str(number), row
        return
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".jsonl":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            yield from ((str(n), row) for n, row in enumerate(data, 1))
            return
        if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
            yield from ((str(key), row) for key, row in data.items())
            return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield str(number), json.loads(line)
            except json.JSONDecodeError as err:
                raise JobError(f"{path}:{number}: not valid JSON ({err.msg})") from None


# ---------------------------------------------------------------- field helpers


def _field(row: Row, *names: str) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise RowError(f"field '{names[0]}' is missing")


def _text(row: Row, name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"field '{name}' must be a non-empty string")
    return value.strip()


def _options(value: Any, name: str = "options") -> dict[str, str]:
    try:
        return option_table(value, name)
    except ValueError as err:
        raise RowError(str(err)) from None


def _lettered(row: Row, keys: list[str]) -> dict[str, str]:
    """Options from separate columns (opa, opb, ... / op1, op2, ...), present ones only."""
    options = {}
    for letter, key in zip(LETTERS, keys):
        if row.get(key) is not None and str(row[key]).strip():
            options[letter] = str(row[key]).strip()
    if len(options) < 2:
        raise RowError(f"fields '{keys[0]}'..'{keys[-1]}' hold fewer than 2 options")
    return options


def _letter(value: Any, options: dict[str, str], name: str, base: int = 0) -> str:
    """The answer as a letter, from a letter or an index counted from `base`."""
    try:
        return answer_letter(value, options, name, base)
    except ValueError as err:
        raise RowError(str(err)) from None


def _row_id(row: Row, location: str, stem: str, *names: str) -> str:
    for name in names:
        if row.get(name) not in (None, ""):
            return str(row[name])
    return f"{stem}-{location}"


# ---------------------------------------------------------------- per-format row mappers


def _medqa(row: Row, loc: str, stem: str) -> Item:
    options = _options(_field(row, "options"))
    return Item(id=_row_id(row, loc, stem, "id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "answer_idx"), options, "answer_idx"),
                provenance={k: row[k] for k in ("meta_info",) if k in row})


def _medmcqa(row: Row, loc: str, stem: str, base: int) -> Item:
    options = _lettered(row, ["opa", "opb", "opc", "opd"])
    return Item(id=_row_id(row, loc, stem, "id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "cop"), options, "cop", base),
                provenance={k: row[k] for k in ("subject_name", "topic_name") if row.get(k)})


def _pubmedqa(row: Row, loc: str, stem: str) -> Item:
    contexts = _field(row, "CONTEXTS")
    if not isinstance(contexts, list):
        raise RowError("field 'CONTEXTS' must be a list of strings")
    decision = str(_field(row, "final_decision")).strip().lower()
    letters = {v: k for k, v in PUBMEDQA_OPTIONS.items()}
    if decision not in letters:
        raise RowError(f"field 'final_decision' is {decision!r}, expected yes, no or maybe")
    question = "Context: " + " ".join(str(c).strip() for c in contexts)
    question += "\nQuestion: " + _text(row, "QUESTION")
    return Item(id=str(loc), question=question, options=dict(PUBMEDQA_OPTIONS),
                answer=letters[decision], provenance={"pmid": str(loc)})


# MedXpertQA's published categories: the report breaks accuracy down by each


def _medxpertqa(row: Row, loc: str, stem: str) -> Item:
    options = _options(_field(row, "options"))
    return Item(id=_row_id(row, loc, stem, "id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "label"), options, "label"),
                provenance={k: str(row[k]) for k in MEDXPERTQA_GROUPS if row.get(k) not in (None, "")})


def _medagentsbench(row: Row, loc: str, stem: str) -> Item:
    """MedAgentsBench's shared layout for every subset (test_hard.jsonl of medqa, pubmedqa,
    medmcqa, medbullets, mmlu, mmlu-pro, afrimedqa, medexqa, medxpertqa-r/-u): realidx,
    question, options {A..}, answer_idx (letter), answer (text), meta_info."""
    options = _options(_field(row, "options"))
    return Item(id=_row_id(row, loc, stem, "realidx", "id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "answer_idx"), options, "answer_idx"),
                provenance={k: row[k] for k in ("meta_info",) if row.get(k) not in (None, "")})


def _mmlu(row: Row, loc: str, stem: str) -> Item:
    options = _options(_field(row, "choices", "options"), "choices")
    return Item(id=_row_id(row, loc, stem, "id", "question_id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "answer"), options, "answer"))


def _mmlu_pro(row: Row, loc: str, stem: str) -> Item:
    options = _options(_field(row, "options"))
    answer = row.get("answer") if row.get("answer") not in (None, "") else row.get("answer_index")
    if answer is None:
        raise RowError("field 'answer' is missing")
    return Item(id=_row_id(row, loc, stem, "question_id", "id"), question=_text(row, "question"),
                options=options, answer=_letter(answer, options, "answer"),
                provenance={k: row[k] for k in ("category", "src") if row.get(k)})


def _medbullets(row: Row, loc: str, stem: str) -> Item:
    if "options" in row:
        options = _options(row["options"])
    else:
        options = _lettered(row, ["opa", "opb", "opc", "opd", "ope"])
    return Item(id=_row_id(row, loc, stem, "id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "answer_idx"), options, "answer_idx"))


def _careqa(row: Row, loc: str, stem: str) -> Item:
    options = _lettered(row, ["op1", "op2", "op3", "op4", "op5"])
    return Item(id=_row_id(row, loc, stem, "unique_id", "id"), question=_text(row, "question"),
                options=options, answer=_letter(_field(row, "cop"), options, "cop", base=1))


def _mcq(row: Row, loc: str, stem: str) -> Item:
    options = _options(_field(row, "options"))
    answer = row.get("answer") if row.get("answer") not in (None, "") else row.get("answer_idx")
    if answer is None:
        raise RowError("field 'answer' is missing")
    return Item(id=_row_id(row, loc, stem, "id"), question=_text(row, "question"),
                options=options, answer=_letter(answer, options, "answer"))


_OPTION_LINE = re.compile(r"^([A-Z])[.)]\s+(.+)$")


def _chat(row: Row, loc: str, stem: str) -> Item:
    messages = _field(row, "messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RowError("field 'messages' must be a list of {role, content} objects")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise RowError("field 'messages' has no user turn")
    lines = str(users[-1].get("content", "")).strip().splitlines()
    options = {}
    while lines and (match := _OPTION_LINE.match(lines[-1].strip())):
        options[match.group(1)] = match.group(2).strip()
        lines.pop()
    options = dict(sorted(options.items()))
    if len(options) < 2:
        raise RowError("field 'messages': the user turn lists fewer than 2 'A. option' lines")
    assistant = [m for m in messages if m.get("role") == "assistant"]
    answer = row.get("answer") or (extract_choice(str(assistant[-1].get("content", "")),
                                                  "".join(options)) if assistant else None)
    if not answer:
        raise RowError("field 'answer' is missing and no assistant turn gives one")
    return Item(id=_row_id(row, loc, stem, "id"), question="\n".join(lines).strip(),
                options=options, answer=_letter(answer, options, "answer"),
                messages=[{"role": str(m.get("role")), "content": str(m.get("content"))}
                          for m in messages])


def _items(row: Row, loc: str, stem: str) -> Item:
    try:
        item = Item.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "row"
        raise RowError(f"field '{name}' {first['msg'].lower()}") from None
    # Content problems (answer not among options, duplicates) are the filter's `format` step's
    # to count and report, so only the shape is checked here.
    return item


MAPPERS: dict[str, Callable[[Row, str, str], Item]] = {
    "medqa": _medqa, "pubmedqa": _pubmedqa, "medxpertqa": _medxpertqa, "mmlu": _mmlu,
    "mmlu_pro": _mmlu_pro, "medbullets": _medbullets, "careqa": _careqa, "jmed": _mcq,
    "medagentsbench": _medagentsbench,
    "mcq": _mcq, "items": _items, "chat": _chat,
}


def medmcqa_base(path: Path, cops: list[Any]) -> int:
    """0 or 1: how this file counts `cop` (see the module docstring)."""
    seen = {int(c) for c in cops if isinstance(c, int) or (isinstance(c, str) and c.isdigit())}
    if 0 in seen:
        return 0
    if 4 in seen:
        return 1
    return 1 if path.suffix == ".json" else 0


def select_rows(path: Path, format: str, rows: list[tuple[str, Row]], split: str | None,
                limit: int | None) -> list[tuple[str, Row]]:
    """The rows a dataset declaration names: those of its split (by the format's split field,
    case-insensitive), then the first `limit` of them. Selecting nothing is an error."""
    if split is not None:
        field = SPLIT_FIELDS.get(format)
        if field is None:
            raise JobError(f"{path}: field 'split': {format} data has no split field")
        rows = [(loc, row) for loc, row in rows
                if isinstance(row, dict) and str(row.get(field, "")).strip().lower() == split.lower()]
        if not rows:
            raise JobError(f"{path}: field 'split': no row has {field} = {split!r}")
    return rows[:limit] if limit is not None else rows


def load_items(path: str | Path, format: str, split: str | None = None,
               limit: int | None = None) -> list[Item]:
    """The rows of `path` (of `split`, the first `limit`) as items; `format` is one of FORMATS."""
    path = Path(path)
    if format not in FORMATS:
        raise JobError(f"{path}: unknown dataset format {format!r} (known: {', '.join(FORMATS)})")
    if path.is_dir():
        raise JobError(f"{path}: is a folder, expected a dataset file")
    if not path.is_file():
        raise JobError(f"{path}: dataset file not found")
    try:
        rows = select_rows(path, format, list(_read_rows(path)), split, limit)
    except UnicodeDecodeError as err:
        raise JobError(f"{path}: not UTF-8 text (byte {err.start}): {err.reason}") from None
    if not rows:
        raise JobError(f"{path}: no rows (an empty dataset file)")
    stem = path.stem
    if format == "medmcqa":
        base = medmcqa_base(path, [r.get("cop") for _, r in rows if isinstance(r, dict)])
        mapper: Callable[[Row, str, str], Item] = lambda r, loc, s: _medmcqa(r, loc, s, base)
    else:
        mapper = MAPPERS[format]
    items = []
    for location, row in rows:
        if not isinstance(row, dict):
            raise JobError(f"{path}:{location}: row must be a JSON object")
        try:
            item = mapper(row, location, stem)
        except RowError as err:
            raise JobError(f"{path}:{location}: {err}") from None
        if not item.source:
            item.source = stem
        items.append(item)
    return items


def load_source(source: Any) -> list[Item]:
    """The items of a job config's DataSource or Benchmark (path, format, split, limit)."""
    return load_items(source.path, source.format, getattr(source, "split", None),
                      getattr(source, "limit", None))
