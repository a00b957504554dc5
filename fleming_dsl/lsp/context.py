"""Which block of the option table (`lower/options.py`) a place in a spec belongs to.

Two ways in. `option_at` walks the parsed AST (hover: the text parses). `Cursor` scans the text
before the cursor for brackets only (completion: the user is in the middle of typing, so the text
usually does not parse); it never decides what is valid, it only finds the enclosing block or call
and the words just before the cursor, and the option table answers the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleming_dsl import ir
from fleming_dsl.lower import options as table
from fleming_dsl.lower.stages import GRPO_ONLY  # lowering's list: rewards, generations, ...
from fleming_dsl.lower.schema import TRAINING_OPTIONS
from fleming_dsl.lsp.analysis import contains
from fleming_dsl.spec import ast

DECL_KEYWORDS = ("model", "graph", "sample", "dataset", "prompt", "synthesize", "distill", "filter",
                 "reward", "stage", "evaluate")
TOP_KEYWORDS = ("experiment", "include", "drop", "cluster") + DECL_KEYWORDS
# `KIND NAME = FUNCTION(...)`: the row of the option table's SOURCES naming the functions allowed
KIND_SOURCES = {"model": "model source", "graph": "graph format", "dataset": "dataset format",
                "prompt": "prompt source", "reward": "reward function", "stage": "stage method"}


def method_options(method: str) -> tuple[str, ...]:
    """The options of the stage block a method (sft, grpo) takes, by lowering's own tables."""
    not_taken = {o.word for o in TRAINING_OPTIONS if method not in o.methods}
    if method != "grpo":
        not_taken |= set(GRPO_ONLY)
    return tuple(o.name for o in table.block("stage").options if o.name not in not_taken)


def decl_block(kind: str) -> str | None:
    """The option-table block of a declaration kind's `{ ... }` (synthesize's too)."""
    return table.DECL_BLOCKS.get(kind) or (kind if kind in table.BY_KEY else None)


# ---------------------------------------------------------------- from the AST (hover)


def _call_block(call: ast.Call, decl_kind: str | None = None) -> str | None:
    name = call.func.name
    if name in table.CALL_BLOCKS:
        return table.CALL_BLOCKS[name]
    if decl_kind == "dataset":
        return "dataset"  # split/limit may be written as the format call's keywords
    return None


def _in_call(call: ast.Call, line: int, col: int, block: str | None):
    """(block key, Option-like (key Name)) for a keyword of `call` (or calls nested in it)."""
    for kw in call.kwargs:
        if contains(kw.key.span, line, col):
            return block, kw.key
        found = _in_value(kw.value, line, col)
        if found:
            return found
        if not isinstance(kw.value, ast.Call) and contains(kw.value.span, line, col):
            return block, kw.key  # a keyword's value: its option's entry
    for arg in call.args:
        found = _in_value(arg, line, col)
        if found:
            return found
    return None


def _in_value(value: ast.Value, line: int, col: int, decl_kind: str | None = None):
    if isinstance(value, ast.Call) and contains(value.span, line, col):
        return _in_call(value, line, col, _call_block(value, decl_kind))
    if isinstance(value, ast.ListV):
        for item in value.items:
            found = _in_value(item, line, col)
            if found:
                return found
    return None


def _in_block(block: ast.Block | None, key: str | None, line: int, col: int):
    if block is None or not contains(block.span, line, col):
        return None
    for item in block.items:
        if isinstance(item, ast.Option):
            if contains(item.key.span, line, col):
                return key, item.key
            found = _in_value(item.value, line, col)
            if found:
                return found
        elif isinstance(item, ast.Entry):
            name = item.name.name
            if name in table.NESTED_BLOCKS:
                found = _in_block(item.block, table.NESTED_BLOCKS[name], line, col)
            elif name in ir.FILTER_STEPS:
                found = (_in_call(item.call, line, col, f"{name}()") if item.call else None) or \
                    _in_block(item.block, "difficulty buckets", line, col)
            else:
                found = None
            if found:
                return found
        elif isinstance(item, ast.SweepItem) and contains(item.key.span, line, col):
            return key, item.key
    return None


def _around(module: ast.Module, line: int, col: int):
    """(statement, its block, the block's option-table key) of the statement under (line, col)."""
    for st in module.statements:
        if not contains(st.span, line, col):
            continue
        if isinstance(st, ast.Header):
            return st, st.block, "experiment"
        if isinstance(st, ast.ClusterDecl):
            return st, st.block, "cluster"
        if isinstance(st, ast.Decl):
            return st, getattr(st, "block", None), decl_block(st.kind)
        return None
    return None


def option_at(module: ast.Module, line: int, col: int) -> tuple[str | None, ast.Name] | None:
    """(block key, the option's key) when (line, col) is on an option name, else None."""
    found = _around(module, line, col)
    if found is None:
        return None
    st, block, key = found
    if isinstance(st, ast.Decl):
        for call in (getattr(st, "source", None), getattr(st, "method", None), getattr(st, "function", None)):
            if isinstance(call, ast.Call) and contains(call.span, line, col):
                return _in_value(call, line, col, st.kind)
    return _in_block(block, key, line, col)


