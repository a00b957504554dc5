"""Spec files -> one merged `ast.Program`: parse each file, paste includes, apply a base.

    program = load_program("specs/tiny.flm", project_root=Path.cwd())

`include "x.flm"` pastes another file's declarations in (a name declared twice is an error).
`experiment "name" extends "base.flm" { ... }` starts from the base spec's declarations,
header and cluster options; a declaration in the extending spec with a base name replaces the
base one (in the base's place), `drop NAME` removes one, and header/cluster options override
option by option. Paths are always relative to the file that wrote them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fleming_dsl import ir
from fleming_dsl.errors import Diagnostic, SpecError, suggestion
from fleming_dsl.spec import ast
from fleming_dsl.spec.boundary import (
    inside,
    outside_hint,
    outside_message,
    file_span,
    safe_is_file,
    spec_problem,
)
from fleming_dsl.spec.parser import parse_module
from fleming_dsl.spec.text import decode_source

__all__ = ["Diagnostic", "SpecError", "load_program"]


@dataclass
class _Layer:
    name: ast.Str | None = None
    header: list[ast.Option] = field(default_factory=list)
    decls: list[ast.Decl] = field(default_factory=list)
    cluster: list[ast.Option] = field(default_factory=list)
    # an extended layer: its slots (None where a declaration was dropped) and, for each name,
    # its live slots first first; kept as the layer is extended again, so a chain of bases
    # indexes each declaration once
    slots: list[ast.Decl | None] | None = None
    places: dict[str, list[int]] = field(default_factory=dict)

    def declarations(self) -> list[ast.Decl]:
        """The layer's declarations in order (an extended layer's read off its slots, once:
        only the spec's own layer and included files are read this way, never a base)."""
        return self.decls if self.slots is None else [d for d in self.slots if d is not None]


class _Loader:
    def __init__(self, project_root: Path, texts: dict[Path, str] | None = None):
        self.root = Path(os.path.abspath(project_root))
        self.texts = texts or {}  # files whose text is given rather than read
        self.sources: dict[str, str] = {}
        self.dirs: dict[str, Path] = {}
        self.diags: list[Diagnostic] = []
        self.dropped: dict[str, ir.Span] = {}

    def display(self, path: Path) -> str:
        rel = os.path.relpath(path, self.root)
        return Path(rel).as_posix() if not rel.startswith("..") else path.as_posix()

    def parse(self, path: Path) -> ast.Module:
        """A spec file's module; only paths `spec_problem` accepts reach here, so any text an
        error quotes is a spec's."""
        shown = self.display(path)
        if path in self.texts:
            text = self.texts[path]
        else:
            try:
                data = path.read_bytes()
            except OSError as err:
                reason = err.strerror or type(err).__name__
                raise SpecError(list(self.diags) + [Diagnostic(f"cannot read {shown}: {reason}",
                                                                file_span(shown))], self.sources) from None
            text, bad = decode_source(data, shown)
            if bad is not None:
                self.sources[shown] = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
                raise SpecError(list(self.diags) + [bad], self.sources) from None
        self.sources[shown] = text
        self.dirs[shown] = path.parent
        try:
            return parse_module(text, shown)
        except SpecError as err:
            raise SpecError(list(self.diags) + list(err.diagnostics), self.sources) from None

    def referenced(self, here: Path, ref: ast.Str, what: str, stack: list[Path]) -> Path | None:
        target = Path(os.path.normpath(here.parent / ref.value))
        problem = spec_problem(target, self.root, what, ref.value)
        if problem is not None:
            self.diags.append(Diagnostic(problem[0], ref.span, hint=problem[1]))
            return None
        is_file, why = safe_is_file(target)
        if not is_file:
            self.diags.append(Diagnostic(f"{what} file not found: {_shorten(ref.value)}"
                                         + (f" ({why})" if why else ""), ref.span,
                                         hint=f"paths are relative to the folder of {ref.span.file}"))
            return None
        if target in stack:
            chain = " -> ".join(self.display(p) for p in stack[stack.index(target):] + [target])
            self.diags.append(Diagnostic(f"{what} cycle: {chain}", ref.span))
            return None
        return target

    def layer(self, path: Path, stack: list[Path], role: str) -> _Layer:
        """The declarations of `path` with its includes and base merged in. role: spec/base/include."""
        module = self.parse(path)
        stack = stack + [path]
        own, base, drops = _Layer(), None, []
        headers = [s for s in module.statements if isinstance(s, ast.Header)]
        for extra in headers[1:]:
            self.diags.append(Diagnostic("a spec has one experiment header", extra.span))
        if headers:
            header = headers[0]
            if role == "include":
                self.diags.append(Diagnostic("an included file cannot have an experiment header",
                                             header.span, hint="use extends to build on a whole spec"))
            own.name = header.name
            own.header = list(header.block.options() if header.block else ())
            for item in header.block.items if header.block else ():
                if not isinstance(item, ast.Option):
                    self.diags.append(Diagnostic("the experiment header takes options only (seed, workdir)",
                                                 item.span))
            if header.extends is not None:
                base_path = self.referenced(path, header.extends, "base spec", stack)
                if base_path is not None:
                    base = self.layer(base_path, stack, "base")
        elif role == "spec":
            self.diags.append(Diagnostic("a spec needs an experiment header: experiment \"name\" { ... }",
                                         ir.Span(file=self.display(path), line=1, col=1, end_line=1, end_col=2)))
        for statement in module.statements:
            if isinstance(statement, ast.Include):
                inc_path = self.referenced(path, statement.path, "included", stack)
                if inc_path is not None:
                    inc = self.layer(inc_path, stack, "include")
                    own.decls += inc.declarations()
                    own.cluster += inc.cluster
            elif isinstance(statement, ast.Decl):
                own.decls.append(statement)
            elif isinstance(statement, ast.ClusterDecl):
                own.cluster += list(statement.block.options())
                for item in statement.block.items:
                    if not isinstance(item, ast.Option):
                        self.diags.append(Diagnostic("the cluster block takes options only", item.span))
            elif isinstance(statement, ast.Drop):
                drops.append(statement)
        return self.extend(base, own, drops)

    def extend(self, base: _Layer | None, own: _Layer, drops: list[ast.Drop]) -> _Layer:
        if base is None:
            for drop in drops:
                self.diags.append(Diagnostic("drop is only allowed in a spec that extends another",
                                             drop.span, hint='experiment "name" extends "base.flm" { ... }'))
            return own
        # Slots, with the first slot of each name indexed: dropping and replacing stay linear in
        # the number of declarations (a base may declare 100,000 of them). The base layer is this
        # call's own, so its slots and index are extended in place, not rebuilt.
        if base.slots is None:
            base.slots = list(base.decls)
            for i, d in enumerate(base.slots):
                base.places.setdefault(d.name.name, []).append(i)
        slots, places, base_size = base.slots, base.places, len(base.slots)
        for drop in drops:
            if places.get(drop.target.name):
                slots[places[drop.target.name].pop(0)] = None
                self.dropped[drop.target.name] = drop.span
            else:
                names = [d.name.name for d in slots if d is not None]
                self.diags.append(Diagnostic(f"cannot drop '{drop.target.name}': the base does not declare it",
                                             drop.target.span, **suggestion(drop.target.name, names, drop.target.span)))
        replaced: set[str] = set()
        for decl in own.decls:
            name = decl.name.name
            first = places.get(name)
            if first and first[0] < base_size and name not in replaced:  # a base declaration
                slots[first[0]] = decl
                replaced.add(name)
            else:
                places.setdefault(name, []).append(len(slots))
                slots.append(decl)
        return _Layer(name=own.name or base.name, header=base.header + own.header,
                      cluster=base.cluster + own.cluster, slots=slots, places=places)


