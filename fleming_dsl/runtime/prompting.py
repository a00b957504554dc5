"""Prompt rendering: jinja2 templates from spec-declared paths, in a sandbox.

Prompt templates come from the experiment's repository, not from us, so they are rendered in a
`SandboxedEnvironment` (no attribute access to dunders, no calling unsafe methods) with
`StrictUndefined` (a misspelt variable is an error, not an empty string). Every failure is a
`PromptError` with one line naming the template file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from fleming_dsl.errors import FlemingError


class PromptError(FlemingError, ValueError):
    """A template that cannot be loaded or rendered (one line naming the file)."""


@functools.lru_cache(maxsize=None)
def _environment(directory: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


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


def _failure(path: str, err: Exception) -> PromptError:
    if isinstance(err, SecurityError):
        return PromptError(f"{path}: template blocked by the sandbox: {err}")
    if isinstance(err, jinja2.UndefinedError):
        return PromptError(f"{path}: template uses an undefined variable: {err.message}")
    return PromptError(f"{path}: template failed to render: {type(err).__name__}: {err}")


def render(path: str, **variables: Any) -> str:
    """Render the template at `path` with `variables`; surrounding whitespace is stripped."""
    template = load_template(path)
    try:
        return template.render(**variables).strip()
    except Exception as err:  # noqa: BLE001 - any template failure becomes one located line
        raise _failure(path, err) from None


def call_macro(path: str, name: str, **variables: Any) -> str:
    """Call the macro `name` exported by the template at `path` with `variables` (the template
    teacher uses the prompt's own `stem` macro, so editing the template changes both teacher
    paths alike). The template body is evaluated with the same variables."""
    template = load_template(path)
    try:
        module = template.make_module(variables)
    except Exception as err:  # noqa: BLE001
        raise _failure(path, err) from None
    macro = getattr(module, name, None)
    if macro is None:
        raise PromptError(f"{path}: template defines no macro {name!r}")
    try:
        return str(macro(**variables)).strip()
    except Exception as err:  # noqa: BLE001
        raise _failure(path, err) from None


def optional_macro(path: str, name: str, context: dict[str, Any], **args: Any) -> str | None:
    """Call the macro `name` of the template at `path` with `args` (the body evaluated with
    `context`, the variables the prompt is rendered with); None when it defines no such macro.
    How the template teacher lets a prompt decide part of its answer (e.g. `answer_as`)."""
    template = load_template(path)
    try:
        module = template.make_module(context)
    except Exception as err:  # noqa: BLE001
        raise _failure(path, err) from None
    macro = getattr(module, name, None)
    if macro is None:
        return None
    try:
        return str(macro(**args)).strip()
    except Exception as err:  # noqa: BLE001
        raise _failure(path, err) from None
