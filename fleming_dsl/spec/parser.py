"""Text -> AST: `parse_module`, the front end's one entry to parsing (lark's LALR parser of
grammars/flm.lark, `spec.grammar`, which builds the AST as it parses)."""

from __future__ import annotations

import functools

from fleming_dsl.errors import SpecError
from fleming_dsl.spec import ast
from fleming_dsl.spec.text import too_deep


@functools.lru_cache(maxsize=64)
def parse_module(text: str, file: str) -> ast.Module:
    """Parse one file's text; raises SpecError (one located diagnostic) on a syntax error.

    Cached by (text, file), i.e. by content: the AST is immutable, and a spec that extends a
    large base re-parses only what changed (the language server re-checks on every keystroke)."""
    return parse_with_tokens(text, file, keep_tokens=False)[0]


def parse_with_tokens(text: str, file: str, keep_tokens: bool = True) -> tuple[ast.Module, list]:
    """The module and the tokens the parser read, comments included, in order (what the
    formatter lays out); SpecError on a syntax error."""
    deep = too_deep(text, file)
    if deep is not None:
        raise SpecError([deep], {file: text})
    from fleming_dsl.spec import grammar  # lark: only once there is text to parse

    tokens: list | None = [] if keep_tokens else None
    statements = grammar.parse_statements(text, file, tokens)
    return ast.Module(file=file, statements=statements), sorted(tokens or (), key=grammar.position)


__all__ = ["parse_module", "parse_with_tokens"]
