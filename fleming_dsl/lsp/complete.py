"""Completion: declaration keywords, the options of the block under the cursor (with type and
default), declared names of the kind expected there, and a graph's relations and node types
inside a metapath."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fleming_dsl import ir
from fleming_dsl.check.common import ITEM_SOURCES
from fleming_dsl.check.graph_vocab import VocabularyError, vocabulary
from fleming_dsl.lower import options as table
from fleming_dsl.lower.declarations import reward_plugins  # entry points
from fleming_dsl.lsp.analysis import Analysis
from fleming_dsl.lsp.context import DECL_KEYWORDS, KIND_SOURCES, Cursor, method_options
from fleming_dsl.lsp.hover import function_entry
from fleming_dsl.spec import ast


@dataclass(frozen=True)
class Item:
    label: str
    kind: str  # "keyword", "option", "name", "relation", "type", "value"
    detail: str = ""
    doc: str = ""
    insert: str | None = None  # a snippet (LSP snippet syntax) when set


_KEYWORD_SNIPPETS = {
    "experiment": 'experiment "${1:name}" {\n  seed = ${2:0}\n}',
    "include": 'include "${1:file.flm}"',
    "drop": "drop ${1:name}",
    "cluster": 'cluster {\n  account = "${1}"\n}',
    "model": 'model ${1:name} = hf("${2:org/model}")',
    "graph": 'graph ${1:name} = primekg("${2:kg.csv}")',
    "sample": "sample ${1:name} from ${2:graph} {\n  path = ${3}\n  count = ${4:1000}\n}",
    "dataset": 'dataset ${1:name} = medqa("${2:file.jsonl}")',
    "prompt": 'prompt ${1:name} = template("${2:prompt.j2}")',
    "synthesize": "synthesize ${1:name} from ${2:sample} with ${3:teacher} using ${4:prompt}",
    "distill": "distill ${1:name} from ${2:source} with ${3:teacher} using ${4:prompt}",
    "filter": "filter ${1:name} from ${2:source} {\n  format\n}",
    "reward": 'reward ${1:name} = choice_match(tag = "${2:answer}")',
    "stage": "stage ${1:name} = ${2|sft,grpo|}(${3:init}, ${4:data}) {\n  $0\n}",
    "evaluate": "evaluate ${1:targets} on [${2:benchmarks}]",
}

# (statement keyword, the word before the cursor) -> kinds of declaration expected there
_AFTER_WORD = {
    ("sample", "from"): ("graph",), ("synthesize", "from"): ("sample",),
    ("distill", "from"): ITEM_SOURCES, ("filter", "from"): ITEM_SOURCES,
    ("synthesize", "with"): ("model",), ("distill", "with"): ("model",),
    ("synthesize", "using"): ("prompt",), ("distill", "using"): ("prompt",),
    ("evaluate", "evaluate"): ("model", "stage"), ("evaluate", "on"): ("dataset",),
    ("drop", "drop"): ("model", "graph", "sample", "dataset", "prompt", "synthesize", "distill",
                       "filter", "reward", "stage", "evaluate"),
}
# option = NAME -> kinds expected
_OPTION_KINDS = {"rewards": ("reward",), "model": ("model", "stage"), "prompt": ("prompt",),
                 "against": ("dataset",)}


def complete(analysis: Analysis | None, cursor: Cursor) -> list[Item]:
    top = cursor.top
    words = cursor.line_words
    statement = cursor.statement
    kind = statement[0] if statement else ""
    if top is None:
        if len(statement) >= 1 and statement[-1] in ("from", "with", "using", "on", "evaluate", "drop"):
            return _names(analysis, _AFTER_WORD.get((kind, statement[-1]), ()))
        if statement[-1:] == ("=",) and kind in KIND_SOURCES:  # `reward form = `: its functions
            return _functions(KIND_SOURCES[kind])
        return [Item(k, "keyword", "declaration", insert=_KEYWORD_SNIPPETS.get(k)) for k in _KEYWORD_SNIPPETS]
    if top.opener == "[":
        return _list_names(analysis, cursor)
    key = words[words.index("=") - 1] if "=" in words[1:] else None
    if key == "path" and top.block == "sample":
        return _metapath(analysis, cursor)
    if "=" in cursor.since[1:]:  # the value of `key = ...`, however much of it is written
        return _values(analysis, cursor)
    if top.opener == "(" and top.head and top.head[-1] in ("sft", "grpo"):
        return _names(analysis, ("model", "stage") if not _after_comma(cursor) else ITEM_SOURCES)
    if top.opener == "(" and top.head and top.head[-1] == "mine_hard" and not _after_comma(cursor):
        return _names(analysis, ITEM_SOURCES)
    items = []
    if top.block == "filter":
        items += [Item(s, "keyword", "filter step", table.block(f"{s}()").title if table.block(f"{s}()") else "")
                  for s in ir.FILTER_STEPS]
        items.append(Item("resources", "keyword", "resources { ... }"))
        return items
    block = table.block(top.block) if top.block else None
    if block is not None:
        hidden = _other_methods_options(statement) if block.key == "stage" else frozenset()
        for opt in block.options:
            if opt.name in hidden:
                continue
            detail = opt.type + (f" = {opt.default_text()}" if opt.default_text() else "")
            items.append(Item(opt.name, "option", detail, opt.meaning, insert=f"{opt.name} = $0"
                              if top.opener == "{" else f"{opt.name} = $0"))
    if top.opener == "{" and top.block in ("stage", "sample", "synthesize", "distill", "evaluate"):
        items.append(Item("resources", "keyword", "resources { ... }", insert="resources {\n  $0\n}"))
    if top.block == "stage":
        items.append(Item("lora", "keyword", "lora { ... }", insert="lora {\n  $0\n}"))
        items.append(Item("sweep", "keyword", "sweep NAME in [values]", insert="sweep ${1:lr} in [$0]"))
    return items


def _after_comma(cursor: Cursor) -> bool:
    """Inside a call, whether the cursor is past the first argument."""
    return "," in cursor.statement[len(cursor.statement) - _since_open(cursor):]


def _since_open(cursor: Cursor) -> int:
    depth = 0
    for i, tok in enumerate(reversed(cursor.statement)):
        if tok == ")":
            depth += 1
        elif tok == "(":
            if depth == 0:
                return i
            depth -= 1
    return 0


def _names(analysis: Analysis | None, kinds: tuple[str, ...]) -> list[Item]:
    if analysis is None:
        return []
    seen, out = set(), []
    for decl in analysis.names_of(kinds):
        if decl.name.name not in seen:
            seen.add(decl.name.name)
            out.append(Item(decl.name.name, "name", decl.kind, f"{decl.span.file}:{decl.span.line}"))
    return out


def _list_names(analysis: Analysis | None, cursor: Cursor) -> list[Item]:
    stmt = cursor.statement
    kind = stmt[0] if stmt else ""
    if kind == "evaluate":
        return _names(analysis, ("dataset",) if "on" in stmt else ("model", "stage"))
    if kind == "distill" and "with" not in stmt:
        return _names(analysis, ITEM_SOURCES)
    key = _option_before(cursor)
    if key in _OPTION_KINDS:
        return _names(analysis, _OPTION_KINDS[key])
    return _enumerated(cursor, key)


def _option_before(cursor: Cursor) -> str | None:
    stmt = cursor.statement
    for i in range(len(stmt) - 1, 0, -1):
        if stmt[i] == "=":
            return stmt[i - 1]
    return None


def _other_methods_options(statement: tuple[str, ...]) -> frozenset[str]:
    """Options of the stage block that the stage's method (`stage x = sft(`) does not take."""
    method = statement[statement.index("=") + 1] if "=" in statement[:-1] else None
    if method not in table.SOURCES["stage method"]:
        return frozenset()
    return frozenset(o.name for o in table.block("stage").options) - set(method_options(method))


