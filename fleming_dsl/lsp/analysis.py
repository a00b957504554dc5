"""One spec as the editor sees it: the front end's diagnostics plus an index of names and files.

`analyse(spec, root, texts)` runs the same pipeline as `fleming check` (loader -> checks ->
lowering), with the editor's unsaved buffers standing in for files on disk, and indexes every
file the spec pulls in (its includes and base, parsed by the same cached parser) so that
definition, references, rename, hover and completion can answer without parsing again.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fleming_dsl import ir
from fleming_dsl.check.common import ITEM_SOURCES
from fleming_dsl.check.files import file_refs
from fleming_dsl.check.references import references
from fleming_dsl.errors import Diagnostic, SpecError
from fleming_dsl.spec import ast
from fleming_dsl.spec.parser import parse_module

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Occurrence:
    """A declared name where it is written: its declaration, a reference to it, or a `drop`."""

    name: str
    span: ir.Span
    role: str  # "decl", "ref" or "drop"
    kinds: tuple[str, ...] = ()  # for a reference: the kinds allowed there


@dataclass(frozen=True)
class FileLink:
    """A string in the spec that names a file: include/extends target, template or data file."""

    span: ir.Span
    target: Path
    kind: str  # "include", "extends", "template", "data"


@dataclass
class Analysis:
    root: Path
    spec: Path
    diagnostics: list[Diagnostic] = field(default_factory=list)
    modules: dict[str, ast.Module] = field(default_factory=dict)  # display path -> module
    paths: dict[str, Path] = field(default_factory=dict)  # display path -> absolute path
    sources: dict[str, str] = field(default_factory=dict)
    experiment: ir.Experiment | None = None
    decls: list[ast.Decl] = field(default_factory=list)  # every declaration of every file
    occurrences: list[Occurrence] = field(default_factory=list)
    links: list[FileLink] = field(default_factory=list)

    def display(self, path: Path) -> str:
        return display(path, self.root)

    def path_of(self, shown: str) -> Path:
        return self.paths.get(shown) or Path(os.path.normpath(self.root / shown))

    def names_of(self, kinds: tuple[str, ...]) -> list[ast.Decl]:
        return [d for d in self.decls if d.kind in kinds]

    def at(self, shown: str, line: int, col: int):
        """The occurrence or file link under 1-based (line, col) of file `shown`, or None."""
        for item in list(self.occurrences) + list(self.links):
            if item.span.file == shown and contains(item.span, line, col):
                return item
        return None

    def occurrences_of(self, name: str) -> list[Occurrence]:
        return [o for o in self.occurrences if o.name == name]

    def by_file(self) -> dict[str, list[Diagnostic]]:
        out: dict[str, list[Diagnostic]] = defaultdict(list)
        for diag in self.diagnostics:
            out[diag.span.file if diag.span else self.display(self.spec)].append(diag)
        return out


def display(path: Path, root: Path) -> str:
    """The loader's display path: relative to the project root when inside it."""
    rel = os.path.relpath(path, root)
    return Path(rel).as_posix() if not rel.startswith("..") else path.as_posix()


def contains(span: ir.Span, line: int, col: int) -> bool:
    if (line, col) < (span.line, span.col):
        return False
    return (line, col) <= (span.end_line, span.end_col)  # the end counts: a cursor after a word


def analyse(spec: Path, root: Path, texts: dict[Path, str] | None = None) -> Analysis:
    """Diagnostics (errors and warnings, as `fleming check` reports them: the compiler's own
    `check_experiment`, with the editor's buffers as file contents) and the index."""
    from fleming_dsl.compiler import check_experiment

    texts = texts or {}
    result = Analysis(root=root, spec=spec)
    try:
        result.experiment, result.diagnostics = check_experiment(spec, root, texts=texts)
    except SpecError as err:
        result.diagnostics = list(err.diagnostics)
    except Exception as err:  # a checker bug on one spec must not take the server down with it
        log.exception("checking %s failed", spec)
        result.diagnostics = [_internal(display(spec, root), err)]
    _index(result, spec, texts)
    return result


def _internal(shown: str, err: Exception) -> Diagnostic:
    return Diagnostic(f"internal error while checking this spec: {type(err).__name__}: {err}",
                      ir.Span(file=shown, line=1, col=1, end_line=1, end_col=1),
                      hint="please report it; `fleming check` on this file shows the same")


