"""Seeded mutation fuzzing of `fleming check` over every spec in specs/ (issue 11).

Each case takes one shipped spec and applies one mutation: a token mutation (delete, duplicate,
swap, replace with a keyword, a bracket, an absurd number or a long string), a structural one
(delete or duplicate a line, drop a closing bracket, truncate, nest 500 deep, 100 unknown
options) or an encoding one (Latin-1, UTF-16, a BOM, an invalid byte, a NUL). The mutated text
is checked in-process through the CLI's `main`, as `fleming check` would, and must:

- exit 0 or 1, never raise (a traceback);
- when it exits 1, start its error output with a located line `file:line:col: error: ...`;
- finish within PER_CASE_SECONDS.

The cases are fixed by their seeds, so a failure names a case that reproduces.
"""

from __future__ import annotations

import io
import random
import re
import shutil
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from paths import REPO
from spec_mutations import mutate

from fleming_dsl.cli.main import main

CASES_PER_SPEC = 130  # x 4 specs: 520 cases per run
PER_CASE_SECONDS = 10.0  # generous: a shared CI machine; a typical case takes ~0.05 s
SPECS = sorted(p.name for p in (REPO / "specs").glob("*.flm"))
LOCATED = re.compile(r"^[^\n:]+:\d+:\d+: error: \S")


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped specs, data and prompts (the paths the specs name)."""
    root = tmp_path_factory.mktemp("fuzz")
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, root / folder)
    return root


def check(root: Path, spec: Path) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["check", str(spec.relative_to(root))])
    return code, err.getvalue(), time.perf_counter() - started


@pytest.mark.parametrize("name", SPECS)
def test_mutated_specs_never_crash_and_every_rejection_is_located(
        name: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    original = (project / "specs" / name).read_text(encoding="utf-8")
    # the mutant replaces the spec itself, so a spec that extends it reads the mutant too
    spec = project / "specs" / name
    failures, rejected = [], 0
    try:
        for case in range(CASES_PER_SPEC):
            rng = random.Random(f"{name}:{case}")
            data = mutate(original, rng)
            spec.write_bytes(data)
            try:
                code, err, seconds = check(project, spec)
            except Exception as crash:  # noqa: BLE001 - the finding this test exists for
                failures.append(f"case {case}: {type(crash).__name__}: {crash}"[:300])
                continue
            first = err.splitlines()[0] if err else ""
            if code not in (0, 1):
                failures.append(f"case {case}: exit {code}: {first}")
            elif code == 1 and not LOCATED.match(first):
                failures.append(f"case {case}: unlocated: {first!r}"[:300])
            elif seconds > PER_CASE_SECONDS:
                failures.append(f"case {case}: took {seconds:.1f} s")
            rejected += code == 1
    finally:
        spec.write_text(original, encoding="utf-8")
    assert failures == []
    assert rejected > CASES_PER_SPEC // 2  # the mutations do reach the checks