def _functions(what: str) -> list[Item]:
    """The functions a `KIND NAME = ` may call, with their reference entry (for rewards, the
    installed plugins too: lowering accepts them)."""
    items = [Item(name, "value", what, function_entry(name) or "", insert=f"{name}($0)")
             for name in table.SOURCES[what]]
    if what == "reward function":
        items += [Item(name, "value", "reward plugin", insert=f"{name}($0)")
                  for name in sorted(reward_plugins() - set(table.SOURCES[what]))]
    return items


_ALTERNATIVES = re.compile(r", | or ")
_REMARK = re.compile(r"\s+\([^)]*\)")  # "exact or minhash (also the first positional argument)"
_ARGS = re.compile(r"\([^)]*\)")  # "same_type(k = K, near = B)" -> "same_type()"
_WORD = re.compile(r"(?:[a-z ]+: )?([A-Za-z_][A-Za-z0-9_]*)(\(\))?")  # "call: vllm()" -> vllm, a call


def enumeration(opt_type: str) -> tuple[tuple[str, bool], ...]:
    """The words an option's written type offers, each with whether it is a call:
    "none, zero2, zero3 or zero3_offload", "true/false", "whole number or auto",
    "list of backtrack, explore, self_correct", "whole number or same_type(k = K, near = B)"."""
    if opt_type.startswith("true/false"):
        return (("true", False), ("false", False))
    text = _ARGS.sub("()", _REMARK.sub("", opt_type)).removeprefix("list of ")
    words = [m for m in map(_WORD.fullmatch, _ALTERNATIVES.split(text)) if m is not None]
    several = len(_ALTERNATIVES.split(text)) > 1  # a lone word is the type's name ("string")
    offered: dict[str, bool] = {}
    for m in words:
        if m.group(2) or several:
            offered.setdefault(m.group(1), bool(m.group(2)))  # `uniform, inverse_degree or inverse_degree(...)`
    return tuple(offered.items())


