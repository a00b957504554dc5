"""The TextMate grammar of the VS Code extension (editors/vscode/) against annotated samples
(tests/editors/grammar/*.test.flm), with vscode-tmgrammar-test from npm.

tests/editors/install.sh installs the tool into a cache folder ($FLEMING_NPM_CACHE, by default
~/.cache/fleming-dsl/npm); the test is skipped with a message when npm is missing or the
registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from paths import REPO

EXTENSION = REPO / "editors" / "vscode"
SAMPLES = REPO / "tests" / "editors" / "grammar"


@pytest.fixture(scope="module")
def tmgrammar_test() -> str:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the TextMate grammar test needs vscode-tmgrammar-test from npm")
    cache = os.environ.get("FLEMING_NPM_CACHE", str(Path.home() / ".cache" / "fleming-dsl" / "npm"))
    result = subprocess.run(["bash", str(REPO / "tests" / "editors" / "install.sh"), "npm", cache],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.skip(f"could not install vscode-tmgrammar-test: {result.stderr.strip()[-300:]}")
    return result.stdout.strip().splitlines()[-1]


def run(tool: str, *samples: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool, "-g", "syntaxes/flm.tmLanguage.json", *map(str, samples)],
                          cwd=EXTENSION, capture_output=True, text=True, timeout=120)


def test_the_grammar_scopes_the_annotated_samples(tmgrammar_test: str):
    samples = sorted(SAMPLES.glob("*.test.flm"))
    assert len(samples) >= 2
    result = run(tmgrammar_test, *samples)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("run successfuly") == len(samples)


def test_a_wrong_annotation_fails(tmgrammar_test: str, tmp_path: Path):
    wrong = tmp_path / "wrong.test.flm"
    wrong.write_text('# SYNTAX TEST "source.flm"\nmodel base = hf("x")\n# <----- string.quoted.double.flm\n')
    result = run(tmgrammar_test, wrong)
    assert result.returncode != 0
    assert "missing required scopes: string.quoted.double.flm" in result.stdout


def test_the_extension_declares_the_language_and_starts_the_server():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    [language] = manifest["contributes"]["languages"]
    assert language["extensions"] == [".flm"]
    [grammar] = manifest["contributes"]["grammars"]
    assert (EXTENSION / grammar["path"]).is_file() and grammar["scopeName"] == "source.flm"
    config = json.loads((EXTENSION / language["configuration"]).read_text())
    assert config["comments"] == {"lineComment": "#"}
    assert ["{", "}"] in config["brackets"] and {"open": "(", "close": ")"} in config["autoClosingPairs"]
    command = manifest["contributes"]["configuration"]["properties"]["fleming.server.command"]["default"]
    assert command == ["fleming", "lsp"]
    assert "fleming.server.command" in (EXTENSION / "extension.js").read_text()
