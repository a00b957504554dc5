"""The Pygments lexer: registered through the `pygments.lexers` entry point, and every spec in
specs/ (and every example of the language reference) lexes without an error token."""

from __future__ import annotations

import importlib
import re
import tomllib
from importlib import metadata

import pytest
from paths import REPO
from pygments.token import Error, Keyword, Name, Number, Operator

SPECS = sorted((REPO / "specs").glob("*.flm"))
EXAMPLES = re.findall(r"^```flm\n(.*?)^```$", (REPO / "docs" / "language.md").read_text(), re.S | re.M)


def lexer_class():
    """The class the pyproject entry point names (the installed metadata may be older)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["pygments.lexers"]["flm"]
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def test_the_entry_point_names_the_lexer():
    from fleming_dsl.highlight import FlmLexer

    assert lexer_class() is FlmLexer
    installed = [ep for ep in metadata.entry_points(group="pygments.lexers") if ep.name == "flm"]
    if installed:  # an install from this checkout: pygments finds it by name
        from pygments.lexers import get_lexer_by_name

        assert type(get_lexer_by_name("flm")).__name__ == "FlmLexer"


@pytest.mark.parametrize("text", [p.read_text() for p in SPECS] + EXAMPLES,
                         ids=[p.name for p in SPECS] + [f"language.md#{i}" for i in range(len(EXAMPLES))])
def test_specs_lex_without_error_tokens(text: str):
    tokens = list(lexer_class()().get_tokens(text))
    assert [v for t, v in tokens if t in Error] == []
    assert "".join(v for _, v in tokens) == (text if text.endswith("\n") else text + "\n")


def test_token_classes():
    text = ('stage rl1 = grpo(cold_start, clean[easy]) {\n  lr = 1e-6  time = 48h\n'
            '  path = disease -[drug_protein]-> *\n}\n')
    tokens = [(t, v) for t, v in lexer_class()().get_tokens(text) if v.strip()]
    assert tokens[:4] == [(Keyword.Declaration, "stage"), (Name.Class, "rl1"), (Operator, "="),
                          (Name.Function, "grpo")]
    assert (Name.Attribute, "lr") in tokens and (Number.Float, "1e-6") in tokens
    assert (Number.Float, "48h") in tokens and (Name.Tag, "drug_protein") in tokens
