"""`fleming fmt`: the canonical layout of a .flm file.

Canonical means: one statement per line, one block item per line, 2-space indent, `=` aligned
over runs of consecutive top-level declarations, single spaces around `=` in blocks and around
operators, `, ` in lists and arguments, at most one blank line kept where the
source had blank lines, and every comment kept (own-line comments before the item that follows
them, trailing comments at the end of the line they were on). Literals are written exactly as
in the source (`20_000` stays `20_000`). Formatting is idempotent and changes no meaning: the
formatted spec lowers to the same IR.

The formatter works on lark's tree (not the AST) because it needs the tokens as written.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from fleming_dsl.spec.grammar import grammar_text
from fleming_dsl.spec.parser import parse_module

INDENT = "  "


@dataclass
class _Line:
    depth: int
    text: str
    src: int  # the source line this output line starts at
    col: int = 1  # ... and column
    closing: bool = False  # a lone `}`


class _CommentSink:
    """lark calls this for every COMMENT token (comments are otherwise ignored)."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []

    def __call__(self, tok: Token) -> Token:
        self.tokens.append(tok)
        return tok


@functools.lru_cache(maxsize=1)
def _parser() -> tuple[Lark, _CommentSink]:
    sink = _CommentSink()
    lark = Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                lexer_callbacks={"COMMENT": sink})
    return lark, sink


# ---------------------------------------------------------------- values


def _value(node) -> str:
    if isinstance(node, Token):
        return str(node)
    kids = [c for c in node.children if c is not None]
    kind = node.data
    if kind in ("string", "int", "float", "quantity", "name", "node_name", "node_str"):
        return str(kids[0])
    if kind in ("neg_int", "neg_float"):
        return "-" + str(kids[0])
    if kind in ("true", "false"):
        return kind
    if kind == "node_any":
        return "*"
    if kind == "call":
        return str(kids[0]) + _args(kids[1])
    if kind == "kwarg":
        return f"{kids[0]} = {_value(kids[1])}"
    if kind == "index":
        return f"{kids[0]}[" + ", ".join(map(str, kids[1:])) + "]"
    if kind == "list":
        return "[" + ", ".join(_value(k) for k in kids) + "]"
    if kind == "range":
        return f"{kids[0]}..{kids[1]}"
    if kind == "ratio":
        return f"{_value(kids[0])}:{_value(kids[1])}"
    if kind == "compare":
        return f"{kids[0]} {kids[1]} {_value(kids[2])}"
    if kind == "weighted":
        return f"{_value(kids[0])} * {kids[1]}"
    if kind == "term":
        return _value(kids[0])
    if kind == "sum":
        return " + ".join(_value(k) for k in kids)
    if kind == "metapath":
        return " ".join(_value(k) for k in kids)
    if kind == "edge_rel":
        return f"-[{kids[0]}]->"
    if kind == "edge_any":
        return "-->"
    raise ValueError(f"fmt: no layout for {kind}")  # a grammar rule added without a layout


def _args(node: Tree) -> str:
    return "(" + ", ".join(_value(c) for c in node.children if c is not None) + ")"


def _refs(node: Tree) -> str:
    names = [str(c) for c in node.children if c is not None]
    return names[0] if node.data == "ref_one" else "[" + ", ".join(names) + "]"


# ---------------------------------------------------------------- statements and blocks


def _block(head: str, block: Tree | None, depth: int, meta) -> list[_Line]:
    if block is None:
        return [_Line(depth, head, meta.line, meta.column)]
    items = [c for c in block.children if c is not None]
    if not items:
        return [_Line(depth, head + " {}", meta.line, meta.column)]
    lines = [_Line(depth, head + " {", meta.line, meta.column)]
    for item in items:
        lines += _item(item, depth + 1)
    lines.append(_Line(depth, "}", block.meta.end_line, block.meta.end_column - 1, closing=True))
    return lines


def _item(item: Tree, depth: int) -> list[_Line]:
    kids = item.children
    if item.data == "option":
        return [_Line(depth, f"{kids[0]} = {_value(kids[1])}", item.meta.line, item.meta.column)]
    if item.data == "sweep":
        return [_Line(depth, f"sweep {kids[0]} in {_value(kids[1])}", item.meta.line, item.meta.column)]
    head = str(kids[0]) + (_args(kids[1]) if kids[1] is not None else "")
    return _block(head, kids[2], depth, item.meta)


