"""Hover text: an option's reference entry, or a declared name's resolved configuration.

For a declared name the configuration is the IR node lowering produced (after `extends`,
`include` and sweep expansion, defaults filled in), one value per line, each marked with the spec
line that set it, as `fleming explain` marks a job's config (`review/explain.option_origins`).
"""

from __future__ import annotations

import json
from typing import Any

from fleming_dsl import ir
from fleming_dsl.lower import options as table
from fleming_dsl.lower.names import SPEC_WORDS
from fleming_dsl.lsp.analysis import Analysis
from fleming_dsl.lsp.context import KIND_SOURCES, decl_block, method_options
from fleming_dsl.review.explain import SpecLine, option_origins

# IR leaf field -> the keyword the spec writes: lowering's table, plus the IR's nested fields
_SPEC_WORDS = {**SPEC_WORDS, "tensor_parallel": "tp", "steps": "path", "alpha": "alpha",
               "solved_ratio": "ratio", "failed_ratio": "ratio", "pass_below": "mine_hard",
               "targets": "evaluate"}


def option_entry(block_key: str | None, name: str) -> str | None:
    """Markdown for one option of the reference, or None when the block does not take it."""
    block = table.block(block_key) if block_key else None
    opt = block.option(name) if block else None
    if block is None or opt is None:
        return None
    facts = [f"type: {opt.type}"]
    if opt.unit:
        facts.append(f"unit: {opt.unit}")
    if opt.default_text():
        facts.append(f"default: {opt.default_text()}")
    if opt.range:
        facts.append(f"range: {opt.range}")
    return f"**{opt.name}** ({block.title})\n\n{opt.meaning}\n\n" + " · ".join(facts)


def value_entry(block_key: str | None, name: str, word: str | None) -> str | None:
    """Markdown for a value written after `name = `: the option's entry, led by the value."""
    entry = option_entry(block_key, name)
    if entry is None:
        return None
    return (f"`{word}`: a value of **{name}**\n\n" if word else "") + entry


def function_entry(name: str) -> str | None:
    """Markdown for a function a spec calls: its block of options when it takes any, else the
    kinds of call that may name it (the option table's SOURCES)."""
    key = name + "()"
    if table.block(key) is not None:
        return block_entry(key)
    if table.block(name) is not None and name in table.NESTED_BLOCKS:
        return block_entry(name)
    kinds = [what for what, names in table.SOURCES.items() if name in names]
    if name in ir.FILTER_STEPS:
        kinds.append("filter step")
    if not kinds:
        return None
    head = f"**{name}()**: " + "; ".join(f"a {what} (one of {', '.join(_names_of(what))})" for what in kinds)
    if name in table.SOURCES["stage method"]:  # what its block takes: lowering's table, by method
        head += "\n\noptions: " + ", ".join(f"`{w}`" for w in method_options(name))
    return head


def _names_of(what: str) -> tuple[str, ...]:
    return ir.FILTER_STEPS if what == "filter step" else table.SOURCES[what]


# The words of the syntax that no option block describes (grammars/flm.lark: how each is written).
_SYNTAX = {
    "include": ('include "FILE.flm"', "adds the declarations of another file, relative to this one"),
    "extends": ('experiment "NAME" extends "BASE.flm" { ... }',
                "starts from a base spec: its declarations, each replaced by one of the same name here"),
    "drop": ("drop NAME", "removes a declaration of the base spec"),
    "graph": ('graph NAME = FORMAT("file", ...)', "a knowledge graph read from local files"),
    "prompt": ('prompt NAME = template("file.j2")', "a Jinja2 prompt template"),
    "reward": ("reward NAME = FUNCTION(...)", "a verifiable reward for grpo stages"),
    "filter": ("filter NAME from SOURCE { STEPS }", "keeps the items that pass each step, in order"),
    "from": ("KIND NAME from SOURCE", "the declaration the step reads"),
    "with": ("... with TEACHER", "the model that writes the items"),
    "using": ("... using PROMPT", "the prompt the teacher is given"),
    "on": ("evaluate TARGETS on [BENCHMARKS]", "the datasets evaluated on"),
    "as": ("evaluate TARGETS on [BENCHMARKS] as NAME", "the evaluation's name"),
    "sweep": ("sweep OPTION in [VALUES]", "one stage per value, named NAME_OPTION_VALUE"),
    "in": ("sweep OPTION in [VALUES]", "the values of a sweep"),
}


