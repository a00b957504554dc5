"""The tiny recipe's data jobs cut into shards, through real Snakemake with the local profile.

In a copy of the project where `specs/tiny.flm`'s data jobs ran unsharded (the session's shared
run, tests/tiny_data_fixtures.py), the sharded variant (`tests/specs/tiny_sharded.flm`, the same experiment) is compiled over it, and Snakemake
finds nothing to do (a re-cut changes no data). Then the data is made again by the shards: two
of synthesize's three shards first, the third killed as it runs (as `scancel` would), and the
next invocation runs that shard alone before the gathers. The merged data must be
byte-identical to the unsharded run's.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from tiny_data_fixtures import CLEAN as TARGET
from tiny_data_fixtures import LOCAL_PROFILE as PROFILE
from tiny_data_fixtures import SNAKEFILE, copy_run

pytestmark = pytest.mark.slow

DATA = ("questions.jsonl", "cot.jsonl", "clean.jsonl", "clean.review.jsonl")
SHARDS = "runs/tiny/shards/synthesize_questions"


def _fleming(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleming_dsl.cli", *args], cwd=project,
                          text=True, capture_output=True, timeout=300)


def _snakemake(project: Path, *targets: str, cores: int = 2) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", *targets, "-s", SNAKEFILE, "--profile", PROFILE,
         "--cores", str(cores)], cwd=project, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen, timeout: int = 600) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _digests(project: Path) -> dict[str, str]:
    data = project / "runs" / "tiny" / "data"
    return {name: hashlib.sha256((data / name).read_bytes()).hexdigest() for name in DATA}


def _kill_when_started(process: subprocess.Popen, marker: str, killed: list[int]) -> None:
    """SIGTERM the job process of `process` given `marker` as an argument (the job's config
    file; the shell around it holds it inside one longer string), as `scancel` would."""
    parent = psutil.Process(process.pid)
    while process.poll() is None:
        for child in parent.children(recursive=True):
            try:
                if any(part.endswith(marker) for part in child.cmdline()):
                    child.terminate()
                    killed.append(child.pid)
                    return
            except psutil.Error:
                continue
        time.sleep(0.02)


def _ran(log: str, job: str) -> bool:
    """Whether Snakemake ran `job`: rules are per job kind, so a job is known by its log file
    (`runs/tiny/logs/<job>.log`), which Snakemake prints for every job it schedules."""
    return f"log: runs/tiny/logs/{job}.log" in log


@pytest.fixture
def project(tmp_path: Path, tiny_local_data: Path) -> Path:
    """A copy of the project where the unsharded data jobs ran (times kept: nothing is stale)."""
    return copy_run(tiny_local_data, tmp_path / "sharded-tiny")


def test_shards_resume_alone_and_merge_to_the_unsharded_bytes(project: Path) -> None:
    code, log = _finish(_snakemake(project, TARGET, "-n"))
    assert code == 0 and "Nothing to be done" in log, log[-3000:]  # the copy is up to date
    unsharded = _digests(project)

    # The same data cut into shards: nothing to re-run, and `fleming diff` says why.
    diff = _fleming(project, "diff", "specs/tiny.flm", "tests/specs/tiny_sharded.flm")
    assert "Plan: 0 to run (0 new, 0 changed, 0 invalidated), 0 removed, 15 re-cut" in diff.stdout
    assert "% distill_cot_shard1of2" in diff.stdout and "re-cut, no data change" in diff.stdout
    compiled = _fleming(project, "compile", "tests/specs/tiny_sharded.flm")
    assert compiled.returncode == 0, compiled.stderr
    code, log = _finish(_snakemake(project, TARGET, "-n"))
    assert code == 0 and "Nothing to be done" in log, log[-3000:]

    # Make the data again, by the shards this time.
    for name in DATA:
        (project / "runs" / "tiny" / "data" / name).unlink()
    code, log = _finish(_snakemake(project, f"{SHARDS}/synthesize_questions_shard1of3.jsonl",
                                   f"{SHARDS}/synthesize_questions_shard3of3.jsonl"))
    assert code == 0, log[-3000:]
    finished = {p: p.stat().st_mtime_ns for p in (project / SHARDS).glob("*.meta.json")}
    assert len(finished) == 2

    killed: list[int] = []
    run = _snakemake(project, TARGET)
    watcher = threading.Thread(target=_kill_when_started,
                               args=(run, "synthesize_questions_shard2of3.json", killed))
    watcher.start()
    code, log = _finish(run)
    watcher.join(10)
    assert killed and code != 0, log[-3000:]
    assert not (project / SHARDS / "synthesize_questions_shard2of3.jsonl").exists()  # nothing half-written
    assert not (project / "runs" / "tiny" / "data" / "questions.jsonl").exists()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not redone

    code, log = _finish(_snakemake(project, TARGET))
    assert code == 0, log[-3000:]
    assert _ran(log, "synthesize_questions_shard2of3")
    assert not _ran(log, "synthesize_questions_shard1of3")
    assert not _ran(log, "synthesize_questions_shard3of3")
    assert _ran(log, "synthesize_questions") and _ran(log, "filter_clean_shard2of2")
    assert _digests(project) == unsharded
    assert not list((project / "runs" / "tiny" / "shards").rglob("*.jsonl"))  # parts merged

    # Cut again (3 shards -> 2): still nothing to do.
    spec = project / "tests" / "specs" / "tiny_sharded.flm"
    spec.write_text(spec.read_text().replace("items_per_shard = 700", "items_per_shard = 1000"))
    assert _fleming(project, "compile", "tests/specs/tiny_sharded.flm").returncode == 0
    code, log = _finish(_snakemake(project, TARGET, "-n"))
    assert code == 0 and "Nothing to be done" in log, log[-3000:]
