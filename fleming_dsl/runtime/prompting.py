"""Prompt rendering: jinja2 templates from spec-declared paths, in a sandbox.

Prompt templates come from the experiment's repository, not from us, so they are rendered in
jinja2's `ImmutableSandboxedEnvironment` (no attribute access to dunders, no calling unsafe
methods, no changing a list or dict while it is iterated, so a loop cannot extend itself) with
`StrictUndefined` (a misspelt variable is an error, not an empty string). `{% include %}` and
`{% import %}` read only files inside the template's own folder, symlinks resolved: a link in
prompts/ to /etc/passwd is refused. A render is bounded in time (RENDER_SECONDS) and size
(MAX_CHARS), and so is loading: no expression is evaluated while a template compiles (jinja2
folds constants then, before any bound starts: `{{ 9 ** (9 ** 9) }}` hung the job), and the
operations whose one step in C grows with the numbers written (`**`, `*`, `%`, a filter's width,
a `str.format` field's width or precision) are judged before they run (vocabulary.py, the same words `fleming check` uses). Every
failure is a `PromptError` with one line naming the template file.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    SecurityError,
)
from markupsafe import Markup

from fleming_dsl.errors import FlemingError
from fleming_dsl.vocabulary import MAX_PROMPT_CHARS as MAX_CHARS
from fleming_dsl.vocabulary import (
    format_spec_problem,
    template_filter_problem,
    template_operation_problem,
)

RENDER_SECONDS = 10.0  # one prompt: a template loop that runs longer is a bug, not a prompt


class PromptError(FlemingError, ValueError):
    """A template that cannot be loaded or rendered (one line naming the file)."""


class _ConfinedLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that serves only files whose real path (symlinks resolved) lies
    inside its folder."""

    def get_source(self, environment: jinja2.Environment, template: str):
        source, filename, uptodate = super().get_source(environment, template)
        root = os.path.realpath(self.searchpath[0])
        if os.path.commonpath([root, os.path.realpath(filename)]) != root:
            raise _Outside(template)
        return source, filename, uptodate


class _Outside(jinja2.TemplateNotFound):
    """A template whose real path lies outside the prompt folder."""


class _TooLong(FlemingError):
    pass


class _Unfolded(CodeGenerator):
    """Code generation that evaluates nothing: an output's expression is computed when the
    template renders, inside the bounds, never while it compiles."""

    def _output_child_to_const(self, node, frame, finalize):
        if isinstance(node, (nodes.TemplateData, nodes.Const)):
            return super()._output_child_to_const(node, frame, finalize)
        raise nodes.Impossible()


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with the operations whose cost grows with their numbers judged first."""

    code_generator_class = _Unfolded
    intercepted_binops = frozenset({"**", "*", "%"})

    def call_binop(self, context, operator, left, right):
        problem = template_operation_problem(operator, left, right)
        if problem is not None:
            raise SecurityError(problem)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value):
        """A string's `format`/`format_map` as jinja2's sandbox wraps it, through a formatter that
        judges each field's spec (nested fields filled in) before it formats the field."""
        if super().wrap_str_format(value) is None:
            return None  # not a string's format method
        text, by_map = value.__self__, value.__name__ == "format_map"
        formatter = (_BoundedEscapeFormatter(self, escape=text.escape) if isinstance(text, Markup)
                     else _BoundedFormatter(self))

        @functools.wraps(value)
        def bounded(*args: Any, **kwargs: Any) -> str:
            if by_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument and no keywords")
                args, kwargs = (), args[0]
            return type(text)(formatter.vformat(text, args, kwargs))
        return bounded


class _BoundedSpecs:
    def format_field(self, value: Any, format_spec: str) -> Any:
        problem = format_spec_problem(format_spec)
        if problem is not None:
            raise SecurityError(problem)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _BoundedFormatter(_BoundedSpecs, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_BoundedSpecs, SandboxedEscapeFormatter):
    pass


def _bounded_filter(name: str, func: Callable) -> Callable:
    """`func` with its arguments after the filtered value judged first."""
    skip = 2 if getattr(func, "jinja_pass_arg", None) else 1  # a context comes before the value

    @functools.wraps(func)  # keeps jinja_pass_arg: jinja2 still passes the context
    def call(*args, **kwargs):
        problem = template_filter_problem(name, args[skip:] + tuple(kwargs.values()),
                                          args[skip - 1] if len(args) >= skip else None)
        if problem is not None:
            raise SecurityError(problem)
        return func(*args, **kwargs)
    return call


