"""Code actions: the edits diagnostics carry (`errors.Fix`, built where each hint is written),
offered for the lines the editor asks about."""

from __future__ import annotations

from dataclasses import dataclass

from fleming_dsl.errors import Diagnostic, Fix
from fleming_dsl.lsp.analysis import Analysis


@dataclass(frozen=True)
class Action:
    title: str
    diagnostic: Diagnostic
    fix: Fix


def _text_at(source: str, fix: Fix) -> str:
    lines = source.split("\n")
    span = fix.span
    if span.line != span.end_line or not 1 <= span.line <= len(lines):
        return ""
    return lines[span.line - 1][span.col - 1: span.end_col - 1]


def actions(analysis: Analysis, shown: str, first_line: int, last_line: int) -> list[Action]:
    """The fixes of file `shown`'s diagnostics that touch 1-based lines first..last."""
    source = analysis.sources.get(shown, "")
    out = []
    for diag in analysis.diagnostics:
        fix = diag.fix
        if fix is None or fix.span.file != shown:
            continue
        if fix.span.end_line < first_line or fix.span.line > last_line:
            continue
        old = _text_at(source, fix)
        title = f"Replace '{old}' with '{fix.text}'" if old else f"Write '{fix.text}'"
        out.append(Action(title, diag, fix))
    return out
