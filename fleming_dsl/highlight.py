"""A Pygments lexer for `.flm` specs, so Sphinx, MkDocs and other Pygments users render them.

Registered through the `pygments.lexers` entry point (pyproject.toml) under the names `flm` and
`fleming`: a ```` ```flm ```` fence in Markdown highlights once fleming-dsl is installed. Its
token classes follow the TextMate grammar in editors/vscode/syntaxes/ (keywords, declared names,
calls, option keys, metapath relations, quantities); tests/unit/test_highlight.py checks that
every spec in specs/ lexes without an error token.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
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
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DECLARATIONS = ("model", "graph", "sample", "dataset", "prompt", "synthesize", "distill", "filter",
                 "reward", "stage")


class FlmLexer(RegexLexer):
    name = "Fleming spec"
    aliases = ["flm", "fleming"]
    filenames = ["*.flm"]
    mimetypes = ["text/x-flm"]
    url = "https://arxiv.org/abs/2509.15279"

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            (r"#.*?$", Comment.Single),
            (r"\b(" + "|".join(_DECLARATIONS) + r")(\s+)(" + _NAME + ")",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"\b(drop)(\s+)(" + _NAME + ")", bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (r"\b(as)(\s+)(" + _NAME + ")", bygroups(Keyword, Whitespace, Name.Class)),
            (r"\b(sweep)(\s+)(" + _NAME + r")(\s+)(in)\b",
             bygroups(Keyword, Whitespace, Name.Attribute, Whitespace, Keyword)),
            (words(("experiment", "include", "cluster", "evaluate"), suffix=r"\b"), Keyword.Declaration),
            (words(("from", "with", "using", "on", "extends", "in"), suffix=r"\b"), Keyword),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (r'"', String.Double, "string"),
            (r"(-\[)(\s*)(" + _NAME + r'|"[^"\n]*")(\s*)(\]->)',
             bygroups(Operator, Whitespace, Name.Tag, Whitespace, Operator)),
            (r"-->", Operator),
            (r"\d[\d_]*(\.\d+)?(KB|MB|GB|TB|s|m|h|d)(?![\w])", Number.Float),
            (r"-?\d[\d_]*\.\d[\d_]*([eE][+-]?\d+)?|-?\d[\d_]*[eE][+-]?\d+", Number.Float),
            (r"-?\d[\d_]*", Number.Integer),
            (r"(" + _NAME + r")(\s*)(?=\()", bygroups(Name.Function, Whitespace)),
            (r"(" + _NAME + r")(\s*)(?==(?!=))", bygroups(Name.Attribute, Whitespace)),
            (_NAME, Name),
            (r">=|<=|==|>|<|\.\.|[=*+:-]", Operator),
            (r"[{}()\[\],]", Punctuation),
        ],
        "string": [
            (r'\\["\\]', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r"\\", String.Double),  # any other backslash is kept as written (regexes)
            (r'"', String.Double, "#pop"),
            (r"\n", Text, "#pop"),  # an unclosed string ends at the line end, as in the grammar
        ],
    }
