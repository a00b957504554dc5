"""The tiny recipe's data jobs, run once per test session with the local profile.

Three slow tests (tests/e2e/test_sharded_tiny.py, test_slurm_shards.py, test_slurm_tiny.py)
compare data made another way (cut into shards, through SLURM) with the bytes of this one run;
running it once for all of them saves two runs of the data jobs. It does not touch the tiny
end-to-end test's own run. Consumers only read the project; one that changes it works on a copy
(`copy_run`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

SNAKEFILE = "generated/tiny/Snakefile"
LOCAL_PROFILE = "generated/tiny/profiles/local"
CLEAN = "runs/tiny/data/clean.jsonl"  # the last data job's output: every data job runs for it


def copy_inputs(root: Path) -> Path:
    """A fresh project at `root`: the specs, data and prompts, and the sharded tiny variant."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "tests" / "specs").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "specs" / "tiny_sharded.flm", root / "tests" / "specs")
    return root


def copy_run(project: Path, root: Path) -> Path:
    """A copy of `project` at `root`, its runs and Snakemake's records included, with the files'
    times kept: Snakemake finds the copy as up to date as the original."""
    return Path(shutil.copytree(project, root, symlinks=True))


def compile_spec(root: Path, spec: str) -> None:
    compiled = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "compile", spec], cwd=root,
                              text=True, capture_output=True, timeout=120, check=False)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


@pytest.fixture(scope="session")
def tiny_local_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project where `specs/tiny.flm` was compiled and its data jobs run with the local profile
    (read only)."""
    root = copy_inputs(tmp_path_factory.mktemp("tiny-local-data"))
    compile_spec(root, "specs/tiny.flm")
    ran = subprocess.run([sys.executable, "-m", "snakemake", CLEAN, "-s", SNAKEFILE, "--profile",
                          LOCAL_PROFILE, "--cores", "2"], cwd=root, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert ran.returncode == 0, ran.stdout[-4000:]
    return root
