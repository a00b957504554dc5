"""The semantic diff of two experiments: what a spec edit changes, declaration by declaration.

Pure: IR in, `ExperimentDiff` out, plus three renderers (text, JSON-able dict, markdown).
Declarations are matched by kind and name, so layout, comments, declaration order and spans do
not count; options are compared as flattened dotted paths (`training.lr`, `steps.dedupe.threshold`,
`rewards.form.weight`), so a reviewer sees exactly which number moved.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from fleming_dsl.ir import Decl, Experiment, Span

Change = Literal["added", "removed", "changed"]

# The order declarations are listed in: the order of the recipe, then by name.
KIND_ORDER = ("experiment", "model", "graph", "sample", "dataset", "prompt", "synthesize",
              "distill", "filter", "reward", "stage", "evaluate")

# In a list of option records, the field that names each record: lists keyed this way diff by
# name (`steps.dedupe.threshold`) rather than by position, so inserting a step moves nothing.
_LIST_KEYS = ("step", "reward", "name")

# Fields that describe where the spec lives, not what the experiment does.
_NOT_SEMANTIC = {"span", "spec"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class OptionChange(_Frozen):
    """One option that differs: `old`/`new` are None where the option is absent on that side."""

    path: str
    change: Change
    old: Any = None
    new: Any = None


class DeclDiff(_Frozen):
    kind: str
    name: str
    change: Change
    options: tuple[OptionChange, ...] = ()
    old_span: Span | None = None
    new_span: Span | None = None


class ExperimentDiff(_Frozen):
    old_name: str
    new_name: str
    decls: tuple[DeclDiff, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.decls)

    def count(self, change: Change) -> int:
        return sum(1 for d in self.decls if d.change == change)


# ---------------------------------------------------------------- flattening


def _entry_key(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    for key in _LIST_KEYS:
        if isinstance(entry.get(key), str):
            return key
    return None


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    """A list of records that each carry a unique name field, as {name: rest of record}."""
    if not items:
        return None
    keys = {_entry_key(item) for item in items}
    if len(keys) != 1 or None in keys:
        return None
    key = keys.pop()
    named = {item[key]: {k: v for k, v in item.items() if k != key} for item in items}
    return named if len(named) == len(items) else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf options by dotted path. Lists of scalars stay whole values (order can matter)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            if key in _NOT_SEMANTIC:
                continue
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        named = _keyed(value)
        if named is not None:
            out = {}
            for name, item in named.items():
                # a record with no options of its own (`format`) is present or absent
                out.update(flatten(item, f"{prefix}.{name}") if item else {f"{prefix}.{name}": True})
            return out
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def _options(node: BaseModel, only_set: bool = False) -> dict[str, Any]:
    data = node.model_dump(mode="json", exclude_defaults=only_set)
    data.pop("kind", None)
    data.pop("name", None)
    return flatten(data)


def _option_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[OptionChange, ...]:
    changes = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            changes.append(OptionChange(path=path, change="removed", old=old[path]))
        elif path not in old:
            changes.append(OptionChange(path=path, change="added", new=new[path]))
        elif old[path] != new[path] or type(old[path]) is not type(new[path]):
            if old[path] == new[path] and {type(old[path]), type(new[path])} <= {int, float}:
                continue  # 1 and 1.0 are the same number
            changes.append(OptionChange(path=path, change="changed", old=old[path], new=new[path]))
    return tuple(changes)


# ---------------------------------------------------------------- the diff


def _experiment_settings(exp: Experiment) -> dict[str, Any]:
    data = exp.model_dump(mode="json", include={"name", "seed", "workdir", "cluster"})
    return flatten(data)


def _sort_key(decl: DeclDiff) -> tuple[int, str]:
    order = KIND_ORDER.index(decl.kind) if decl.kind in KIND_ORDER else len(KIND_ORDER)
    return order, decl.name


def diff_experiments(old: Experiment, new: Experiment) -> ExperimentDiff:
    """Every added, removed and changed declaration, with its option-level changes."""
    decls: list[DeclDiff] = []
    settings = _option_changes(_experiment_settings(old), _experiment_settings(new))
    if settings:
        decls.append(DeclDiff(kind="experiment", name=new.name, change="changed", options=settings))

    def by_key(exp: Experiment) -> dict[tuple[str, str], Decl]:
        return {(getattr(d, "kind", ""), d.name): d for d in exp.declarations().values()}

    before, after = by_key(old), by_key(new)
    for key in before.keys() | after.keys():
        kind, name = key
        if key not in after:
            decls.append(DeclDiff(kind=kind, name=name, change="removed",
                                  options=_option_changes(_options(before[key], True), {}),
                                  old_span=before[key].span))
        elif key not in before:
            decls.append(DeclDiff(kind=kind, name=name, change="added",
                                  options=_option_changes({}, _options(after[key], True)),
                                  new_span=after[key].span))
        else:
            options = _option_changes(_options(before[key]), _options(after[key]))
            if options:
                decls.append(DeclDiff(kind=kind, name=name, change="changed", options=options,
                                      old_span=before[key].span, new_span=after[key].span))
    return ExperimentDiff(old_name=old.name, new_name=new.name,
                          decls=tuple(sorted(decls, key=_sort_key)))


# ---------------------------------------------------------------- rendering


def show_value(value: Any) -> str:
    """A value as it would read in a spec: numbers plain, strings quoted, lists in brackets."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show_value(v)}" for k, v in value.items()) + "}"
    return str(value)