@functools.lru_cache(maxsize=None)
def _environment(directory: str) -> ImmutableSandboxedEnvironment:
    env = _BoundedEnvironment(
        optimized=False,  # the optimizer folds constants at compile time
        loader=_ConfinedLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    return env


@functools.lru_cache(maxsize=64)
def load_template(path: str) -> jinja2.Template:
    """The compiled template at `path` (a file, relative to the working directory or absolute)."""
    file = Path(path)
    if not file.is_file():
        raise PromptError(f"{path}: prompt template not found")
    try:
        return _environment(str(file.parent.resolve())).get_template(file.name)
    except jinja2.TemplateSyntaxError as err:
        raise PromptError(f"{path}:{err.lineno}: template syntax error: {err.message}") from None
    except _Outside as err:
        raise _failure(path, err) from None


def _failure(path: str, err: Exception) -> PromptError:
    if isinstance(err, _Outside):
        return PromptError(f"{path}: template reads '{err.name}', which lies outside the prompt folder "
                           "(symlinks are resolved)")
    if isinstance(err, _TooLong):
        return PromptError(f"{path}: template took longer than {RENDER_SECONDS:g} s to render")
    if isinstance(err, SecurityError):
        return PromptError(f"{path}: template blocked by the sandbox: {err}")
    if isinstance(err, jinja2.UndefinedError):
        return PromptError(f"{path}: template uses an undefined variable: {err.message}")
    return PromptError(f"{path}: template failed to render: {type(err).__name__}: {err}")


def _bounded(path: str, produce: Callable[[], Iterator[str]]) -> str:
    """The text `produce` yields, within RENDER_SECONDS and MAX_CHARS. The time bound is checked
    between chunks and, in the main thread, by a timer signal, so a loop that yields nothing
    is stopped too."""
    deadline = time.monotonic() + RENDER_SECONDS
    timer = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")

    def expire(signum, frame):
        raise _TooLong()

    previous = signal.signal(signal.SIGALRM, expire) if timer else None
    started = time.monotonic()
    outer = signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS) if timer else (0.0, 0.0)
    parts, size = [], 0
    try:
        for chunk in produce():
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_CHARS:
                raise PromptError(f"{path}: rendered prompt is longer than {MAX_CHARS:,} characters")
            if time.monotonic() > deadline:
                raise _TooLong()
    except PromptError:
        raise
    except Exception as err:  # noqa: BLE001 - any template failure becomes one located line
        raise _failure(path, err) from None
    finally:
        if timer:  # put back whatever timer the caller had running
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer[0] > 0:
                left = max(outer[0] - (time.monotonic() - started), 0.001)
                signal.setitimer(signal.ITIMER_REAL, left, outer[1])
    return "".join(parts)


def render(path: str, **variables: Any) -> str:
    """Render the template at `path` with `variables`; surrounding whitespace is stripped."""
    template = load_template(path)
    return _bounded(path, lambda: template.generate(**variables)).strip()


def call_macro(path: str, name: str, **variables: Any) -> str:
    """Call the macro `name` exported by the template at `path` with `variables` (the template
    teacher uses the prompt's own `stem` macro, so editing the template changes both teacher
    paths alike). The template body is evaluated with the same variables."""
    template = load_template(path)
    module = []

    def body() -> Iterator[str]:
        module.append(template.make_module(variables))
        yield ""

    _bounded(path, body)
    macro = getattr(module[0], name, None)
    if macro is None:
        raise PromptError(f"{path}: template defines no macro {name!r}")
    return _bounded(path, lambda: iter((str(macro(**variables)),))).strip()


def optional_macro(path: str, name: str, context: dict[str, Any], **args: Any) -> str | None:
    """Call the macro `name` of the template at `path` with `args` (the body evaluated with
    `context`, the variables the prompt is rendered with); None when it defines no such macro.
    How the template teacher lets a prompt decide part of its answer (e.g. `answer_as`)."""
    template = load_template(path)
    module = []

    def body() -> Iterator[str]:
        module.append(template.make_module(context))
        yield ""

    _bounded(path, body)
    macro = getattr(module[0], name, None)
    if macro is None:
        return None
    return _bounded(path, lambda: iter((str(macro(**args)),))).strip()
