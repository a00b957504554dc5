"""Datasets: their options against their format, their files against the declared format (the
first record is read when the file is local), and how they are used (a benchmark that is also
trained on, an answer pattern narrower than the data's options).

`vocabulary.SPLIT_FIELDS` is shared with the runtime loader: `split = "health"` keeps the rows whose field
(for MMLU-Pro, `category`) equals the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from fleming_dsl import ir
from fleming_dsl.check.common import Checked, option, option_key
from fleming_dsl.check.files import exists, local_path
from fleming_dsl.errors import Diagnostic, FlemingError
from fleming_dsl.spec import ast
from fleming_dsl.vocabulary import OPTION_LETTERS, SPLIT_FIELDS, answer_letter, option_table

# format -> the fields its rows have, each as alternatives (any one of them)
FORMAT_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "medqa": (("question",), ("options",), ("answer_idx",)),
    "medmcqa": (("question",), ("opa",), ("cop",)),
    "pubmedqa": (("QUESTION",), ("CONTEXTS",), ("final_decision",)),
    "mmlu": (("question",), ("choices", "options"), ("answer",)),
    "mmlu_pro": (("question",), ("options",), ("answer", "answer_index")),
    "medxpertqa": (("question",), ("options",), ("label",)),
    "medbullets": (("question",), ("options", "opa"), ("answer_idx",)),
    "careqa": (("question",), ("op1",), ("cop",)),
    "jmed": (("question",), ("options",), ("answer", "answer_idx")),
    "mcq": (("question",), ("options",), ("answer", "answer_idx")),
    "chat": (("messages",),),
}
FIRST_RECORDS = 20  # records of a local dataset read at check time (its format, its answers)
_WHOLE_JSON_BYTES = 64 << 20  # a .json file up to this size is parsed whole to find its first row


def _datasets(c: Checked) -> Iterator[ast.DatasetDecl]:
    return (d for d in c.program.decls if isinstance(d, ast.DatasetDecl))


def _dataset_option(d: ast.DatasetDecl, key: str) -> tuple[ast.Name, ast.Value] | None:
    for kw in d.source.kwargs:
        if kw.key.name == key:
            return kw.key, kw.value
    value = option(d.block, key)
    return (option_key(d.block, key), value) if value is not None else None


def split_has_a_field(c: Checked) -> Iterator[Diagnostic]:
    for d in _datasets(c):
        found = _dataset_option(d, "split")
        fmt = d.source.func.name
        if found is not None and fmt in FORMAT_FIELDS and fmt not in SPLIT_FIELDS:
            yield Diagnostic(f"'split' does not apply to {fmt} data: its rows have no field to select on",
                             found[0].span, expected="split on " + ", ".join(
                                 f"{f} ({field})" for f, field in SPLIT_FIELDS.items()),
                             hint="point the dataset at the file of the split you want")


class _Unreadable(FlemingError):
    pass


def first_record(path: Path) -> tuple[str, object]:
    """(location, first row) of a local dataset file, read the way the job reads it."""
    return first_records(path, 1)[0]


def first_records(path: Path, count: int) -> list[tuple[str, object]]:
    """(location, row) of the first `count` rows of a local dataset file (at least one), read the
    way the job reads it; a bounded read of a JSON-lines file whatever its size."""
    if path.is_dir():
        raise _Unreadable("is a folder, expected a file")
    size = path.stat().st_size
    if size == 0:
        raise _Unreadable("is empty")
    rows: list[tuple[str, object]] = []
    try:
        if path.suffix == ".json" and size <= _WHOLE_JSON_BYTES:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                data = None
            if isinstance(data, list) and data:
                return [(str(i), row) for i, row in enumerate(data[:count], 1)]
            if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
                return [(str(key), data[key]) for key in list(data)[:count]]
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    rows.append((str(number), json.loads(line)))
                except json.JSONDecodeError as err:
                    if rows:
                        break  # the job names this line; the rows before it are judged here
                    raise _Unreadable(f"line {number} is not JSON ({err.msg})") from None
                if len(rows) >= count:
                    break
    except UnicodeDecodeError as err:
        raise _Unreadable(f"is not UTF-8 text (byte {err.start})") from None
    if not rows:
        raise _Unreadable("has no records")
    return rows


def _first_records_or_error(path: Path) -> list[tuple[str, object]] | Exception | None:
    """first_records(path), the error it raised, or None when the file does not exist."""
    if not exists(path):
        return None
    try:
        return first_records(path, FIRST_RECORDS)
    except (_Unreadable, OSError) as err:
        return err


def _fits(row: object, fmt: str) -> str | None:
    """The first field `row` lacks for `fmt`, or None when it has them all."""
    if not isinstance(row, dict):
        return "(a JSON object)"
    return next((group[0] for group in FORMAT_FIELDS[fmt] if not any(f in row for f in group)), None)


def format_matches_file(c: Checked) -> Iterator[Diagnostic]:
    """A local dataset's first record has the fields of its declared format."""
    records: dict[Path, list[tuple[str, object]] | Exception | None] = {}  # each file read once
    for d in _datasets(c):
        fmt = d.source.func.name
        arg = d.source.args[0] if d.source.args else None
        if fmt not in FORMAT_FIELDS or not isinstance(arg, ast.Str) or arg.value.endswith(".parquet"):
            continue
        path = local_path(c, d, arg.value)
        if path not in records:
            records[path] = _first_records_or_error(path)
        record = records[path]
        if record is None:
            continue  # missing_files reports it
        if isinstance(record, Exception):
            yield Diagnostic(f"cannot check the format of dataset {d.name.name}: {arg.value} {record}",
                             arg.span, severity="warning")
            continue
        where, row = record[0]
        lacking = _fits(row, fmt)
        if lacking is None:
            yield from _answers_are_letters(d, arg, record)
            continue
        likely = [f for f in FORMAT_FIELDS if f != fmt and _fits(row, f) is None]
        fields = ", ".join(sorted(row)[:8]) if isinstance(row, dict) else type(row).__name__
        yield Diagnostic(f"dataset {d.name.name} is declared {fmt}, but the first record of "
                         f"{arg.value} (at {where}) has no field '{lacking}'", d.source.func.span,
                         expected=f"the fields of {fmt}: " + ", ".join(
                             "/".join(g) for g in FORMAT_FIELDS[fmt]),
                         hint=(f"its fields ({fields}) fit {likely[0]}: write {likely[0]}(...)"
                               if likely else f"its fields are: {fields}"))


