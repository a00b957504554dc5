"""Seeded mutation fuzzing of `fleming check` over every spec in specs/ (issues 11 and 28).

Each case takes one shipped spec and applies one mutation (tests/spec_mutations.py): a token
mutation (delete, duplicate, swap, replace with a keyword, a bracket, an absurd number or a long
string), a structural one (delete or duplicate a line, drop a closing bracket, truncate, nest 500
deep, 100 unknown options), a shape that found issue 28 (a huge number in a numeric option,
sweeps over unknown names, a non-ASCII letter starting a line), an encoding one (Latin-1,
UTF-16, a BOM, an invalid byte, a NUL), or a whole-project one (the spec a symlink out of the
project or to a file that is not a spec, a prompt template heavy with constants). Each case must
exit 0 or 1, never raise; start every rejection with a located line `file:line:col: error: ...`;
print nothing of a file that is not a spec; and finish within PER_CASE_SECONDS
(tests/fuzz_check.py). The cases are fixed by their seeds, so a failure names a case that
reproduces; bench/fuzz_check.py runs more of them with other seeds.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fuzz_check import copy_project, run_case
from paths import REPO

CASES_PER_SPEC = 130  # x 5 specs: 650 cases per run
PER_CASE_SECONDS = 10.0  # generous: a shared CI machine; a typical case takes ~0.05 s
SPECS = sorted(p.name for p in (REPO / "specs").glob("*.flm"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(REPO, tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", SPECS)
def test_mutated_specs_never_crash_and_every_rejection_is_located(
        name: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("FLEMING_CACHE_DIR", str(project / ".cache"))
    original = (project / "specs" / name).read_text(encoding="utf-8")
    failures, rejected = [], 0
    for case in range(CASES_PER_SPEC):
        outcome = run_case(project, name, original, random.Random(f"{name}:{case}"))
        if outcome.problem is not None:
            failures.append(f"case {case}: {outcome.problem}")
        elif outcome.seconds > PER_CASE_SECONDS:
            failures.append(f"case {case}: took {outcome.seconds:.1f} s")
        rejected += outcome.code == 1
    assert failures == []
    assert rejected > CASES_PER_SPEC // 2  # the mutations do reach the checks