def _values(analysis: Analysis | None, cursor: Cursor) -> list[Item]:
    key = _option_before(cursor)
    if key in _OPTION_KINDS:
        return _names(analysis, _OPTION_KINDS[key])
    return _enumerated(cursor, key)


def _enumerated(cursor: Cursor, key: str | None) -> list[Item]:
    """The words option `key` of the enclosing block (or call) takes, from its written type."""
    where = next((f.block for f in reversed(cursor.frames) if f.opener != "["), None)
    block = table.block(where) if where else None
    opt = block.option(key) if block is not None and key else None
    if opt is None:
        return []
    return [Item(word, "value", key or "", opt.meaning, insert=f"{word}($0)" if call else None)
            for word, call in enumeration(opt.type)]


def _metapath(analysis: Analysis | None, cursor: Cursor) -> list[Item]:
    """Relations after `-[`, node types elsewhere, from the graph the sample reads."""
    if analysis is None:
        return []
    stmt = cursor.statement
    graph_name = stmt[stmt.index("from") + 1] if "from" in stmt[:-1] else None
    graph = next((d for d in analysis.decls if isinstance(d, ast.GraphDecl) and d.name.name == graph_name), None)
    if graph is None:
        return []
    base = analysis.path_of(graph.span.file).parent
    files = [Path(base / a.value) for a in graph.source.args if isinstance(a, ast.Str)]
    try:  # the vocabulary `fleming check` compares metapaths with (cached beside the file's hash)
        vocab = vocabulary(graph.source.func.name, files)
    except (VocabularyError, OSError, UnicodeDecodeError):
        return []
    if stmt and stmt[-1] == "-[":
        return [Item(r, "relation", f"relation of {graph_name}") for r in sorted(vocab.relations)]
    return [Item(t if t.isidentifier() else f'"{t}"', "type", f"node type of {graph_name}")
            for t in sorted(vocab.node_types)] + [Item("*", "type", "any node type")]


__all__ = ["complete", "Item", "DECL_KEYWORDS"]
