"""Every exception class the project defines derives from errors.FlemingError (issue 22): the
CLI prints any of them as one message, and `except FlemingError` catches all of the project's
own. Read from the source, so the runtime's heavy modules need not be imported."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import fleming_dsl

PACKAGE = Path(fleming_dsl.__file__).parent
BUILTIN_EXCEPTIONS = {n for n, v in vars(builtins).items()
                      if isinstance(v, type) and issubclass(v, BaseException)}


def _classes() -> dict[str, list[tuple[str, list[str]]]]:
    """class name -> [(module file, base names)] for every class in the package."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                         if isinstance(b, (ast.Name, ast.Attribute))]
                out.setdefault(node.name, []).append((str(path.relative_to(PACKAGE)), bases))
    return out


def test_every_project_exception_derives_from_the_root():
    classes = _classes()

    def reaches(name: str, goal: set[str], seen: frozenset = frozenset()) -> bool:
        if name in goal:
            return True
        return any(reaches(b, goal, seen | {name}) for _, bases in classes.get(name, ())
                   for b in bases if b not in seen)

    exceptions = {n for n in classes if n != "FlemingError" and reaches(n, BUILTIN_EXCEPTIONS)}
    assert "SpecError" in exceptions and "VocabularyError" in exceptions  # the walk sees them
    outside = sorted(f"{where}: {name}" for name in exceptions
                     for where, _ in classes[name] if not reaches(name, {"FlemingError"}))
    assert outside == []
