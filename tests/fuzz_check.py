"""One fuzz case of `fleming check`: a seeded mutation of a shipped spec, or a whole-project shape
(the spec linked out of the project, a prompt template heavy with constants), checked in-process
through the CLI's `main` as `fleming check` would be. Shared by the suite's fuzz test
(tests/unit/spec/test_fuzz.py) and the larger rerunnable run (bench/fuzz_check.py).

A case passes when it exits 0 or 1 without raising, every rejection starts with a located line
`file:line:col: error: ...`, and nothing of a file that is not a spec reaches the output.
"""

from __future__ import annotations

import io
import random
import re
import shutil
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from spec_mutations import PROJECT_SHAPES, mutate

from fleming_dsl.cli.main import main

LOCATED = re.compile(r"^[^\n:]+:\d+:\d+: error: \S")
LEAKS = ("s3cr3t", "root:x:0:")  # the planted secret, the first line of /etc/passwd
PROJECT_SHARE = 0.1  # of cases: a whole-project shape rather than a text mutation


@dataclass(frozen=True)
class Outcome:
    problem: str | None  # "traceback: ...", "exit 2", "unlocated: ...", "leak"; None when fine
    code: int | None
    seconds: float


def copy_project(repo: Path, root: Path) -> Path:
    """A copy of the shipped specs, data and prompts (the paths the specs name)."""
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(repo / folder, root / folder)
    return root


def run_case(root: Path, name: str, original: str, rng: random.Random) -> Outcome:
    """Mutate specs/<name> (or the project) by `rng`, check it, put everything back."""
    spec = root / "specs" / name
    if rng.random() < PROJECT_SHARE:
        restore = rng.choice(PROJECT_SHAPES)(root, spec, rng)
    else:
        spec.write_bytes(mutate(original, rng))
        restore = lambda: spec.write_text(original, encoding="utf-8")  # noqa: E731
    try:
        return _check(root, spec)
    finally:
        restore()


def _check(root: Path, spec: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["check", str(spec.relative_to(root))])
    except BaseException as crash:  # noqa: BLE001 - the finding a fuzzer exists for
        return Outcome(f"traceback: {type(crash).__name__}: {crash}"[:300], None,
                       time.perf_counter() - started)
    seconds = time.perf_counter() - started
    text = err.getvalue()
    first = text.splitlines()[0] if text else ""
    if any(leak in text + out.getvalue() for leak in LEAKS):
        return Outcome("leak: a file that is not a spec was printed", code, seconds)
    if code not in (0, 1):
        return Outcome(f"exit {code}: {first}"[:300], code, seconds)
    if code == 1 and not LOCATED.match(first):
        return Outcome(f"unlocated: {first!r}"[:300], code, seconds)
    return Outcome(None, code, seconds)