_MARK = {"added": "+", "removed": "-", "changed": "~"}


def where(span: Span | None) -> str:
    return f"{span.file}:{span.line}" if span else ""


def _option_text(option: OptionChange) -> str:
    if option.change == "added":
        return f"{option.path} = {show_value(option.new)}"
    if option.change == "removed":
        return f"{option.path} = {show_value(option.old)}"
    return f"{option.path}: {show_value(option.old)} -> {show_value(option.new)}"


def render_text(diff: ExperimentDiff) -> str:
    """Terminal form, one declaration per block, like `terraform plan`'s resource list."""
    if not diff.changed:
        return "No changes: the two specs describe the same experiment.\n"
    lines = [f"Declarations: {diff.count('added')} added, {diff.count('removed')} removed, "
             f"{diff.count('changed')} changed", ""]
    for decl in diff.decls:
        place = where(decl.new_span or decl.old_span)
        suffix = f"  ({place})" if place else ""
        lines.append(f"{_MARK[decl.change]} {decl.kind} {decl.name}{suffix}")
        for option in decl.options:
            lines.append(f"    {_MARK[option.change]} {_option_text(option)}")
    return "\n".join(lines) + "\n"


def render_json(diff: ExperimentDiff) -> dict[str, Any]:
    return {
        "changed": diff.changed,
        "summary": {c: diff.count(c) for c in ("added", "removed", "changed")},
        "declarations": [d.model_dump(mode="json") for d in diff.decls],
    }


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def render_markdown(diff: ExperimentDiff) -> str:
    """A pull-request comment: one table row per changed option."""
    if not diff.changed:
        return "**No changes**: the two specs describe the same experiment.\n"
    lines = [f"**Declarations**: {diff.count('added')} added, {diff.count('removed')} removed, "
             f"{diff.count('changed')} changed", "",
             "| | declaration | option | old | new |", "|---|---|---|---|---|"]
    for decl in diff.decls:
        label = f"{decl.kind} {_cell(decl.name)}"
        if not decl.options:
            lines.append(f"| {_MARK[decl.change]} | {label} | | | |")
        for option in decl.options:
            old = _cell(show_value(option.old)) if option.change != "added" else ""
            new = _cell(show_value(option.new)) if option.change != "removed" else ""
            lines.append(f"| {_MARK[decl.change]} | {label} | {_cell(option.path)} | {old} | {new} |")
    return "\n".join(lines) + "\n"