def _templates_outside(decls: list[ast.Decl], loader: _Loader) -> list[Diagnostic]:
    """Prompt templates are source too: they must lie inside the project (symlinks resolved)."""
    out = []
    judged: dict[tuple, bool] = {}  # symlinks resolved once per distinct path, not per prompt
    for decl in decls:
        if not isinstance(decl, ast.PromptDecl) or not decl.source.args:
            continue
        path, where = decl.source.args[0], loader.dirs.get(decl.span.file)
        if not isinstance(path, ast.Str) or where is None:
            continue
        key = (where, path.value)
        if key not in judged:
            judged[key] = inside(where / path.value, loader.root)
        if not judged[key]:
            out.append(Diagnostic(outside_message("prompt template", path.value), path.span,
                                  hint=outside_hint()))
    return out


def _shorten(text: str, limit: int = 80) -> str:
    """A written path cut to a readable length (a 300-character path is not worth repeating)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_program(path: str | os.PathLike, project_root: Path | None = None, *,
                 text: str | None = None, texts: dict[Path, str] | None = None) -> ast.Program:
    """Parse a spec with its includes and base, merged (no semantic checks yet).

    `text`, when given, is used as the content of `path` (which need not exist): e.g. to check
    a formatted spec before writing it. `texts` does the same for any file by absolute path
    (an editor's unsaved buffers of the spec, its base and its includes)."""
    spec = Path(os.path.abspath(path))
    given = {Path(os.path.abspath(k)): v for k, v in (texts or {}).items()}
    if text is not None:
        given[spec] = text
    loader = _Loader(project_root or Path.cwd(), given or None)
    problem = spec_problem(spec, loader.root, "spec", loader.display(spec))
    if problem is not None:
        raise SpecError([Diagnostic(problem[0], file_span(loader.display(spec)), hint=problem[1])])
    layer = loader.layer(spec, [], "spec")
    decls = layer.declarations()
    loader.diags += _templates_outside(decls, loader)
    if loader.diags:
        raise SpecError(loader.diags, loader.sources)
    return ast.Program(spec=loader.display(spec), name=layer.name, header=tuple(layer.header),
                       decls=tuple(decls), cluster=tuple(layer.cluster), dirs=loader.dirs,
                       sources=loader.sources, dropped=loader.dropped)
