"""The command line under bad conditions: a closed stdout, a swept stage named in explain."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from paths import REPO

from fleming_dsl.cli.main import main


@pytest.mark.parametrize("argv", [
    ["schema"], ["check", "specs/tiny.flm"], ["graph", "specs/tiny.flm"],
    ["explain", "specs/tiny.flm", "grpo_rl1"], ["fmt", "--stdout", "specs/tiny.flm"],
])
def test_a_closed_stdout_ends_quietly(argv: list[str]) -> None:
    """`fleming schema | head`: the reader went away before we wrote; no traceback, exit 0."""
    read, write = os.pipe()
    os.close(read)  # every write to `write` now fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", *argv], cwd=REPO, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


def test_explain_a_swept_stage_by_its_declared_name(capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["explain", "specs/fleming_r1_7b.flm", "rl1"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("job ")] == [
        "job grpo_rl1_beta_0p001 (grpo) from specs/fleming_r1_7b.flm:10",
        "job grpo_rl1_beta_0p0 (grpo) from specs/fleming_r1_7b.flm:10"]


def test_explain_an_unknown_name_lists_the_jobs(capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["explain", "specs/fleming_r1_7b.flm", "rl9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no job 'rl9' in experiment 'fleming-r1-7b' (jobs: ")
    assert "grpo_rl1_beta_0p001" in err


def test_fmt_reads_specs_as_check_does(tmp_path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # fmt, like check, reads specs inside the project only
    latin = tmp_path / "l.flm"
    latin.write_bytes('experiment "x" { seed = 1 }\n# café\n'.encode("latin-1"))
    assert main(["fmt", "--check", "l.flm"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "l.flm:2:6: error: the file is not UTF-8: byte 0xe9 cannot start a character here")
    bom = tmp_path / "b.flm"
    bom.write_bytes(b'\xef\xbb\xbfexperiment "x" { seed = 1 }\n')
    assert main(["fmt", "--stdout", "b.flm"]) == 0
    assert capsys.readouterr().out == 'experiment "x" {\n  seed = 1\n}\n'