def _value_in_block(block: ast.Block | None, key: str | None, line: int, col: int):
    """(block key, option key) of the option or sweep whose value holds (line, col)."""
    if block is None or not contains(block.span, line, col):
        return None
    for item in block.items:
        if isinstance(item, ast.Option) and contains(item.value.span, line, col):
            return key, item.key
        if isinstance(item, ast.SweepItem) and contains(item.values.span, line, col):
            return key, item.key
        if isinstance(item, ast.Entry) and item.name.name in table.NESTED_BLOCKS:
            found = _value_in_block(item.block, table.NESTED_BLOCKS[item.name.name], line, col)
            if found:
                return found
    return None


def value_at(module: ast.Module, line: int, col: int) -> tuple[str | None, ast.Name] | None:
    """(block key, option key) when (line, col) is in the value of a block's option."""
    found = _around(module, line, col)
    return _value_in_block(found[1], found[2], line, col) if found else None


def word_at(text: str, line: int, col: int) -> str | None:
    """The word of `text` under 1-based (line, col), a cursor just after it included; None in a
    string or a comment."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    for m in _TOKEN.finditer(lines[line - 1]):
        if m.start() < col <= m.end() + 1 and m.group(0).isidentifier():
            return m.group(0)
    return None


def function_at(module: ast.Module, line: int, col: int) -> str | None:
    """The block key of a call whose function name is under (line, col): vllm -> 'vllm()'."""
    names: list[ast.Name] = []

    def walk(value):
        if isinstance(value, ast.Call):
            names.append(value.func)
            for a in value.args:
                walk(a)
            for kw in value.kwargs:
                walk(kw.value)
        elif isinstance(value, ast.ListV):
            for v in value.items:
                walk(v)

    def walk_block(block):
        for item in block.items if block else ():
            if isinstance(item, ast.Option):
                walk(item.value)
            elif isinstance(item, ast.Entry):
                names.append(item.name)
                if item.call:
                    walk(item.call)
                walk_block(item.block)

    for st in module.statements:
        if isinstance(st, ast.Decl) and contains(st.span, line, col):
            for attr in ("source", "method", "function"):
                if isinstance(getattr(st, attr, None), ast.Call):
                    walk(getattr(st, attr))
            walk_block(getattr(st, "block", None))
    for name in names:
        if contains(name.span, line, col):
            key = name.name + "()"
            return key if key in table.BY_KEY else name.name
    return None


# ---------------------------------------------------------------- from the text (completion)

_TOKEN = re.compile(r'#[^\n]*|"(?:\\.|[^"\\\n])*"?|[A-Za-z_][A-Za-z0-9_]*|-\[|\]->|-->|[{}()\[\]=,]|\S')


@dataclass(frozen=True)
class Frame:
    opener: str  # "{", "(" or "["
    block: str | None  # option-table key, "filter" for a filter block, None when unknown
    head: tuple[str, ...]  # the words of the statement or call that opened it


@dataclass(frozen=True)
class Cursor:
    frames: tuple[Frame, ...]
    statement: tuple[str, ...]  # the words of the current top-level statement before the cursor
    line_words: tuple[str, ...]  # the tokens of the cursor's line before it
    prefix: str  # the partial word under the cursor
    since: tuple[str, ...] = ()  # the tokens since the last bracket or ',' on the cursor's line

    @property
    def top(self) -> Frame | None:
        return self.frames[-1] if self.frames else None


def scan(text: str, offset: int) -> Cursor:
    """The brackets open at `offset` and the words leading up to it."""
    before = text[:offset]
    prefix = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", before)
    word = prefix.group(0) if prefix else ""
    frames: list[Frame] = []
    statement: list[str] = []
    recent: list[str] = []
    for m in _TOKEN.finditer(before[: len(before) - len(word)]):
        tok = m.group(0)
        if tok.startswith("#"):
            continue
        line_start = before.rfind("\n", 0, m.start()) + 1
        if not frames and tok in TOP_KEYWORDS and not before[line_start:m.start()].strip():
            statement, recent = [], []
        if tok in "{([" and len(tok) == 1:
            frames.append(Frame(tok, _frame_block(tok, frames, statement, recent), tuple(recent)))
            recent = []
        elif tok in "})]" and len(tok) == 1:
            if frames:
                frames.pop()
            recent = [")"] if tok == ")" else []
        elif tok == ",":
            recent = []
        else:
            recent.append(tok)
        statement.append(tok)
    last_line = before[before.rfind("\n") + 1: len(before) - len(word)]
    line_words = tuple(t for t in _TOKEN.findall(last_line) if not t.startswith("#"))
    since: list[str] = []
    for tok in line_words:
        since = [] if tok in "{}()[]," and len(tok) == 1 else since + [tok]
    return Cursor(tuple(frames), tuple(statement), line_words, word, tuple(since))


def _frame_block(opener: str, frames: list[Frame], statement: list[str], recent: list[str]) -> str | None:
    if opener == "[":
        return None
    if opener == "(":
        func = recent[-1] if recent else ""
        if func in table.CALL_BLOCKS:
            return table.CALL_BLOCKS[func]
        if func in ir.FILTER_STEPS:
            return f"{func}()"
        if not frames and statement and statement[0] == "dataset":
            return "dataset"
        return None
    # "{"
    if not frames:
        kind = statement[0] if statement else ""
        if kind == "filter":
            return "filter"
        return decl_block(kind)
    if recent and recent[-1] in table.NESTED_BLOCKS:
        return table.NESTED_BLOCKS[recent[-1]]
    if frames[-1].block == "filter" and recent and recent[-1] == ")":
        return "difficulty buckets"
    if frames[-1].block == "filter" and recent and recent[-1] == "difficulty":
        return "difficulty buckets"
    return None
