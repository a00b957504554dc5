"""Every spec in specs/ compiles to its golden files, and the committed generated/ is fresh.

The committed generated/<experiment>/ is the golden copy of each spec's compiled output: it is
compared byte for byte with the emitter's output for the real front end's IR (rewrite with
`fleming compile specs/<stem>.flm`, or `pytest --update-golden`).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from golden_files import comparable, rewrite, tree
from paths import REPO

SPECS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "specs").glob("*.flm"))

from fleming_dsl import compiler as frontend


@pytest.fixture(autouse=True)
def _at_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # IR paths are relative to the project root


def _compiled(spec: str) -> tuple[str, dict[str, str]]:
    from fleming_dsl.compiler import default_out_dir, ir_sha256
    from fleming_dsl.emit.workflow import render
    from fleming_dsl.plan.planner import plan

    exp = frontend.load_experiment(spec)
    digest = hashlib.sha256((REPO / spec).read_bytes()).hexdigest()
    return exp.name, render(plan(exp, default_out_dir(exp)), digest, ir_sha256(exp))


@pytest.mark.parametrize("spec", SPECS)
def test_committed_generated_folder_is_fresh(spec: str, update_golden: bool) -> None:
    name, files = _compiled(spec)
    folder = REPO / "generated" / name
    if update_golden:
        rewrite(folder, files)
    assert comparable(tree(folder)) == comparable(files), f"generated/{name} is stale: run fleming compile {spec}"


@pytest.mark.parametrize("spec", SPECS)
def test_compiling_twice_gives_identical_bytes(spec: str) -> None:
    assert _compiled(spec) == _compiled(spec)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_snakemake_dry_run_and_lint_on_the_compiled_spec(spec: str, tmp_path: Path) -> None:
    """In a scratch project holding (empty stand-ins for) every file the workflow reads."""
    from fleming_dsl.compiler import default_out_dir
    from fleming_dsl.plan.planner import plan

    exp = frontend.load_experiment(spec)
    jobs = plan(exp, default_out_dir(exp)).jobs
    written = {o.path for job in jobs for o in job.outputs}
    for path in {p for job in jobs for p in job.inputs} - written:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    name, files = _compiled(spec)
    rewrite(tmp_path / "generated" / name, files)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    snakefile = str(tmp_path / "generated" / name / "Snakefile")
    outputs = {}
    for args in (["-n", "--quiet", "rules"], ["--lint"]):
        result = subprocess.run([sys.executable, "-m", "snakemake", "-s", snakefile, *args],
                                cwd=elsewhere, text=True, capture_output=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        outputs[args[0]] = result.stdout + result.stderr
    assert "Lints for" not in outputs["--lint"]
    # one rule per job kind: the dry run counts each kind's jobs
    listed = {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", outputs["-n"], re.M)}
    assert listed == {**Counter(job.config.kind for job in jobs), "all": 1, "total": len(jobs) + 1}