def keyword_entry(word: str) -> str | None:
    """Markdown for a keyword: how its statement is written and what it may name or take."""
    block = table.block(decl_block(word) or "") if word not in _SYNTAX else None
    if block is None and word in table.NESTED_BLOCKS:
        block = table.block(table.NESTED_BLOCKS[word])
    if block is not None:
        head = f"**{word}**: `{block.where}`"
        lines = [f"- `{o.name}`: {o.type}" for o in block.options]
    elif word in _SYNTAX:
        written, meaning = _SYNTAX[word]
        head, lines = f"**{word}**: `{written}`\n\n{meaning}", []
    else:
        return None
    what = KIND_SOURCES.get(word)
    if what is not None:
        lines.insert(0, f"{what}: " + ", ".join(f"`{n}`" for n in table.SOURCES[what]))
    if word == "filter":
        lines.insert(0, "steps: " + ", ".join(f"`{n}`" for n in ir.FILTER_STEPS))
    return head + ("\n\n" + "\n".join(lines) if lines else "")


def block_entry(block_key: str) -> str | None:
    """Markdown for a call or nested block: how it is written and the options it takes."""
    block = table.block(block_key)
    if block is None:
        return None
    rows = [f"- `{o.name}`: {o.type}" + (f" = {o.default_text()}" if o.default_text() else "")
            for o in block.options]
    return f"**{block.title}**: `{block.where}`\n\n" + "\n".join(rows)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict) and data and prefix.count(".") < 2:
        out = []
        for key, value in data.items():
            out += _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
        return out
    return [(prefix.rstrip("."), data)]


def _is_default(node: Any, path: str) -> bool:
    *parents, leaf = path.split(".")
    for part in parents:
        node = getattr(node, part, None)
    fields = getattr(type(node), "model_fields", {})
    if leaf not in fields:
        return False
    default = fields[leaf].default
    return getattr(node, leaf, None) == default


def _ir_nodes(analysis: Analysis, name: str) -> list[ir.Decl]:
    """The IR declarations built from the declaration `name` (several for a swept stage): those
    lowered from a declaration of that name, found by the span they remember."""
    exp = analysis.experiment
    if exp is None:
        return []
    written = {(d.span.file, d.span.line, d.kind) for d in analysis.decls if d.name.name == name}
    return [d for d in exp.declarations().values()
            if d.span is not None and (d.span.file, d.span.line, d.kind) in written]  # type: ignore[attr-defined]


def resolved(analysis: Analysis, name: str) -> str | None:
    """Markdown: the resolved configuration of declaration `name`, value by value with origins."""
    nodes = _ir_nodes(analysis, name)
    if not nodes:
        return None
    out = []
    for node in nodes:
        span = node.span
        lines = []
        if span is not None:
            text = analysis.sources.get(span.file, "").splitlines()
            lines = [SpecLine(span.file, n, text[n - 1]) for n in range(span.line, min(span.end_line, len(text)) + 1)]
        config = node.model_dump(mode="json", exclude={"span", "name", "kind"})
        flat = _flatten(config)
        leaves = {path: path.rsplit(".", 1)[-1] for path, _ in flat}
        words = {leaf: _SPEC_WORDS.get(leaf, leaf) for leaf in leaves.values()}
        origins = option_origins({w: None for w in words.values()}, lines)
        width = max((len(p) for p, _ in flat), default=0)
        where = f"{span.file}:{span.line}" if span else ""
        rows = [f"{node.kind} {node.name}  ({where})"]  # type: ignore[attr-defined]
        for path, value in flat:
            origin = origins.get(words[leaves[path]])
            if origin is not None:
                mark = f"  <- line {origin.line}"
            elif _is_default(node, path):
                mark = "  (default)"
            else:  # written in the declaration's head: `stage rl1 = grpo(cold_start, clean)`
                mark = f"  <- line {span.line}" if span else ""
            rows.append(f"  {path:<{width}} = {json.dumps(value, sort_keys=True)}{mark}")
        out.append("\n".join(rows))
    head = f"**{name}**" + (f": {len(nodes)} declarations after sweep expansion" if len(nodes) > 1 else "")
    return head + "\n\n```\n" + "\n\n".join(out) + "\n```"
