"""What the check rules share: reading options and call arguments off the AST, declaration kinds.

Rules read the merged AST (`ast.Program`); a rule that needs resolved values (defaults filled in,
sweeps expanded) reads the lowered IR beside it through `Checked`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from fleming_dsl import ir
from fleming_dsl.spec import ast

MODEL, GRAPH, SAMPLE, DATASET, PROMPT = "model", "graph", "sample", "dataset", "prompt"
SYNTH, DISTILL, FILTER, REWARD, STAGE = "synthesize", "distill", "filter", "reward", "stage"

# What a data-producing reference may name (a stage's data, a filter's source, a miner's pool).
ITEM_SOURCES = (DATASET, SYNTH, DISTILL, FILTER)


@dataclass(frozen=True)
class Checked:
    """What a rule reads: the merged AST, and (for rules that run after lowering) the IR."""

    program: ast.Program
    experiment: ir.Experiment | None = None
    # what several rules derive from the program, computed once (see `references.refs_of`)
    memo: dict = field(default_factory=dict)

    @classmethod
    def of(cls, program: ast.Program, experiment: ir.Experiment | None = None) -> Checked:
        return cls(program, experiment)

    @property
    def by_name(self) -> dict[str, ast.Decl]:
        """The program's symbol table (declared name -> ast.Decl), built once per loaded spec."""
        return self.program.by_name

    @functools.cached_property
    def declarations(self) -> dict[str, ir.Decl]:
        """The IR's declarations by name (swept stages by their point's name), once per check."""
        assert self.experiment is not None, "a rule that reads the IR is marked after_lowering"
        return self.experiment.declarations()

    def decl_at(self, span: ir.Span | None) -> ast.Decl | None:
        """The AST declaration an IR node came from (a swept stage shares its declaration's span)."""
        return self._by_span.get(span) if span is not None else None

    @functools.cached_property
    def _by_span(self) -> dict[ir.Span, ast.Decl]:
        # an index, not a scan: rules ask once per sweep point (2,000 asks of 100 declarations)
        index: dict[ir.Span, ast.Decl] = {}
        for decl in self.program.decls:
            index.setdefault(decl.span, decl)
        return index


def call_kw(call: ast.Call | None, key: str) -> ast.Value | None:
    if call is None:
        return None
    return next((kw.value for kw in call.kwargs if kw.key.name == key), None)


def kw_name(call: ast.Call | None, key: str) -> ast.Name | None:
    return next((kw.key for kw in (call.kwargs if call else ()) if kw.key.name == key), None)


def names_in(value: ast.Value | None) -> list[ast.Name]:
    if isinstance(value, ast.Name):
        return [value]
    if isinstance(value, ast.ListV):
        return [v for v in value.items if isinstance(v, ast.Name)]
    return []


def option(block: ast.Block | None, key: str) -> ast.Value | None:
    """The value of `key = ...` in a block (the last one written wins)."""
    found = block.last_option(key) if block is not None else None
    return found.value if found is not None else None


def option_key(block: ast.Block | None, key: str) -> ast.Name | None:
    found = block.last_option(key) if block is not None else None
    return found.key if found is not None else None


def entries(block: ast.Block | None, name: str) -> list[ast.Entry]:
    """The `name(...)` / `name { ... }` entries of a block (filter steps, sub-blocks)."""
    return [i for i in (block.items if block else ()) if isinstance(i, ast.Entry) and i.name.name == name]


def a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def kinds_phrase(kinds: tuple[str, ...]) -> str:
    return "a " + " or a ".join(kinds) if len(kinds) <= 2 else "a " + ", ".join(kinds[:-1]) + \
        f" or {kinds[-1]}"
