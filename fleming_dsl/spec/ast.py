"""The syntax tree of a .flm file: small frozen dataclasses that mirror the text, each with a span.

Names here are unresolved (a `Name` is just what was written); `checks.py` judges them and
`lower.py` turns a checked tree into the IR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Union

from fleming_dsl.ir import Span

# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Quantity:
    """A number with a unit: a duration (s, m, h, d) or a size (KB, MB, GB, TB)."""

    amount: float
    unit: str
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True)
class KwArg:
    key: Name
    value: "Value"


@dataclass(frozen=True)
class Call:
    func: Name
    args: tuple["Value", ...]
    kwargs: tuple[KwArg, ...]
    span: Span


@dataclass(frozen=True)
class Index:
    """`clean[easy, moderate]`: a dataset restricted to difficulty buckets."""

    base: Name
    keys: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class ListV:
    items: tuple["Value", ...]
    span: Span


@dataclass(frozen=True)
class Range:
    lo: int
    hi: int
    span: Span


@dataclass(frozen=True)
class Ratio:
    left: float
    right: float
    span: Span


@dataclass(frozen=True)
class Compare:
    """`pass >= 0.75`"""

    subject: Name
    op: str
    number: float
    span: Span


@dataclass(frozen=True)
class Term:
    weight: float
    reward: Name


@dataclass(frozen=True)
class Sum:
    """`1.0 * correct + 0.2 * form` (a bare name weighs 1.0)."""

    terms: tuple[Term, ...]
    span: Span


@dataclass(frozen=True)
class PathNode:
    type: str | None  # None = any type (`*`)
    span: Span


@dataclass(frozen=True)
class PathEdge:
    relation: str | None  # None = any relation (`-->`)
    span: Span


@dataclass(frozen=True)
class Metapath:
    nodes: tuple[PathNode, ...]
    edges: tuple[PathEdge, ...]
    span: Span


Value = Union[Str, Num, Quantity, Bool, Name, Call, Index, ListV, Range, Ratio, Compare, Sum,
              Metapath]

# ---------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Option:
    key: Name
    value: Value
    span: Span


@dataclass(frozen=True)
class Entry:
    """A block item that is not `key = value`: a filter step or a nested block."""

    name: Name
    call: Call | None  # the `(...)` part, if written
    block: "Block | None"
    span: Span


@dataclass(frozen=True)
class SweepItem:
    key: Name
    values: Value
    span: Span


Item = Union[Option, Entry, SweepItem]


@dataclass(frozen=True)
class Block:
    items: tuple[Item, ...]
    span: Span

    def options(self) -> tuple[Option, ...]:
        return self._options

    def last_option(self, key: str) -> Option | None:
        """The option written last with `key` (None when there is none)."""
        return self._last_options.get(key)

    # Computed once per block: checks and lowering read a block's options dozens of times,
    # which was a third of checking a spec of 100,000 samples. (A cached_property writes the
    # instance dict directly, so the dataclass stays frozen; equality still compares fields.)
    @cached_property
    def _options(self) -> tuple[Option, ...]:
        return tuple(i for i in self.items if isinstance(i, Option))

    @cached_property
    def _last_options(self) -> dict[str, Option]:
        return {o.key.name: o for o in self._options}


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Header:
    name: Str
    extends: Str | None
    block: Block | None
    span: Span


@dataclass(frozen=True)
class Include:
    path: Str
    span: Span


@dataclass(frozen=True)
class Drop:
    target: Name
    span: Span


@dataclass(frozen=True)
class Decl:
    """A named declaration; `kind` is the keyword that introduced it."""

    kind: str
    name: Name
    span: Span


@dataclass(frozen=True)
class ModelDecl(Decl):
    source: Call
    block: Block | None

    def backend(self) -> Value | None:
        """The written `backend = ...` (None when there is none)."""
        found = self.block.last_option("backend") if self.block is not None else None
        return found.value if found is not None else None

    def has_backend(self) -> bool:
        """Whether it generates text as a teacher: a template() or openai() model, or a backend."""
        return self.source.func.name in ("template", "openai") or self.backend() is not None


@dataclass(frozen=True)
class GraphDecl(Decl):
    source: Call
    block: Block | None


@dataclass(frozen=True)
class SampleDecl(Decl):
    graph: Name
    block: Block


@dataclass(frozen=True)
class DatasetDecl(Decl):
    source: Call
    block: Block | None


@dataclass(frozen=True)
class PromptDecl(Decl):
    source: Call


@dataclass(frozen=True)
class SynthesizeDecl(Decl):
    source: Name
    teacher: Name
    prompt: Name
    block: Block | None


@dataclass(frozen=True)
class DistillDecl(Decl):
    sources: tuple[Name, ...]
    teacher: Name
    prompt: Name
    block: Block | None


@dataclass(frozen=True)
class FilterDecl(Decl):
    source: Name
    block: Block


@dataclass(frozen=True)
class RewardDecl(Decl):
    function: Call


@dataclass(frozen=True)
class StageDecl(Decl):
    method: Call
    block: Block | None


@dataclass(frozen=True)
class EvaluateDecl(Decl):
    targets: tuple[Name, ...]
    benchmarks: tuple[Name, ...]
    block: Block | None
    named: bool  # False when the name was given by default (`eval`, `eval_2`, ...)


def evaluation(name: Name | None, span: Span, targets: tuple[Name, ...],
               benchmarks: tuple[Name, ...], block: Block | None, unnamed: int) -> EvaluateDecl:
    """An `evaluate` statement. Without `as NAME` it is the `unnamed`-th unnamed one of its
    file, called eval, eval_2, eval_3, ..."""
    if name is not None:
        return EvaluateDecl("evaluate", name, span, targets, benchmarks, block, True)
    default = "eval" if unnamed == 1 else f"eval_{unnamed}"
    return EvaluateDecl("evaluate", Name(default, span), span, targets, benchmarks, block, False)


@dataclass(frozen=True)
class ClusterDecl:
    block: Block
    span: Span


Statement = Union[Header, Include, Drop, Decl, ClusterDecl]


@dataclass(frozen=True)
class Module:
    """One parsed file."""

    file: str  # display path (as used in spans)
    statements: tuple[Statement, ...]

    @property
    def header(self) -> Header | None:
        return next((s for s in self.statements if isinstance(s, Header)), None)


@dataclass(frozen=True)
class Program:
    """A spec with its includes and base merged: what checks and lowering work on."""

    spec: str  # display path of the top-level spec
    name: Str
    header: tuple[Option, ...]  # experiment options, base first, later ones override
    decls: tuple[Decl, ...]
    cluster: tuple[Option, ...]  # cluster options, base first, later ones override
    dirs: dict  # display path of each file -> its directory (a pathlib.Path), for relative paths
    sources: dict  # display path -> text, for rendering diagnostics
    # name -> the `drop NAME` that removed a base's declaration: an undefined name says so
    dropped: dict = field(default_factory=dict)

    @cached_property
    def by_name(self) -> dict[str, Decl]:
        """The symbol table: each declared name -> its declaration (the first one, where a name
        is declared twice: `duplicate_names` reports the others). Built once per loaded spec and
        read by the checks, lowering and the language server, none of which builds its own."""
        table: dict[str, Decl] = {}
        for decl in self.decls:
            table.setdefault(decl.name.name, decl)
        return table
