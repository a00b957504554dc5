"""One job contract (issue 22): the planner's inputs are the rule's inputs in the Snakefile and
the files a job hashes into its record, so after an edit of a file a spec reads, `fleming
status`, `fleming diff --rev` and Snakemake's dry run name the same jobs.

The tiny project is compiled by the real CLI inside a git repository; each job's outputs are
fabricated and its record written by the runtime's own `JobContext.record` from the config's
inputs (nothing is trained), in dependency order, newer than everything they read. Besides the
tiny recipe, `contract.flm` extends it with local teacher and grader model folders and a GRPO
reward graded by a rubric: the inputs a job's record once left out."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest
from paths import REPO
from plan_fixtures import fabricate_outputs

from fleming_dsl.compiler import load_experiment
from fleming_dsl.plan.planner import plan
from fleming_dsl.review import status
from fleming_dsl.runtime.jobs import recorded_inputs
from fleming_dsl.runtime.jobs.context import JobContext

GIT = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=300)


def _fleming(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(cwd, sys.executable, "-m", "fleming_dsl.cli", *args)


CONTRACT = """experiment "contract" extends "tiny.flm" { }

model teacher = local("../models/teacher") { backend = transformers() }
model judge = local("../models/judge") { backend = transformers() }
prompt grading = template("../prompts/rubric_grader.j2")
reward graded = rubric(grader = judge, prompt = grading)

stage rl2 = grpo(rl1, clean) {
  rewards = 1.0 * correct + 0.5 * graded
  generations = 4
  batch = 8
  max_steps = 2
}
"""


def project(tmp_path: Path, spec: str) -> Path:
    """The project with `spec` compiled and every job's outputs and record written."""
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    (tmp_path / "specs" / "contract.flm").write_text(CONTRACT)
    # a GRPO rubric reads grading variables (conversation, response, ...): the built-in prompt
    shutil.copy(REPO / "templates" / "rubric" / "grader.j2", tmp_path / "prompts" / "rubric_grader.j2")
    for model in ("teacher", "judge"):
        (tmp_path / "models" / model).mkdir(parents=True)
        (tmp_path / "models" / model / "config.json").write_text("{}\n")
    (tmp_path / ".gitignore").write_text("generated/\nruns/\n")
    _run(tmp_path, "git", "init", "-q", ".")
    _run(tmp_path, *GIT, "add", ".")
    assert _run(tmp_path, *GIT, "commit", "-q", "-m", "tiny").returncode == 0
    compiled = _fleming(tmp_path, "compile", spec)
    assert compiled.returncode == 0, compiled.stderr
    exp = load_experiment(spec)
    workflow = plan(exp, f"generated/{exp.name}")
    writer = {o.path: job.name for job in workflow.jobs for o in job.outputs}
    dag = nx.DiGraph((writer[p], job.name) for job in workflow.jobs for p in job.inputs if p in writer)
    dag.add_nodes_from(job.name for job in workflow.jobs)
    by_name = {job.name: job for job in workflow.jobs}
    stamp = time.time() + 10  # after the compile: each job's files newer than what it reads
    for name in nx.lexicographical_topological_sort(dag):
        job, stamp = by_name[name], stamp + 10
        fabricate_outputs(tmp_path, job, stamp)
        raw = (tmp_path / workflow.out_dir / "jobs" / f"{name}.json").read_bytes()
        record = JobContext(config=job.config, config_sha256=hashlib.sha256(raw).hexdigest(),
                            inputs=recorded_inputs(job.config)).record()
        meta = tmp_path / job.config.meta
        meta.write_text(json.dumps(record))
        os.utime(meta, (stamp, stamp))
    return tmp_path


def by_status(root: Path, out: str) -> set[str]:
    return {s.job for s in status.job_states(status.emitted_jobs(root / out), root)
            if s.state != "up to date"}


def by_diff(root: Path, spec: str) -> set[str]:
    result = _fleming(root, "diff", "--json", "--rev", "HEAD", spec)
    assert result.returncode in (0, 1), result.stderr
    return {j["job"] for j in json.loads(result.stdout)["plan"]["jobs"]
            if j["reason"] not in ("removed", "recut")}


def by_snakemake(root: Path, out: str) -> set[str]:
    result = _run(root, sys.executable, "-m", "snakemake", "-s", f"{out}/Snakefile", "-n", "-p",
                  "--cores", "1")
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"fleming job \w+ --config \S*jobs/(\w+)\.json", result.stdout))


@pytest.mark.parametrize("spec", ["specs/tiny.flm", "specs/contract.flm"])
def test_nothing_to_run_after_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.chdir(tmp_path)
    root, out = project(tmp_path, spec), f"generated/{Path(spec).stem}"
    assert (by_status(root, out), by_diff(root, spec), by_snakemake(root, out)) == (set(), set(), set())


@pytest.mark.parametrize("spec, edited, reader", [
    ("specs/tiny.flm", "prompts/vignette.j2", "synthesize_questions"),  # a prompt template
    ("specs/tiny.flm", "prompts/grader.j2", "filter_clean"),  # the difficulty grader's rubric
    ("specs/tiny.flm", "data/eval/medqa_test.jsonl", "eval_rl2"),  # a dataset file
    ("specs/contract.flm", "prompts/rubric_grader.j2", "grpo_rl2"),  # a GRPO reward's rubric prompt
    # a model folder (tracked here: `diff --rev` knows only what git holds at the revision), a
    # file in it replaced the way tools save (a new file renamed over the old one), which moves
    # the folder's mtime: Snakemake judges a folder by its own mtime, status and diff by content
    ("specs/contract.flm", "models/judge/config.json", "grpo_rl2"),  # the rubric's grader
    ("specs/contract.flm", "models/teacher/config.json", "synthesize_questions"),  # the teacher
])
def test_an_edited_file_reruns_the_same_jobs_in_all_three(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, edited: str, reader: str) -> None:
    monkeypatch.chdir(tmp_path)
    root, out = project(tmp_path, spec), f"generated/{Path(spec).stem}"
    path = root / edited
    saved = path.with_name(path.name + ".tmp")
    saved.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    os.replace(saved, path)
    later = time.time() + 10_000  # after the fabricated outputs, as a real edit would be
    for touched in (path, path.parent):
        os.utime(touched, (later, later))
    named = by_status(root, out)
    assert reader in named
    assert by_diff(root, spec) == named
    assert by_snakemake(root, out) == named
