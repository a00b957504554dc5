"""Every error fleming-dsl reports, under one root, and the located diagnostics of specs.

`FlemingError` is the root: the CLI prints any of them as one message (never a traceback) and
exits 1. `SpecError` (the front end), `PlanError` (the planner), `JobError` (a running job) and
`TeacherError` (a teacher backend) are the four families; other modules subclass these or the root.

Every problem is a `Diagnostic` with a `Span`; `SpecError` carries all of them (checks collect
everything before reporting) and renders each as

    path:line:col: error: message
      <source line>
      ^^^^
      expected ...
      hint: ...
"""

from __future__ import annotations

import bisect
import difflib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleming_dsl.ir import Span

__all__ = ["Span", "Fix", "Diagnostic", "FlemingError", "SpecError", "PlanError", "JobError", "TeacherError",
           "by_place", "did_you_mean", "suggestion", "MAX_REPORTED"]

MAX_REPORTED = 20  # more than this and the rest is noise caused by the first ones
_MANY = 1000  # did_you_mean looks at this many of a long list of choices


@dataclass(frozen=True)
class Fix:
    """The edit a hint proposes, for tools: write `text` in place of `span`. Built where the
    hint is, so the language server offers it as a code action without reading the hint's prose."""

    span: Span
    text: str


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None
    expected: str | None = None
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"
    fix: Fix | None = None  # the hint as an edit, where it names one concrete replacement

    def first_line(self) -> str:
        where = f"{self.span.file}:{self.span.line}:{self.span.col}: " if self.span else ""
        return f"{where}{self.severity}: {self.message}"

    def render(self, source: str | None) -> str:
        out = [self.first_line()]
        if self.span is not None and source is not None:
            out += _excerpt(source, self.span)
        if self.expected:
            out.append(f"  expected {self.expected}")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


def _excerpt(source: str, span: Span) -> list[str]:
    lines = source.splitlines()
    if not 1 <= span.line <= len(lines):
        return []
    text = lines[span.line - 1].rstrip()
    start = max(span.col - 1, 0)
    end = span.end_col - 1 if span.end_line == span.line and span.end_col > span.col else start + 1
    end = max(min(end, len(text)), start + 1)
    return [f"  {text}", "  " + " " * start + "^" * (end - start)]


class FlemingError(Exception):
    """Root of the errors a user reads: the message says what and where, without a traceback."""


class PlanError(FlemingError):
    """An experiment the planner cannot lay out (the front end's checks should prevent these)."""


class JobError(FlemingError):
    """Input or config a job cannot use. The message is one line naming the file and the field."""


class TeacherError(FlemingError):
    """A teacher backend failed (endpoint, model, or response) after its retries."""


class SpecError(FlemingError):
    """One or more problems in a spec; `str()` renders them all (capped at MAX_REPORTED)."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None):
        # the same problem found twice (a stage lowered once per sweep point) is reported once
        self.diagnostics = tuple(dict.fromkeys(diagnostics))
        self.sources = dict(sources or {})
        super().__init__(self.render())

    def render(self) -> str:
        shown = self.diagnostics[:MAX_REPORTED]
        parts = [d.render(self.sources.get(d.span.file) if d.span else None) for d in shown]
        hidden = len(self.diagnostics) - len(shown)
        if hidden > 0:
            parts.append(f"... and {hidden} more errors")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


def by_place(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in reading order (file, line, column); ones without a place come last."""
    return sorted(diagnostics, key=lambda d: (d.span is None, d.span.file if d.span else "",
                                              d.span.line if d.span else 0, d.span.col if d.span else 0))


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word`, or None when nothing is close."""
    return _closest(word, tuple(sorted(set(choices))))


@functools.lru_cache(maxsize=256)
def _closest(word: str, names: tuple[str, ...]) -> str | None:
    """Computed once per (name, choices): a name misspelled in a sweep is reported at every
    point of the sweep, and difflib is the costly part."""
    if len(names) > _MANY:
        # difflib compares every choice: near a typo in sorted order is where its fix usually is
        at = bisect.bisect_left(names, word)
        names = names[max(0, at - _MANY // 2): at + _MANY // 2]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint naming the closest choice, or None when nothing is close."""
    close = closest(word, choices)
    return f"did you mean '{close}'?" if close else None


def suggestion(word: str, choices: Iterable[str], span: Span | None) -> dict[str, Any]:
    """A did-you-mean as a Diagnostic's `hint` and `fix` (the closest choice written at `span`,
    where the misspelt word is): `Diagnostic(..., **suggestion(word, choices, span))`."""
    close = closest(word, choices)
    if close is None:
        return {"hint": None, "fix": None}
    return {"hint": f"did you mean '{close}'?", "fix": Fix(span, close) if span is not None else None}
