"""The `fleming` command line: help everywhere, exit codes, one-line errors, light imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO
from plan_fixtures import tiny_experiment

from fleming_dsl import cli
from fleming_dsl.plan.dag import edges, to_dot, to_mermaid
from fleming_dsl.plan.planner import plan

COMMANDS = ["check", "compile", "fmt", "graph", "schema", "run", "job", "diff", "status", "init",
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


@pytest.mark.parametrize("command", ["check", "fmt", "compile"])
def test_a_spec_linked_outside_the_project_is_never_printed(
        capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    """issue 28: `fleming check specs/env.flm` with env.flm -> /proc/self/environ printed the
    environment; every command that reads a spec holds it to the include rules."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "env.flm").symlink_to("/proc/self/environ")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEMING_TEST_SECRET", "s3cr3t-value")
    code, out, err = _main(capsys, command, "specs/env.flm")
    assert code == 1 and out == ""
    assert err.splitlines()[0] == "specs/env.flm:1:1: error: spec file 'specs/env.flm' lies outside the project"


def test_job_with_an_unreadable_config_prints_one_line(capsys: pytest.CaptureFixture,
                                                        tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, _, err = _main(capsys, "job", "sft", "--config", str(missing))
    assert code == 1
    assert err == f"error: {missing}: cannot read job config (No such file or directory)\n"


def test_job_of_the_wrong_kind_names_the_field(capsys: pytest.CaptureFixture,
                                               tmp_path: Path) -> None:
    from fleming_dsl.emit.workflow import job_json

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
        "from fleming_dsl.emit.workflow import emit\n"
        "from fleming_dsl.plan.dag import to_dot\n"
        "from fleming_dsl.plan.planner import plan\n"
        "cli.build_parser('check')\n"
        f"p = plan(tiny_experiment(), 'generated/tiny'); emit(p, {str(tmp_path)!r}); to_dot(p)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- with the real front end


def _fleming(cwd: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleming_dsl.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    import shutil

    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def test_check_passes_every_spec_without_importing_heavy_libraries() -> None:
    specs = sorted(str(p.relative_to(REPO)) for p in (REPO / "specs").glob("*.flm"))
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['fleming', 'check', *{specs!r}]\n"
        "try:\n    runpy.run_module('fleming_dsl.cli', run_name='__main__')\n"
        "except SystemExit as exit_:\n    code = exit_.code\n"
        f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, text=True,
                            capture_output=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout + result.stderr


def test_a_bad_spec_is_a_located_error_without_traceback(project: Path) -> None:
    bad = project / "specs" / "bad.flm"
    bad.write_text('experiment "x" {\n  seed = \n}\n')
    for command in ("check", "compile", "graph"):
        result = _fleming(project, command, "specs/bad.flm")
        assert result.returncode == 1, command
        assert result.stderr.startswith("specs/bad.flm:3:1: error: missing value after '='\n")
        assert "Traceback" not in result.stderr


def test_compile_writes_the_workflow_then_leaves_it_alone(project: Path) -> None:
    first = _fleming(project, "compile", "specs/tiny.flm")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("generated/tiny: 15 jobs, ")
    snakefile = project / "generated" / "tiny" / "Snakefile"
    before = snakefile.stat().st_mtime_ns
    again = _fleming(project, "compile", "specs/tiny.flm")
    assert again.stdout == "generated/tiny: 15 jobs, 0 files written\n"
    assert snakefile.stat().st_mtime_ns == before


def test_compile_refuses_an_output_folder_outside_the_project(project: Path,
                                                              tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    result = _fleming(project, "compile", "specs/tiny.flm", "--out", str(outside))
    assert result.returncode == 2
    assert "the output folder must lie inside the project" in result.stderr


def test_run_compiles_and_passes_snakemake_options_through(project: Path) -> None:
    result = _fleming(project, "run", "specs/tiny.flm", "--cores", "1", "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--profile generated/tiny/profiles/local --cores 1 -n" in result.stderr
    assert "This was a dry-run" in result.stdout + result.stderr
    assert not (project / "runs").exists()


def test_run_targets_a_job_by_name(project: Path) -> None:
    result = _fleming(project, "run", "specs/tiny.flm", "--cores", "1", "filter_clean", "-n",
                      "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--cores 1 runs/tiny/data/clean.jsonl -n --quiet rules" in result.stderr
    counted = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M))
    assert counted == {"graph_load": "1", "sample": "1", "synthesize": "1", "distill": "1",
                       "filter": "1", "total": "5"}


def test_snakemake_targets_a_job_by_name_through_config(project: Path) -> None:
    assert _fleming(project, "compile", "specs/tiny.flm").returncode == 0
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", "generated/tiny/Snakefile",
                          "-n", "--quiet", "rules", "--config", "jobs=sample_rare_dx"],
                         cwd=project, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    counted = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout + run.stderr, re.M))
    assert counted == {"graph_load": "1", "sample": "1", "all": "1", "total": "3"}
    wrong = subprocess.run([sys.executable, "-m", "snakemake", "-s", "generated/tiny/Snakefile",
                            "-n", "--config", "jobs=sample_rare"],
                           cwd=project, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1
    assert "--config jobs: no job named sample_rare; see jobs.json" in wrong.stdout + wrong.stderr


def test_fmt_check_diff_and_rewrite(project: Path) -> None:
    spec = project / "specs" / "tiny.flm"
    canonical = spec.read_text()
    spec.write_text(canonical.replace("seed = 7", "seed=7", 1))
    assert spec.read_text() != canonical
    check = _fleming(project, "fmt", "--check", "specs/tiny.flm")
    assert (check.returncode, check.stderr) == (1, "specs/tiny.flm: would reformat\n")
    diff = _fleming(project, "fmt", "--diff", "specs/tiny.flm")
    assert "-  seed=7\n" in diff.stdout
    assert _fleming(project, "fmt", "specs/tiny.flm").returncode == 0
    assert spec.read_text() == canonical
    assert _fleming(project, "fmt", "--check", "specs/tiny.flm").returncode == 0


def test_check_shows_the_first_warnings_and_counts_the_rest() -> None:
    result = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "check", "specs/fleming_r1_7b.flm"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert lines[0] == ("specs/fleming_r1_base.flm:32:23: warning: data file not found: "
                        "../data/primekg/kg.csv (treated as external data: its folder does not "
                        "exist here either)")
    assert lines[-1] == "specs/fleming_r1_7b.flm: 9 more warnings (fleming check -v lists them)"
    verbose = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "check", "-v",
                              "specs/fleming_r1_7b.flm"], cwd=REPO, capture_output=True, text=True)
    assert len(verbose.stderr.splitlines()) == 12


