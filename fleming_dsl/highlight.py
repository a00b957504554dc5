"""A Pygments lexer for `.flm` specs, so Sphinx, MkDocs and other Pygments users render them.

Registered through the `pygments.lexers` entry point (pyproject.toml) under the names `flm` and
`fleming`: a ```` ```flm ```` fence in Markdown highlights once fleming-dsl is installed. It
colours the tokens the spec parser itself reads (`grammar.parse_tokens`), so a word is a keyword
exactly where the parser takes it for one; text after a syntax error (a fragment of a spec in
the docs) is left plain. tests/unit/test_highlight.py checks that every spec in specs/ lexes
without an error token.
"""

from __future__ import annotations

from pygments.lexer import Lexer
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
    _TokenType,
)

_PLAIN = {"COMMENT": Comment.Single, "STRING": String.Double, "INT": Number.Integer,
          "FLOAT": Number.Float, "QUANTITY": Number.Float, "TRUE": Keyword.Constant,
          "FALSE": Keyword.Constant}
_PUNCTUATION = frozenset("{}()[],")


def _kind(tokens: list, i: int, statement_words: frozenset[str]) -> _TokenType:
    tok = tokens[i]
    if tok.type in _PLAIN:
        return _PLAIN[tok.type]
    text = str(tok)
    if tok.type != "NAME":
        if text in statement_words:
            return Keyword.Declaration
        if text[:1].isalpha():
            return Keyword
        return Punctuation if text in _PUNCTUATION else Operator
    prev = tokens[i - 1] if i > 0 else None
    nxt = str(tokens[i + 1]) if i + 1 < len(tokens) else ""
    if prev is not None and (str(prev) in statement_words or prev.type == "AS") and prev.type != "NAME":
        return Name.Variable if prev.type == "DROP" else Name.Class
    if nxt == "(":
        return Name.Function
    if nxt == "=" or (prev is not None and prev.type == "SWEEP"):
        return Name.Attribute
    if prev is not None and str(prev) == "-[":
        return Name.Tag
    return Name


class FlmLexer(Lexer):
    name = "Fleming spec"
    aliases = ["flm", "fleming"]
    filenames = ["*.flm"]
    mimetypes = ["text/x-flm"]
    url = "https://arxiv.org/abs/2509.15279"

    def get_tokens_unprocessed(self, text: str):
        from fleming_dsl.spec.grammar import parse_tokens, statement_keywords

        tokens, _ = parse_tokens(text)
        words = statement_keywords()
        pos = 0
        for i, tok in enumerate(tokens):
            if tok.start_pos > pos:
                yield pos, Whitespace, text[pos:tok.start_pos]
            yield tok.start_pos, _kind(tokens, i, words), str(tok)
            pos = tok.end_pos
        if pos < len(text):  # whitespace, or what follows a syntax error
            rest = text[pos:]
            yield pos, Whitespace if not rest.strip() else Text, rest
