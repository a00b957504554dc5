"""A small project for language-server tests: specs in a git repository, data and prompts linked.

    specs/tiny.flm     the embedded default, as frozen in tests/editors/tiny.flm
    specs/base.flm     tiny.flm as a base spec; specs/child.flm extends it
    specs/broken_base.flm has an unknown option (betta, in rl1); specs/broken_child.flm extends it
    specs/common.flm   an included file (no header) with an invalid regex; specs/uses_common.flm includes it
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from paths import REPO

# specs/tiny.flm as the tests were written against (line numbers matter to them)
TINY = REPO / "tests" / "editors" / "tiny.flm"

CHILD = '''experiment "child" extends "base.flm" {
  workdir = "../runs/child"
}

stage cold_start = sft(base, clean) {
  epochs = 1
  lr = 1e-3
  batch = 8
}
'''


def make_project(root: Path) -> Path:
    """Write the project under `root` and commit it; returns `root`."""
    specs = root / "specs"
    specs.mkdir(parents=True)
    tiny = TINY.read_text(encoding="utf-8")
    (specs / "tiny.flm").write_text(tiny, encoding="utf-8")
    (specs / "base.flm").write_text(tiny.replace('experiment "tiny"', 'experiment "base"'), encoding="utf-8")
    (specs / "child.flm").write_text(CHILD, encoding="utf-8")
    broken = tiny.replace('experiment "tiny"', 'experiment "broken"').replace("  beta = 0.0\n", "  betta = 0.0\n", 1)
    (specs / "broken_base.flm").write_text(broken, encoding="utf-8")
    (specs / "broken_child.flm").write_text(CHILD.replace("base.flm", "broken_base.flm")
                                            .replace('"child"', '"broken-child"'), encoding="utf-8")
    (specs / "common.flm").write_text('reward loose = regex("[A-D")\n', encoding="utf-8")
    (specs / "uses_common.flm").write_text(
        tiny.replace('experiment "tiny"', 'experiment "uses-common"')
        + 'include "common.flm"\n', encoding="utf-8")
    # data may live anywhere (a link out is fine); prompts are source: inside the project
    (root / "data").symlink_to(REPO / "data", target_is_directory=True)
    shutil.copytree(REPO / "prompts", root / "prompts")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["add", "specs"], cwd=root, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "specs"], cwd=root, check=True)
    return root


def server_command() -> list[str]:
    return [sys.executable, "-m", "fleming_dsl.cli", "lsp"]


def server_env() -> dict[str, str]:
    """The server imports this checkout's package, wherever the project lives."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}
