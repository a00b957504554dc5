"""The `fleming` command line: help everywhere, exit codes, one-line errors, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from plan_fixtures import tiny_experiment

from fleming_dsl import cli
from fleming_dsl.dag import edges, to_dot, to_mermaid
from fleming_dsl.plan import plan

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["check", "compile", "fmt", "graph", "schema", "run", "job", "diff", "status",
            "explain"]
HEAVY = ("torch", "transformers", "trl", "vllm", "deepspeed", "accelerate", "numba",
         "matplotlib")


def _main(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert f"    {command} " in out, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys: pytest.CaptureFixture, command: str) -> None:
    code, out, _ = _main(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: fleming {command}")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert _main(capsys, "bogus")[0] == 2
    assert _main(capsys, "compile")[0] == 2
    code, _, err = _main(capsys, "check", "x.flm", "--frobnicate")
    assert code == 2 and "unrecognized arguments: --frobnicate" in err


def test_a_missing_spec_is_one_line_and_exit_1(capsys: pytest.CaptureFixture) -> None:
    code, _, err = _main(capsys, "compile", "specs/nope.flm")
    assert (code, err) == (1, "error: specs/nope.flm: no such spec file\n")


def test_job_with_an_unreadable_config_prints_one_line(capsys: pytest.CaptureFixture,
                                                        tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, _, err = _main(capsys, "job", "sft", "--config", str(missing))
    assert code == 1
    assert err == f"error: {missing}: cannot read job config (No such file or directory)\n"


def test_job_of_the_wrong_kind_names_the_field(capsys: pytest.CaptureFixture,
                                               tmp_path: Path) -> None:
    from fleming_dsl.emit import job_json

    config = tmp_path / "report.json"
    config.write_text(job_json(plan(tiny_experiment(), "generated/tiny").job("report")))
    code, _, err = _main(capsys, "job", "sft", "--config", str(config))
    assert code == 1
    assert err == (f"error: {config}: field 'kind' is 'report', "
                   "but the command asked for 'sft'\n")


def test_schema_prints_the_ir_json_schema(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _main(capsys, "schema")
    schema = json.loads(out)
    assert code == 0 and schema["title"] == "Experiment" and "Stage" in schema["$defs"]


def test_the_dag_follows_the_data() -> None:
    p = plan(tiny_experiment(), "generated/tiny")
    found = edges(p)
    for edge in [("graph_load_medkg", "sample_rare_dx"), ("filter_clean", "grpo_rl2"),
                 ("grpo_rl1", "grpo_rl2"), ("grpo_rl2", "eval_rl2"), ("eval_rl2", "report")]:
        assert edge in found, edge
    assert ("build_model_base", "sft_cold_start") in found
    dot = to_dot(p)
    assert dot.startswith('digraph "tiny" {') and '"grpo_rl1" -> "grpo_rl2";' in dot
    assert "  grpo_rl1 --> grpo_rl2\n" in to_mermaid(p)


def test_compile_path_imports_nothing_heavy(tmp_path: Path) -> None:
    """The compiler (parser built, hand-made IR planned and emitted) stays light."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from plan_fixtures import tiny_experiment\n"
        "from fleming_dsl import cli\n"
        "from fleming_dsl.emit import emit\n"
        "from fleming_dsl.dag import to_dot\n"
        "from fleming_dsl.plan import plan\n"
        "cli.build_parser('check')\n"
        f"p = plan(tiny_experiment(), 'generated/tiny'); emit(p, {str(tmp_path)!r}); to_dot(p)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
