"""`fleming fmt`: the canonical layout of a .flm file.

Canonical means: one statement per line, one block item per line, 2-space indent, `=` aligned
over runs of consecutive top-level declarations, single spaces around `=` in blocks and around
operators, `, ` in lists and arguments, at most one blank line kept where the
source had blank lines, and every comment kept (own-line comments before the item that follows
them, trailing comments at the end of the line they were on). Literals are written exactly as
in the source (`20_000` stays `20_000`). Formatting is idempotent and changes no meaning: the
formatted spec lowers to the same IR.

The formatter reads what the parser reads: the AST (statements, blocks, items and where each
was written) and the parser's tokens, comments included (`spec.grammar.parse_tokens`), so every
value is written with the tokens it was written with, spaced canonically.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from lark import Token

from fleming_dsl.spec import ast
from fleming_dsl.spec.parser import parse_with_tokens

INDENT = "  "


@dataclass
class _Line:
    depth: int
    text: str
    src: int  # the source line this output line starts at
    col: int = 1  # ... and column
    closing: bool = False  # a lone `}`


# ---------------------------------------------------------------- tokens -> text

_TIGHT_BEFORE = frozenset((",", ")", "]", "]->", "..", ":"))  # no space before these
_TIGHT_AFTER = frozenset(("(", "[", "-[", "..", ":", "-"))  # ... nor after these ('-' is a sign)


def _join(tokens: list[Token]) -> str:
    """Tokens as canonical text: single spaces, none inside brackets, `, ` between items, a call's
    `(` and an index's `[` against their name, a trailing comma dropped."""
    out: list[str] = []
    prev: Token | None = None
    for i, tok in enumerate(tokens):
        text = str(tok)
        if text == "," and i + 1 < len(tokens) and str(tokens[i + 1]) in (")", "]"):
            continue
        if prev is not None and not (text in _TIGHT_BEFORE or str(prev) in _TIGHT_AFTER
                                     or (text in ("(", "[") and prev.type == "NAME")):
            out.append(" ")
        out.append(text)
        prev = tok
    return "".join(out)


class _Source:
    """The parser's code tokens in order, cut by position."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.keys = [(t.line, t.column) for t in tokens]

    def between(self, start: tuple[int, int], end: tuple[int, int]) -> str:
        """The tokens from `start` up to (not including) `end`, as canonical text."""
        lo = bisect.bisect_left(self.keys, start)
        hi = bisect.bisect_left(self.keys, end)
        return _join(self.tokens[lo:hi])


def _start(span) -> tuple[int, int]:
    return span.line, span.col


def _end(span) -> tuple[int, int]:
    return span.end_line, span.end_col


# ---------------------------------------------------------------- statements and blocks


def _block(src: _Source, head: str, block: ast.Block | None, depth: int, at) -> list[_Line]:
    if block is None:
        return [_Line(depth, head, at.line, at.col)]
    if not block.items:
        return [_Line(depth, head + " {}", at.line, at.col)]
    lines = [_Line(depth, head + " {", at.line, at.col)]
    for item in block.items:
        lines += _item(src, item, depth + 1)
    lines.append(_Line(depth, "}", block.span.end_line, block.span.end_col - 1, closing=True))
    return lines


def _with_block(src: _Source, node, block: ast.Block | None, depth: int) -> list[_Line]:
    """A statement or entry: its head as written up to its block, then the block."""
    head = src.between(_start(node.span), _start(block.span) if block is not None else _end(node.span))
    return _block(src, head, block, depth, node.span)


def _item(src: _Source, item: ast.Item, depth: int) -> list[_Line]:
    if isinstance(item, ast.Entry):
        return _with_block(src, item, item.block, depth)
    return [_Line(depth, src.between(_start(item.span), _end(item.span)), item.span.line, item.span.col)]


def _statement(src: _Source, st: ast.Statement) -> list[_Line]:
    return _with_block(src, st, getattr(st, "block", None), 0)


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
    module, tokens = parse_with_tokens(text, file)
    comments = [t for t in tokens if t.type == "COMMENT"]
    src = _Source([t for t in tokens if t.type != "COMMENT"])
    lines = [line for st in module.statements for line in _statement(src, st)]
    return _weave(lines, comments, text.splitlines())