def _answers_are_letters(d: ast.DatasetDecl, arg: ast.Str,
                         rows: list[tuple[str, object]]) -> Iterator[Diagnostic]:
    """The first records of an `mcq`/`jmed` file name their answer as the job reads it: a letter
    of the options or an index, not the option's text."""
    if d.source.func.name not in ("mcq", "jmed"):
        return
    for where, row in rows:
        if not isinstance(row, dict):
            continue
        answer = row.get("answer") if row.get("answer") not in (None, "") else row.get("answer_idx")
        options: dict[str, str] = {}
        try:
            options = option_table(row.get("options"))
            if answer is not None:
                answer_letter(answer, options, "answer")
            continue
        except ValueError as err:
            problem = str(err)
        named = next((k for k, v in options.items() if v == str(answer).strip()), None)
        yield Diagnostic(f"dataset {d.name.name}: record {where} of {arg.value}: {problem}", arg.span,
                         expected=f"the {d.source.func.name} format: {_MCQ_SHAPE}",
                         hint=(f"the answer is the text of option {named}: write \"answer\": "
                               f"\"{named}\"" if named else "docs/data.md states the format"))
        return  # one record shows the mistake; the rest are likely alike


_MCQ_SHAPE = ('{"question": "...", "options": {"A": "...", "B": "..."} or ["...", "..."], '
              '"answer": "A" (a letter, or a 0-based index)}')


# ---------------------------------------------------------------- how data is used


def _training_datasets(c: Checked, name: str) -> frozenset[str]:
    """The datasets whose items reach a stage that trains on `name` (through distill/filter).

    Walked with a stack (a chain of filters may be 100,000 long) and remembered per name: many
    stages train on the same data."""
    memo = c.memo.setdefault("training_datasets", {})
    if name in memo:
        return memo[name]
    found: set[str] = set()
    seen: set[str] = set()
    stack = [name]
    while stack:
        here = stack.pop()
        if here in seen:
            continue
        seen.add(here)
        decl = c.by_name.get(here)
        if isinstance(decl, ast.DatasetDecl):
            found.add(here)
        elif isinstance(decl, ast.FilterDecl):
            stack.append(decl.source.name)
        elif isinstance(decl, ast.DistillDecl):
            stack.extend(s.name for s in reversed(decl.sources))
    memo[name] = frozenset(found)
    return memo[name]


def _stage_data_name(d: ast.StageDecl) -> str | None:
    data = d.method.args[1] if len(d.method.args) > 1 else None
    if isinstance(data, ast.Name):
        return data.name
    if isinstance(data, ast.Index):
        return data.base.name
    if isinstance(data, ast.Call) and data.args and isinstance(data.args[0], ast.Name):
        return data.args[0].name
    return None


