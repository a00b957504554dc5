"""The project boundary: which files a spec may read as source, and where it may write.

The project root is the folder `fleming` runs in (the current working directory), the same
folder the generated workflow names every path relative to. A spec's *source* (included
files, base specs, prompt templates and their jinja2 includes) must lie inside it, after
symlinks are resolved, so a spec cannot make the compiler read or print a file such as
/proc/self/environ or /etc/passwd. Folders named in the environment variable
`FLEMING_ALLOW_PATHS` (separated by ':') are trusted as well, for a team's shared specs outside
the repository. Data files (graphs, datasets, model folders) may live anywhere: clusters keep
them on shared storage, and the compiler never prints their content.

Outputs (the experiment's `workdir`) must lie inside the project root too: the generated
workflow names them relative to it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from fleming_dsl.ir import Span

ALLOW_ENV = "FLEMING_ALLOW_PATHS"

__all__ = [
    "ALLOW_ENV",
    "allowed_roots",
    "allowing",
    "file_span",
    "inside",
    "outside_message",
    "safe_is_file",
    "spec_problem",
    "workdir_problem",
]


@contextlib.contextmanager
def allowing(folder: Path) -> Iterator[None]:
    """Trust `folder` too while the block runs (`fleming diff --rev` reads a revision's specs
    from a temporary copy whose other files link back into the repository)."""
    before = os.environ.get(ALLOW_ENV)
    os.environ[ALLOW_ENV] = os.pathsep.join(p for p in (str(folder), before) if p)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ALLOW_ENV, None)
        else:
            os.environ[ALLOW_ENV] = before


def allowed_roots(root: Path) -> tuple[Path, ...]:
    """The resolved folders source files may come from: the project root, then FLEMING_ALLOW_PATHS."""
    extra = [p for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p.strip()]
    return tuple(_resolve(Path(p)) for p in [str(root), *extra])


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop or a name too long: judge the text as written
        return Path(os.path.abspath(path))


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, with symlinks resolved, lies under the project root or an allowed folder."""
    real = _resolve(path)
    return any(real == r or r in real.parents for r in allowed_roots(root))


def outside_message(what: str, written: str) -> str:
    return f"{what} '{written}' lies outside the project"


def outside_hint() -> str:
    return (f"source files (includes, bases, prompt templates) must be inside the project root "
            f"(the folder fleming runs in); list other trusted folders in {ALLOW_ENV}")


def spec_problem(path: Path, root: Path, what: str, written: str) -> tuple[str, str] | None:
    """(why, hint) when `path` may not be read as a spec, None when it may. Every file read as a
    spec (the one a command names, an editor's document, an include, a base) is held to the
    same rule: a .flm file inside the project, judged after symlinks are resolved, so that a
    link such as `specs/env.flm -> /proc/self/environ` or `-> ../.env` is never read, and a
    parse error can never quote a file that is not a spec."""
    if path.suffix != ".flm":
        return f"{what} file must be a .flm spec: {written}", "fleming reads .flm specs only"
    if not inside(path, root):
        return outside_message(f"{what} file", written), outside_hint()
    if _resolve(path).suffix != ".flm":
        return (f"{what} file '{written}' is a link to a file that is not a .flm spec",
                "fleming reads .flm specs only; link to the spec itself or copy it")
    return None


def file_span(shown: str) -> Span:
    """The place of an error about a whole file: its first character (nothing of it is quoted)."""
    return Span(file=shown, line=1, col=1, end_line=1, end_col=2)


def safe_is_file(path: Path) -> tuple[bool, str | None]:
    """(is a regular file, why not when the OS refused to say: e.g. 'File name too long')."""
    try:
        return path.is_file(), None
    except OSError as err:
        return False, err.strerror or type(err).__name__
    except ValueError:  # a NUL character in the name
        return False, "the name holds a NUL character"


def workdir_problem(text: str, resolved: Path, root: Path) -> tuple[str, str] | None:
    """(why, hint) when a workdir cannot be used, None when it can: it must be a folder inside
    the project root, free of characters Snakemake reads as wildcards or that end a line."""
    bad = sorted({c for c in text if c in "{}" or c in "\n\r\t\0"})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (f"'workdir' may not contain {shown}",
                "Snakemake reads {...} in an output path as a wildcard; write the folder name out")
    real = _resolve(resolved)
    base = _resolve(root)
    hint = 'jobs write under the project root: e.g. workdir = "runs/<name>" (relative to the spec\'s folder)'
    if real == base:
        return "'workdir' is the project root itself: jobs would write among the sources", hint
    if base not in real.parents:
        return f"'workdir' must be a folder inside the project, got '{text}'", hint
    return None