@pytest.mark.parametrize(("content", "message"), [
    ('{"kind": "sft"}', "field 'job': Field required"),
    ('{"kind": "sft", "job": "x", "experiment": "e", "seed": 1, "meta": "m", "model": "m", '
     '"data": "d", "training": {"lr": "fast"}}',
     "field 'training.lr': Input should be a valid number, unable to parse string as a number"),
    ("nonsense", "Expecting value: line 1 column 1 (char 0)"),
])
def test_a_bad_job_config_is_one_line_naming_the_field(tmp_path: Path, content: str,
                                                         message: str) -> None:
    config = tmp_path / "job.json"
    config.write_text(content, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "job", "sft", "--config",
                             str(config)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"error: {config}: invalid job config: {message}\n"


def test_a_one_shot_command_leaves_its_objects_to_exit_and_a_library_call_does_not() -> None:
    # `fleming check` as a process: no cycle collection over the spec's millions of AST and IR
    # objects, during the command or at exit (bench/check_scale.py: 14.4 s -> 7.2 s for a spec
    # of 100,000 chained stages); main() called from Python leaves the collector as it was.
    code = ("import gc, sys; from fleming_dsl.cli import main; "
            "sys.argv = ['fleming', 'check', 'specs/tiny.flm']; main(); print(gc.isenabled()); "
            "gc.enable(); main(['check', 'specs/tiny.flm']); print(gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    assert [w for w in out if w in ("True", "False")] == ["False", "True"]


def test_two_specs_with_one_experiment_name_do_not_share_a_workflow(project: Path) -> None:
    assert _fleming(project, "compile", "specs/tiny.flm").returncode == 0
    (project / "specs" / "copy.flm").write_text((project / "specs" / "tiny.flm").read_text())
    result = _fleming(project, "compile", "specs/copy.flm")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "generated/tiny holds the workflow of specs/tiny.flm, and specs/copy.flm names the same "
        "experiment: give one of them another experiment name (or --out DIR); if specs/tiny.flm "
        "was moved to specs/copy.flm, delete generated/tiny first")


def test_the_sharded_tiny_variant_only_re_cuts_the_embedded_default() -> None:
    """tests/specs/tiny_sharded.flm restates tiny's sharded declarations; when tiny.flm changes
    an option there and the variant does not follow, the slow end-to-end test fails after a
    15-minute run. This says so in a second, from the plan alone."""
    result = _fleming(REPO, "diff", "specs/tiny.flm", "tests/specs/tiny_sharded.flm")
    assert result.returncode == 1, result.stderr  # changed: the cut, not the data
    assert "Plan: 0 to run (0 new, 0 changed, 0 invalidated), 0 removed, 15 re-cut" in result.stdout


def test_a_spec_that_extends_the_recorded_one_may_replace_its_workflow(project: Path) -> None:
    """A variant of one experiment (tests/specs/tiny_sharded.flm re-cuts specs/tiny.flm) is
    compiled over its base's workflow and run records."""
    assert _fleming(project, "compile", "specs/tiny.flm").returncode == 0
    (project / "specs" / "variant.flm").write_text('experiment "tiny" extends "tiny.flm" { }\n')
    result = _fleming(project, "compile", "specs/variant.flm")
    assert result.returncode == 0, result.stderr