def benchmarks_not_trained_on(c: Checked) -> Iterator[Diagnostic]:
    trained: dict[str, str] = {}  # dataset -> the first stage that trains on it
    for d in c.program.decls:
        if isinstance(d, ast.StageDecl) and (data := _stage_data_name(d)):
            for name in sorted(_training_datasets(c, data)):
                trained.setdefault(name, d.name.name)
    for d in c.program.decls:
        if isinstance(d, ast.EvaluateDecl):
            for bench in d.benchmarks:
                if bench.name in trained:
                    yield Diagnostic(f"benchmark '{bench.name}' is also training data (of stage "
                                     f"{trained[bench.name]}): its scores measure memory, not skill",
                                     bench.span, severity="warning",
                                     hint="evaluate on a held-out dataset, or train on another split")


# published maximum number of options per format (mcq/chat: unknown, not checked)
MAX_OPTIONS = {"medqa": 4, "medmcqa": 4, "pubmedqa": 3, "mmlu": 4, "mmlu_pro": 10,
               "medxpertqa": 10, "careqa": 4, "jmed": 21, "medbullets": 5}
_LETTER_CLASS = re.compile(r"<answer>\s*(\[[^\]]*\])")


def _options_of(c: Checked, name: str) -> int | None:
    """The most options an item of `name` can have, where it is known: None when any data that
    reaches it is of unknown width (or is reached twice). Walked with a stack over the IR (a
    sample's distractors with their default filled in), remembered per name."""
    memo = c.memo.setdefault("options_of", {})
    if name not in memo:
        memo[name] = _widest(c.declarations, name)
    return memo[name]


def _widest(decls: dict[str, ir.Decl], name: str) -> int | None:
    most: int | None = None
    seen: set[str] = set()
    stack = [name]
    while stack:
        here = stack.pop()
        if here in seen:
            return None
        seen.add(here)
        decl = decls.get(here)
        if isinstance(decl, ir.Filter):
            stack.append(decl.source)
            continue
        if isinstance(decl, ir.Distill):
            if not decl.sources:
                return None
            stack.extend(decl.sources)
            continue
        width = None
        if isinstance(decl, ir.Dataset):
            width = MAX_OPTIONS.get(decl.format)
        elif isinstance(decl, ir.Synthesize) and isinstance(sample := decls.get(decl.source), ir.Sample):
            width = sample.distractors + 1
            if decl.options is not None:  # `options = n` draws n - 1 of the k distractors
                width = min(width, decl.options)
        if width is None:
            return None
        most = width if most is None else max(most, width)
    return most


def answer_pattern_covers_options(c: Checked) -> Iterator[Diagnostic]:
    """A regex reward whose answer letters ([A-D]) miss letters the graded items can have."""
    assert c.experiment is not None
    reported: set = set()
    for stage in c.experiment.stages:
        if stage.method != "grpo" or stage.span in reported:
            continue
        reported.add(stage.span)  # the points of one sweep share their data and rewards
        data = stage.data.dataset or (stage.data.miner.pool if stage.data.miner else None)
        most = _options_of(c, data) if data else None
        decl = c.decl_at(stage.span)
        if most is None or not isinstance(decl, ast.StageDecl):
            continue
        terms = option(decl.block, "rewards")  # where each reward is named, to point at it
        written = {n.name: n for n in ([terms] if isinstance(terms, ast.Name)
                                       else [t.reward for t in getattr(terms, "terms", ())])}
        for term in stage.rewards:
            reward = c.declarations.get(term.reward)
            pattern = reward.options.get("pattern") if isinstance(reward, ir.Reward) \
                and reward.function == "regex" else None
            match = _LETTER_CLASS.search(pattern) if isinstance(pattern, str) else None
            if match is None:
                continue
            try:
                covered = [ch for ch in OPTION_LETTERS if re.fullmatch(match.group(1), ch)]
            except re.error:
                continue
            needed = OPTION_LETTERS[:most]
            missing = [ch for ch in needed if ch not in covered]
            if missing:
                where = written.get(term.reward)
                yield Diagnostic(f"reward {term.reward} accepts answers {match.group(1)}, but stage "
                                 f"{decl.name.name} trains on items with up to {most} options "
                                 f"(A-{needed[-1]})", where.span if where else stage.span,
                                 severity="warning", hint=f"widen the pattern to [A-{needed[-1]}]")


answer_pattern_covers_options.after_lowering = True  # type: ignore[attr-defined]