def spec_file(path: Path, root: Path) -> bool:
    """Whether the server may read `path` from disk as a spec: the include rule (a .flm file
    inside the project once symlinks are resolved), so that no file of the workspace (a link
    to /proc/self/environ) is read, parsed or quoted."""
    try:
        real = path.resolve()
        return real.suffix == ".flm" and real.is_file() and real.is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def _read(path: Path, texts: dict[Path, str], root: Path | None = None) -> str | None:
    if path in texts:
        return texts[path]
    if root is not None and not spec_file(path, root):
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _index(result: Analysis, spec: Path, texts: dict[Path, str]) -> None:
    """Parse `spec` and every file it includes or extends (cached) and index their names."""
    todo, seen = [spec], set()
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        text = _read(path, texts, result.root)
        if text is None:
            continue
        shown = result.display(path)
        result.sources[shown], result.paths[shown] = text, path
        module = parse_tolerant(text, shown)
        if module is None:
            continue
        result.modules[shown] = module
        for st in module.statements:
            if isinstance(st, ast.Include):
                link = _link(path, st.path, "include")
                result.links.append(link)
                todo.append(link.target)
            elif isinstance(st, ast.Header) and st.extends is not None:
                link = _link(path, st.extends, "extends")
                result.links.append(link)
                todo.append(link.target)
            elif isinstance(st, ast.Drop):
                result.occurrences.append(Occurrence(st.target.name, st.target.span, "drop"))
            elif isinstance(st, ast.Decl):
                result.decls.append(st)
                if isinstance(st, ast.EvaluateDecl) and not st.named:
                    pass  # the default name eval, eval_2 is not written anywhere
                else:
                    result.occurrences.append(Occurrence(st.name.name, st.name.span, "decl"))
                for ref in references(st):
                    result.occurrences.append(Occurrence(ref.name.name, ref.name.span, "ref", ref.kinds))
                for fref in file_refs(st):
                    result.links.append(_link(path, fref.path, fref.kind))


_STATEMENT_START = re.compile(r"(experiment|include|drop|cluster|model|graph|sample|dataset|prompt|"
                              r"synthesize|distill|filter|reward|stage|evaluate)\b")


def parse_tolerant(text: str, shown: str, attempts: int = 5) -> ast.Module | None:
    """The module of `text`, or, while it has a syntax error (the user is typing), of `text` with
    the statement around the error blanked out, lines kept, so the rest still indexes."""
    lines = text.split("\n")
    for _ in range(attempts):
        try:
            return parse_module("\n".join(lines), shown)
        except SpecError as err:
            span = err.diagnostics[0].span
            if span is None:
                return None
            bad = min(max(span.line - 1, 0), len(lines) - 1)
            start = next((n for n in range(bad, -1, -1) if _STATEMENT_START.match(lines[n])), 0)
            end = next((n for n in range(bad + 1, len(lines)) if _STATEMENT_START.match(lines[n])), len(lines))
            if all(not line for line in lines[start:end]):
                return None
            lines[start:end] = [""] * (end - start)
        except Exception:  # a parser bug on one file: that file is not indexed, the rest is
            log.exception("parsing %s failed", shown)
            return None
    return None


_MAX_SCANNED = 500  # .flm files looked at to find who includes a file


def includer(path: Path, root: Path, texts: dict[Path, str]) -> Path | None:
    """A spec (a file with an experiment header) under `root` that includes `path`, directly or
    through other included files; None when there is none."""
    wanted, seen = {path}, set()
    files = sorted(root.rglob("*.flm"))[:_MAX_SCANNED]
    changed = True
    while changed:
        changed = False
        for candidate in files:
            if candidate in seen:
                continue
            text = _read(candidate, texts, root)
            module = parse_tolerant(text, display(candidate, root)) if text is not None else None
            if module is None:
                continue
            targets = {Path(os.path.normpath(candidate.parent / st.path.value))
                       for st in module.statements if isinstance(st, ast.Include)}
            if targets & wanted:
                if module.header is not None:
                    return candidate
                wanted.add(candidate)
                seen.add(candidate)
                changed = True
    return None


def _link(here: Path, ref: ast.Str, kind: str) -> FileLink:
    return FileLink(ref.span, Path(os.path.normpath(here.parent / ref.value)), kind)


__all__ = ["Analysis", "Occurrence", "FileLink", "analyse", "display", "contains", "ITEM_SOURCES"]
