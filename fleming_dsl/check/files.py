"""Local files a spec names: prompt templates (part of the spec's source, so a missing one is
always an error) and data (graph files, datasets, local model weights), which is often staged on a
cluster separately: a missing data file is an error when its folder exists (a typo in a shipped
tree) and a warning when the folder does not exist either (external data, e.g.
`data/primekg/kg.csv` on a laptop).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from fleming_dsl.check.common import Checked
from fleming_dsl.errors import Diagnostic, Fix, suggestion
from fleming_dsl.spec import ast


def local_path(c: Checked, decl: ast.Decl, text: str) -> Path:
    """Where a path written in `decl` points (relative to the folder of the file it is in)."""
    return c.program.dirs[decl.span.file] / text


@dataclass(frozen=True)
class FileRef:
    path: ast.Str
    kind: str  # "template" (always required) or "data" (required when its folder exists)
    file_only: bool = False  # a folder there will not do (a graph file)


def file_refs(decl: ast.Decl) -> Iterator[FileRef]:
    """The local files a declaration names."""
    if isinstance(decl, ast.PromptDecl):
        for arg in decl.source.args[:1]:
            if isinstance(arg, ast.Str):
                yield FileRef(arg, "template")
    elif isinstance(decl, ast.GraphDecl):
        for arg in decl.source.args:
            if isinstance(arg, ast.Str):
                yield FileRef(arg, "data", file_only=True)
    elif isinstance(decl, ast.DatasetDecl) or (
            isinstance(decl, ast.ModelDecl) and decl.source.func.name == "local"):
        for arg in decl.source.args:
            if isinstance(arg, ast.Str):
                yield FileRef(arg, "data")


def exists(path: Path) -> bool:
    """Path.exists that answers False where the OS refuses the name (e.g. too long)."""
    try:
        return path.exists()
    except (OSError, ValueError):  # ValueError: a NUL character in the name
        return False


def missing_file(ref: FileRef, base_dir: Path) -> Diagnostic | None:
    """A diagnostic when `ref` (relative to `base_dir`) does not exist; see the module docstring."""
    path = base_dir / ref.path.value
    try:
        if path.exists():
            if ref.file_only and path.is_dir():
                return Diagnostic(f"graph file is a folder: {ref.path.value}", ref.path.span,
                                  hint="name the file inside it (kg.csv, nodes.tsv, edges.sif, ...)")
            return None
        parent_exists = path.parent.is_dir()
    except (OSError, ValueError) as err:  # a name too long for the file system, a NUL in it
        why = getattr(err, "strerror", None) or "the name holds a NUL character"
        return Diagnostic(f"cannot use {ref.kind} path: {why}", ref.path.span)
    if ref.kind == "template":
        return Diagnostic(f"template file not found: {ref.path.value}", ref.path.span,
                          hint=f"paths are relative to the folder of {ref.path.span.file}")
    if parent_exists:
        siblings = [p.name for p in path.parent.iterdir()]
        found = suggestion(path.name, siblings, ref.path.span)
        if found["fix"] is not None:  # the string, its folder kept, with the sibling's name
            fixed = PurePosixPath(ref.path.value).with_name(found["fix"].text).as_posix()
            found["fix"] = Fix(ref.path.span, json.dumps(fixed, ensure_ascii=False))
        return Diagnostic(f"data file not found: {ref.path.value}", ref.path.span, fix=found["fix"],
                          hint=found["hint"] or f"paths are relative to the folder of {ref.path.span.file}")
    return Diagnostic(f"data file not found: {ref.path.value} (treated as external data: its "
                      "folder does not exist here either)", ref.path.span, severity="warning")


def missing_files(c: Checked) -> Iterator[Diagnostic]:
    program = c.program
    answers: dict[tuple, Diagnostic | None] = {}  # one look at the disk per distinct path
    for decl in program.decls:
        for ref in file_refs(decl):
            key = (decl.span.file, ref.path.value, ref.kind)
            if key not in answers:
                answers[key] = missing_file(ref, program.dirs[decl.span.file])
            diag = answers[key]
            if diag is not None:
                yield replace(diag, span=ref.path.span)