def _statement(st: Tree) -> list[_Line]:
    k, line = st.children, st.meta
    kind = st.data
    if kind == "experiment":
        head = f"experiment {k[0]}" + (f" extends {k[1]}" if k[1] is not None else "")
        return _block(head, k[2], 0, line)
    if kind == "include":
        return [_Line(0, f"include {k[0]}", line.line)]
    if kind == "drop":
        return [_Line(0, f"drop {k[0]}", line.line)]
    if kind in ("model", "graph", "dataset", "stage"):
        return _block(f"{kind} {k[0]} = {_value(k[1])}", k[2], 0, line)
    if kind in ("prompt", "reward"):
        return [_Line(0, f"{kind} {k[0]} = {_value(k[1])}", line.line)]
    if kind in ("sample", "filter"):
        return _block(f"{kind} {k[0]} from {k[1]}", k[2], 0, line)
    if kind == "synthesize":
        return _block(f"synthesize {k[0]} from {k[1]} with {k[2]} using {k[3]}", k[4], 0, line)
    if kind == "distill":
        return _block(f"distill {k[0]} from {_refs(k[1])} with {k[2]} using {k[3]}", k[4], 0, line)
    if kind == "evaluate":
        head = f"evaluate {_refs(k[0])} on {_refs(k[1])}" + (f" as {k[2]}" if k[2] is not None else "")
        return _block(head, k[3], 0, line)
    if kind == "cluster":
        return _block("cluster", k[0], 0, line)
    raise ValueError(f"fmt: no layout for {kind}")


# ---------------------------------------------------------------- comments and blank lines


def _weave(lines: list[_Line], comments: list[Token], source_lines: list[str]) -> str:
    def blank_before(src: int) -> bool:
        return src >= 2 and not source_lines[src - 2].strip()

    trailing: dict[int, str] = {}  # output line index -> its trailing comment
    leading: dict[int, list[Token]] = {}  # output line index -> own-line comments before it
    tail: list[Token] = []
    moved: set[int] = set()  # ids of comments that lost their line: never a blank line before them
    for c in comments:
        code_before = source_lines[c.line - 1][: c.column - 1].strip()
        idx = None
        if code_before:
            # a trailing comment follows the last piece of code written before it
            idx = max((i for i, l in enumerate(lines) if (l.src, l.col) < (c.line, c.column)),
                      default=None)
            if idx is not None and idx not in trailing:
                trailing[idx] = str(c).rstrip()
                continue
            if idx is not None:  # a second comment for one output line goes on its own line
                moved.add(id(c))
                idx += 1
                idx = idx if idx < len(lines) else None
        else:
            idx = next((i for i, l in enumerate(lines) if l.src > c.line), None)
        (leading.setdefault(idx, []) if idx is not None else tail).append(c)

    out: list[str] = []
    seen_src: set[int] = set()

    def emit_comment(c: Token, depth: int) -> None:
        if (out and id(c) not in moved and blank_before(c.line) and out[-1] != ""
                and not out[-1].endswith("{")):
            out.append("")
        out.append(INDENT * depth + str(c).rstrip())

    for i, line in enumerate(lines):
        depth = line.depth + 1 if line.closing else line.depth
        for c in leading.get(i, []):
            emit_comment(c, depth)
        first_of_src = line.src not in seen_src
        seen_src.add(line.src)
        if (first_of_src and not line.closing and out and out[-1] != "" and blank_before(line.src)
                and not out[-1].endswith("{")):
            out.append("")
        text = INDENT * line.depth + line.text
        if i in trailing:
            text += "  " + trailing[i]
        out.append(text)
    for c in tail:
        emit_comment(c, 0)
    return "\n".join(_align(out)).rstrip("\n") + "\n" if out else ""


_ASSIGNMENT = re.compile(r"^()([A-Za-z_][A-Za-z0-9_ ]*?) = ")  # top-level declarations only


def _align(out: list[str]) -> list[str]:
    """Align `=` over runs of consecutive top-level declarations (`model base    = ...`).

    Blank lines, comment lines and any other line end a run. Block options are not aligned: one
    long option name would shift every line of a block, and every diff with it."""
    aligned = list(out)
    i = 0
    while i < len(out):
        first = _ASSIGNMENT.match(out[i])
        j = i + 1
        while first and j < len(out):
            m = _ASSIGNMENT.match(out[j])
            if not m or m.group(1) != first.group(1):
                break
            j += 1
        if first and j - i > 1:
            width = max(len(_ASSIGNMENT.match(out[k]).group(2)) for k in range(i, j))
            for k in range(i, j):
                m = _ASSIGNMENT.match(out[k])
                aligned[k] = m.group(1) + m.group(2).ljust(width) + out[k][len(m.group(1)) + len(m.group(2)):]
        i = j
    return aligned


def format_source(text: str, file: str = "<input>") -> str:
    """`text` in the canonical layout; SpecError (located) when it does not parse."""
    lark, sink = _parser()
    sink.tokens = []
    try:
        tree = lark.parse(text)
    except UnexpectedInput:
        # report it through the shared parser, whose states the table of known mistakes uses
        parse_module(text, file)
        raise  # unreachable: both parsers share the grammar
    comments = sorted(sink.tokens, key=lambda t: (t.line, t.column))
    lines = [line for st in tree.children for line in _statement(st)]
    return _weave(lines, comments, text.splitlines())
