"""The shape of one file: document symbols, folding ranges and semantic tokens.

Semantic tokens are the parser's own tokens as it read them (`grammar.parse_tokens`: comments
included; up to a syntax error, the tokens before it), classified with the
index: a declared name is a variable, a name before `=` a property, before `(` a function, in a
metapath a type or (between `-[` and `]->`) a relation.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleming_dsl.lsp.analysis import Analysis
from fleming_dsl.spec import ast
from fleming_dsl.spec.grammar import parse_tokens

TOKEN_TYPES = ("keyword", "variable", "property", "function", "string", "number", "comment",
               "operator", "type", "enumMember")
TOKEN_MODIFIERS = ("declaration",)


@dataclass(frozen=True)
class Symbol:
    name: str
    detail: str
    kind: str  # decl kind, "experiment", "cluster", "option", "block"
    span: object
    selection: object
    children: tuple["Symbol", ...] = ()


def _items(block: ast.Block | None) -> tuple[Symbol, ...]:
    out = []
    for item in block.items if block else ():
        if isinstance(item, ast.Option):
            out.append(Symbol(item.key.name, "", "option", item.span, item.key.span))
        elif isinstance(item, ast.Entry):
            out.append(Symbol(item.name.name, "", "block", item.span, item.name.span, _items(item.block)))
        elif isinstance(item, ast.SweepItem):
            out.append(Symbol(f"sweep {item.key.name}", "", "option", item.span, item.key.span))
    return tuple(out)


def symbols(module: ast.Module) -> list[Symbol]:
    out = []
    for st in module.statements:
        if isinstance(st, ast.Header):
            out.append(Symbol(st.name.value, "experiment", "experiment", st.span, st.name.span, _items(st.block)))
        elif isinstance(st, ast.ClusterDecl):
            out.append(Symbol("cluster", "", "cluster", st.span, st.span, _items(st.block)))
        elif isinstance(st, ast.Decl):
            detail = st.kind
            call = getattr(st, "source", None) or getattr(st, "method", None) or getattr(st, "function", None)
            if isinstance(call, ast.Call):
                detail += f" = {call.func.name}(...)"
            out.append(Symbol(st.name.name, detail, st.kind, st.span, st.name.span,
                              _items(getattr(st, "block", None))))
    return out


def folding(module: ast.Module, text: str) -> list[tuple[int, int, str]]:
    """(start line, end line, kind) 0-based: multi-line declarations and blocks, comment runs."""
    out = []

    def blocks(block: ast.Block | None):
        for item in block.items if block else ():
            if isinstance(item, ast.Entry) and item.block is not None and item.block.span.end_line > item.span.line:
                out.append((item.span.line - 1, item.block.span.end_line - 1, "region"))
                blocks(item.block)

    for st in module.statements:
        if st.span.end_line > st.span.line:
            out.append((st.span.line - 1, st.span.end_line - 1, "region"))
        blocks(getattr(st, "block", None))
    run = []
    for n, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("#"):
            run.append(n)
            continue
        if len(run) > 1:
            out.append((run[0], run[-1], "comment"))
        run = []
    if len(run) > 1:
        out.append((run[0], run[-1], "comment"))
    return sorted(out)


def semantic_tokens(analysis: Analysis | None, shown: str, text: str) -> list[int]:
    """The LSP's relative encoding: [dline, dcol, length, type, modifiers] per token."""
    names = {}
    if analysis is not None:
        for occ in analysis.occurrences:
            if occ.span.file == shown:
                names[(occ.span.line, occ.span.col)] = occ.role
    toks = parse_tokens(text)[0]
    data: list[int] = []
    prev_line, prev_col = 0, 0
    for i, tok in enumerate(toks):
        kind, mods = _classify(toks, i, names)
        if kind is None:
            continue
        for line_no, col, length in _pieces(tok):
            data += [line_no - prev_line, col - prev_col if line_no == prev_line else col, length,
                     TOKEN_TYPES.index(kind), mods]
            prev_line, prev_col = line_no, col
    return data


def _pieces(tok) -> list[tuple[int, int, int]]:
    """A token as (0-based line, col, length) pieces, one per line it spans."""
    lines = str(tok).split("\n")
    out = [(tok.line - 1, tok.column - 1, len(lines[0]))]
    out += [(tok.line - 1 + k, 0, len(part)) for k, part in enumerate(lines[1:], 1)]
    return [p for p in out if p[2] > 0]


def _classify(toks, i: int, names: dict) -> tuple[str | None, int]:
    tok = toks[i]
    value = str(tok)
    nxt = str(toks[i + 1]) if i + 1 < len(toks) else ""
    prev = str(toks[i - 1]) if i > 0 else ""
    if tok.type == "COMMENT":
        return "comment", 0
    if tok.type == "STRING":
        return "string", 0
    if tok.type in ("INT", "FLOAT", "QUANTITY"):
        return "number", 0
    if value[:1].isalpha() or value[:1] == "_":
        role = names.get((tok.line, tok.column))
        if role is not None:
            return "variable", 1 if role == "decl" else 0
        if tok.type != "NAME":  # the parser read it as a keyword (`model = teacher` is a NAME)
            return "keyword", 0
        if nxt == "=":
            return "property", 0
        if nxt == "(":
            return "function", 0
        if prev == "-[":
            return "enumMember", 0
        if nxt in ("-[", "-->") or prev in ("]->", "-->"):
            return "type", 0
        if prev == "sweep":
            return "property", 0
        return "enumMember", 0
    return "operator", 0

