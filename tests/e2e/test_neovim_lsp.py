"""A real editor drives `fleming lsp`: Neovim (Debian's 0.7.2), headless, with its built-in client.

tests/editors/install.sh installs Neovim when the tests run as root; otherwise the test is
skipped with a message unless `nvim` is already on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsp_fixtures import make_project, server_env
from paths import REPO

INSTALL = REPO / "tests" / "editors" / "install.sh"


@pytest.fixture(scope="module")
def nvim() -> str:
    if shutil.which("nvim") is None:
        if os.geteuid() != 0:
            pytest.skip("Neovim is not installed and the tests do not run as root "
                        "(tests/editors/install.sh neovim installs it)")
        subprocess.run(["bash", str(INSTALL), "neovim"], check=True, capture_output=True, timeout=600)
    return shutil.which("nvim") or pytest.fail("tests/editors/install.sh neovim did not install nvim")


def test_neovim_shows_the_diagnostic_a_hover_and_applies_the_fix(nvim: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    spec = project / "specs" / "broken_base.flm"  # `betta = 0.0` in stage rl1, line 71 (1-based)
    out = tmp_path / "nvim.out"
    env = {**server_env(), "FLEMING_SPEC": str(spec), "FLEMING_ROOT": str(project), "FLEMING_OUT": str(out),
           "FLEMING_PYTHON": sys.executable, "FLEMING_LINE": "71", "FLEMING_COL": "3",  # on `lr` of rl1
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    result = subprocess.run([nvim, "--headless", "--clean", "-u", str(REPO / "tests" / "editors" / "neovim.lua")],
                            env=env, cwd=project, capture_output=True, text=True, timeout=120)
    lines = out.read_text().splitlines() if out.exists() else []
    assert result.returncode == 0, (result.stdout, result.stderr, lines)
    diagnostics = [line.split("\t") for line in lines if line.startswith("diagnostic\t")]
    from fleming_dsl.lower.schema import TRAINING_OPTIONS

    grpo_words = ", ".join(sorted({o.word for o in TRAINING_OPTIONS} | {"rewards", "until", "lora"}))
    assert diagnostics == [["diagnostic", "70", "2", "1",
                            f"unknown option 'betta' for stage rl1 | expected one of {grpo_words} | "
                            "hint: did you mean 'beta'?"]]
    hovers = [line.split("\t", 1)[1] for line in lines if line.startswith("hover\t")]
    assert hovers == ["**lr** (stage) |  | peak learning rate |  | type: number · default: 1e-05 · range: > 0"]
    rest = [line.split("\t", 1) for line in lines if line.split("\t", 1)[0] in ("action", "line", "remaining")]
    assert rest == [["action", "Replace 'betta' with 'beta'"], ["line", "  beta = 0.0"], ["remaining", "0"]]
