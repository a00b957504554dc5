"""Text -> AST: `parse_module`, the front end's one entry to parsing.

Valid specs are read by the hand-written parser (`spec.descent`); from the statement before
the first one it does not accept, lark's parser of the grammar (`spec.grammar`) reads the rest
and reports the located syntax error (or reads what only its contextual lexer reads). lark is
imported only then, so checking a valid spec never loads it."""

from __future__ import annotations

import functools

from fleming_dsl.errors import SpecError
from fleming_dsl.spec import ast, descent
from fleming_dsl.spec.text import too_deep


@functools.lru_cache(maxsize=64)
def parse_module(text: str, file: str) -> ast.Module:
    """Parse one file's text; raises SpecError (one located diagnostic) on a syntax error.

    Cached by (text, file), i.e. by content: the AST is immutable, and a spec that extends a
    large base re-parses only what changed (the language server re-checks on every keystroke)."""
    deep = too_deep(text, file)
    if deep is not None:
        raise SpecError([deep], {file: text})
    statements, rest = descent.parse(text, file)
    if rest is not None:
        from fleming_dsl.spec import grammar

        unnamed = sum(isinstance(s, ast.EvaluateDecl) and not s.named for s in statements)
        statements += grammar.parse_statements(text, file, rest, unnamed)
    return ast.Module(file=file, statements=statements)


__all__ = ["parse_module"]
