"""`fleming diff`: the semantic diff of two experiments and the jobs an edit invalidates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from plan_fixtures import gpu_experiment, tiny_experiment

from fleming_dsl import ir
from fleming_dsl.cli.diff import checkout_specs, compare
from fleming_dsl.review.diff import (
    diff_experiments,
    flatten,
    render_json,
    render_markdown,
    render_text,
)
from fleming_dsl.review.impact import JobView, gpu_hours, plan_impact
from fleming_dsl.review.impact import render_markdown as impact_markdown


def _span(line: int) -> ir.Span:
    return ir.Span(file="specs/t.flm", line=line, col=1, end_line=line, end_col=20)


def _experiment(count: int = 600, threshold: float = 0.8, weight: float = 0.2, lr: float = 5e-5,
                benchmarks: tuple[str, ...] = ("medqa_test",), reorder: bool = False,
                spec: str = "specs/t.flm") -> ir.Experiment:
    """A hand-built IR of a small recipe; `reorder` shuffles declarations and moves spans."""
    shift = 100 if reorder else 0
    sample = ir.Sample(name="rare_dx", graph="medkg", start_type="disease",
                       steps=(ir.MetapathStep(relation="disease_phenotype_positive",
                                              node_type="effect/phenotype"),),
                       hops_min=1, hops_max=2, count=count, span=_span(5 + shift))
    filt = ir.Filter(name="clean", source="questions", span=_span(9 + shift),
                     steps=(ir.FormatCheck(), ir.Dedupe(threshold=threshold)))
    rewards = (ir.Reward(name="correct", function="choice_match", options={"tag": "answer"}),
               ir.Reward(name="form", function="regex", options={"pattern": "<answer>"}))
    terms = (ir.RewardTerm(reward="correct", weight=1.0), ir.RewardTerm(reward="form", weight=weight))
    stage = ir.Stage(name="rl1", method="grpo", init="base", data=ir.StageData(dataset="clean"),
                     training=ir.Training(lr=lr), rewards=terms, span=_span(14 + shift),
                     resources=ir.Resources(nodes=2, gpus=8, time_min=90))
    models = (ir.Model(name="base", source="tiny", ref="", tiny=ir.TinyArch()),
              ir.Model(name="teacher", source="tiny", ref="", backend=ir.Backend(kind="template")))
    evaluate = ir.Evaluate(name="eval_rl1", targets=("rl1",), benchmarks=benchmarks, span=_span(20))
    return ir.Experiment(
        name="t", seed=7, workdir="runs/t", spec=spec,
        models=models[::-1] if reorder else models,
        graphs=(ir.Graph(name="medkg", format="primekg", paths=("data/kg.csv",)),),
        samples=(sample,), filters=(filt,), rewards=rewards[::-1] if reorder else rewards,
        stages=(stage,), evaluations=(evaluate,),
    )


def test_reordered_and_moved_declarations_are_no_change() -> None:
    diff = diff_experiments(_experiment(), _experiment(reorder=True, spec="specs/other.flm"))
    assert not diff.changed
    assert render_text(diff) == "No changes: the two specs describe the same experiment.\n"


def test_each_edit_names_the_declaration_and_option() -> None:
    cases = {
        "count": (dict(count=800), ("sample", "rare_dx", "count", 600, 800)),
        "threshold": (dict(threshold=0.9), ("filter", "clean", "steps.dedupe.threshold", 0.8, 0.9)),
        "weight": (dict(weight=0.3), ("stage", "rl1", "rewards.form.weight", 0.2, 0.3)),
        "lr": (dict(lr=1e-5), ("stage", "rl1", "training.lr", 5e-5, 1e-5)),
        "benchmark": (dict(benchmarks=("medqa_test", "pubmedqa")),
                      ("evaluate", "eval_rl1", "benchmarks", ["medqa_test"], ["medqa_test", "pubmedqa"])),
    }
    for label, (edit, expected) in cases.items():
        diff = diff_experiments(_experiment(), _experiment(**edit))
        found = [(d.kind, d.name, o.path, o.old, o.new) for d in diff.decls for o in d.options]
        assert found == [expected], label


def test_added_and_removed_declarations_list_their_set_options() -> None:
    old = _experiment()
    new = old.model_copy(update={"rewards": old.rewards[:1], "datasets": (
        ir.Dataset(name="pubmedqa", format="pubmedqa", path="data/pubmedqa.json", span=_span(3)),)})
    diff = diff_experiments(old, new)
    assert [(d.change, d.kind, d.name) for d in diff.decls] == [
        ("added", "dataset", "pubmedqa"), ("removed", "reward", "form")]
    assert render_text(diff) == (
        "Declarations: 1 added, 1 removed, 0 changed\n"
        "\n"
        "+ dataset pubmedqa  (specs/t.flm:3)\n"
        '    + format = "pubmedqa"\n'
        '    + path = "data/pubmedqa.json"\n'
        "- reward form\n"
        '    - function = "regex"\n'
        '    - options.pattern = "<answer>"\n'
    )


def test_experiment_settings_are_diffed() -> None:
    old = _experiment()
    new = old.model_copy(update={"seed": 8, "cluster": ir.Cluster(account="med")})
    diff = diff_experiments(old, new)
    assert [(d.kind, [(o.path, o.old, o.new) for o in d.options]) for d in diff.decls] == [
        ("experiment", [("cluster.account", None, "med"), ("seed", 7, 8)])]


def test_lists_of_named_records_diff_by_name_not_position() -> None:
    assert flatten({"steps": [{"step": "format"}, {"step": "dedupe", "threshold": 0.8}]}) == {
        "steps.dedupe.threshold": 0.8, "steps.format": True}
    assert flatten({"steps": [{"relation": "r", "node_type": None}]}) == {
        "steps[0].node_type": None, "steps[0].relation": "r"}


def test_markdown_word_for_word() -> None:
    diff = diff_experiments(_experiment(), _experiment(weight=0.3, lr=1e-5, count=800))
    assert render_markdown(diff) == (
        "**Declarations**: 0 added, 0 removed, 2 changed\n"
        "\n"
        "| | declaration | option | old | new |\n"
        "|---|---|---|---|---|\n"
        "| ~ | sample `rare_dx` | `count` | `600` | `800` |\n"
        "| ~ | stage `rl1` | `rewards.form.weight` | `0.2` | `0.3` |\n"
        "| ~ | stage `rl1` | `training.lr` | `5e-5` | `1e-5` |\n"
    )
    assert render_json(diff)["summary"] == {"added": 0, "removed": 0, "changed": 2}


# ---------------------------------------------------------------- impact on hand-built job lists


def _jobs(**hashes: str) -> list[JobView]:
    """sample -> synth -> filter -> sft -> grpo -> eval, plus an unrelated eval of the base model."""
    chain = [("sample", "sample", (), ("s.jsonl",)),
             ("synth", "synthesize", ("s.jsonl",), ("q.jsonl",)),
             ("filter", "filter", ("q.jsonl",), ("c.jsonl",)),
             ("sft", "sft", ("c.jsonl",), ("m1",)),
             ("grpo", "grpo", ("m1", "c.jsonl"), ("m2",)),
             ("eval_grpo", "eval", ("m2",), ("e2.json",)),
             ("eval_base", "eval", (), ("e0.json",))]
    return [JobView(name, kind, hashes.get(name, "h-" + name), ins, outs,
                    gpu_hours=gpu_hours(2, 8, 90) if kind == "grpo" else 0.0)
            for name, kind, ins, outs in chain]


def test_a_changed_job_invalidates_everything_downstream() -> None:
    impact = plan_impact(_jobs(), _jobs(filter="other"))
    assert [(j.name, j.reason, j.after) for j in impact.jobs] == [
        ("filter", "changed", ()), ("sft", "invalidated", ("filter",)),
        ("grpo", "invalidated", ("filter",)), ("eval_grpo", "invalidated", ("filter",))]
    assert impact.unchanged == 3
    assert impact.gpu_hours == 24.0


def test_unchanged_jobs_plan_nothing_and_removed_jobs_are_listed() -> None:
    assert plan_impact(_jobs(), _jobs()).jobs == ()
    impact = plan_impact(_jobs(), _jobs()[:-1])
    assert [(j.name, j.reason) for j in impact.jobs] == [("eval_base", "removed")]
    assert impact_markdown(plan_impact(_jobs(), _jobs(grpo="x"))) == (
        "**Plan**: 2 to run (0 new, 1 changed, 1 invalidated), 0 removed, 5 unchanged; "
        "24 GPU-hours\n"
        "\n"
        "| | job | kind | why | GPU-hours |\n"
        "|---|---|---|---|---|\n"
        "| ~ | `grpo` | grpo | config changed | 24 |\n"
        "| ! | `eval_grpo` | eval | invalidated by grpo | 0 |\n"
    )


# ---------------------------------------------------------------- impact on the real planner

def _edit(exp: ir.Experiment, group: str, name: str, **changes: object) -> ir.Experiment:
    decls = tuple(d.model_copy(update=changes) if d.name == name else d for d in getattr(exp, group))
    return exp.model_copy(update={group: decls})


def _filter_threshold(exp: ir.Experiment, threshold: float) -> ir.Experiment:
    steps = tuple(s.model_copy(update={"threshold": threshold}) if isinstance(s, ir.Dedupe) else s
                  for s in exp.filters[0].steps)
    return _edit(exp, "filters", "clean", steps=steps)


def _stage_lr(exp: ir.Experiment, name: str, lr: float) -> ir.Experiment:
    stage = next(s for s in exp.stages if s.name == name)
    return _edit(exp, "stages", name, training=stage.training.model_copy(update={"lr": lr}))


_DOWNSTREAM_OF_SFT = ["grpo_rl1", "grpo_rl2", "eval_cold_start", "eval_rl1", "eval_rl2", "report"]


@pytest.mark.parametrize("label, edited, options, changed, invalidated", [
    ("sampling count", lambda e: _edit(e, "samples", "rare_dx", count=900),
     [("sample", "rare_dx", "count", 600, 900)], ["sample_rare_dx"],
     ["synthesize_questions", "distill_cot", "filter_clean", "sft_cold_start", *_DOWNSTREAM_OF_SFT]),
    ("filter threshold", lambda e: _filter_threshold(e, 0.9),
     [("filter", "clean", "steps.dedupe.threshold", 0.8, 0.9)], ["filter_clean"],
     ["sft_cold_start", *_DOWNSTREAM_OF_SFT]),
    ("reward weight", lambda e: tiny_experiment(form_weight=0.3),
     [("stage", "rl1", "rewards.form.weight", 0.2, 0.3),
      ("stage", "rl2", "rewards.form.weight", 0.2, 0.3)],
     ["grpo_rl1", "grpo_rl2"], ["eval_rl1", "eval_rl2", "report"]),
    ("stage lr", lambda e: _stage_lr(e, "cold_start", 1e-3),
     [("stage", "cold_start", "training.lr", 3e-3, 1e-3)], ["sft_cold_start"], _DOWNSTREAM_OF_SFT),
    ("added benchmark", lambda e: _edit(e, "evaluations", "evaluate_69",
                                        benchmarks=("medqa_test", "medmcqa_dev", "pubmedqa", "medqa_train")),
     [("evaluate", "evaluate_69", "benchmarks", ["medqa_test", "medmcqa_dev", "pubmedqa"],
       ["medqa_test", "medmcqa_dev", "pubmedqa", "medqa_train"])],
     ["eval_cold_start", "eval_rl1", "eval_rl2"], ["report"]),
])
def test_each_kind_of_edit_invalidates_the_expected_jobs(label, edited, options, changed,
                                                         invalidated) -> None:
    old = tiny_experiment()
    diff, impact = compare(old, edited(old))
    assert [(d.kind, d.name, o.path, o.old, o.new) for d in diff.decls for o in d.options] == options
    assert sorted(j.name for j in impact.jobs if j.reason == "changed") == sorted(changed)
    assert sorted(j.name for j in impact.jobs if j.reason == "invalidated") == sorted(invalidated)


def test_identical_experiments_plan_nothing() -> None:
    diff, impact = compare(tiny_experiment(), tiny_experiment())
    assert not diff.changed and impact.jobs == () and impact.unchanged == 13


def test_gpu_hours_come_from_declared_resources() -> None:
    old = gpu_experiment()
    _, impact = compare(old, _stage_lr(old, "rl2", 1e-6))
    # rl2 alone re-trains: 2 nodes x 8 GPUs x 48 h; its eval and the report declare no GPUs
    assert [(j.name, j.gpu_hours) for j in impact.jobs] == [
        ("grpo_rl2", 768.0), ("eval_rl2", 0.0), ("report", 0.0)]
    assert impact.gpu_hours == 768.0


# ---------------------------------------------------------------- the command on real specs

@pytest.fixture
def project(tmp_path: Path, repo_root: Path) -> Path:
    """A copy of the project's specs and data; `specs/old.flm` is the tiny spec as shipped."""
    pytest.importorskip("fleming_dsl.spec.loader")
    for folder in ("specs", "data", "prompts"):
        if (repo_root / folder).is_dir():
            shutil.copytree(repo_root / folder, tmp_path / folder)
    shutil.copy(tmp_path / "specs" / "tiny.flm", tmp_path / "specs" / "old.flm")
    return tmp_path


def _fleming(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleming_dsl.cli", *args], cwd=project,
                          capture_output=True, text=True, timeout=120)


def _write_edit(project: Path, old: str, new: str, count: int = 1) -> None:
    text = (project / "specs" / "old.flm").read_text(encoding="utf-8")
    assert text.count(old) == count, old
    (project / "specs" / "new.flm").write_text(text.replace(old, new), encoding="utf-8")


def test_cli_reformatted_and_reordered_spec_is_no_change(project: Path) -> None:
    text = (project / "specs" / "old.flm").read_text(encoding="utf-8")
    first, second = ('reward form    = regex("^<think>.*</think><answer>[^<]+</answer>$")',
                     "reward brevity = length_penalty(max_tokens = 96)")
    assert first in text and second in text
    text = text.replace(first, "@@").replace(second, first).replace("@@", second)  # swap them
    assert "count = 2000" in text
    text = text.replace("count = 2000", "count = 2_000   # same number")
    text = text.replace("\n\n", "\n\n# a comment\n\n")
    (project / "specs" / "new.flm").write_text(text, encoding="utf-8")
    result = _fleming(project, "diff", "specs/old.flm", "specs/new.flm")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("No changes: the two specs describe the same experiment.\n")


def test_cli_markdown_word_for_word(project: Path) -> None:
    _write_edit(project, "0.2 * form", "0.3 * form", count=2)
    result = _fleming(project, "diff", "--markdown", "specs/old.flm", "specs/new.flm")
    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        "### fleming diff `specs/old.flm` -> `specs/new.flm`\n"
        "\n"
        "**Declarations**: 0 added, 0 removed, 2 changed\n"
        "\n"
        "| | declaration | option | old | new |\n"
        "|---|---|---|---|---|\n"
        "| ~ | stage `rl1` | `rewards.form.weight` | `0.2` | `0.3` |\n"
        "| ~ | stage `rl2` | `rewards.form.weight` | `0.2` | `0.3` |\n"
        "\n"
        "**Plan**: 5 to run (0 new, 2 changed, 3 invalidated), 0 removed, 10 unchanged; "
        "0 GPU-hours\n"
        "\n"
        "| | job | kind | why | GPU-hours |\n"
        "|---|---|---|---|---|\n"
        "| ~ | `grpo_rl1` | grpo | config changed | 0 |\n"
        "| ! | `eval_rl1` | eval | invalidated by grpo_rl1 | 0 |\n"
        "| ~ | `grpo_rl2` | grpo | config changed | 0 |\n"
        "| ! | `eval_rl2` | eval | invalidated by grpo_rl1, grpo_rl2 | 0 |\n"
        "| ! | `report` | report | invalidated by grpo_rl1, grpo_rl2 | 0 |\n"
    )


def test_cli_json_and_errors(project: Path) -> None:
    _write_edit(project, "count = 2000", "count = 800")
    result = _fleming(project, "diff", "--json", "specs/old.flm", "specs/new.flm")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert [(d["name"], d["options"][0]["path"]) for d in data["declarations"]] == [("rare_dx", "count")]
    assert data["plan"]["jobs"][0] == {"job": "sample_rare_dx", "kind": "sample", "reason": "changed",
                                       "after": [], "gpu_hours": 0.0,
                                       "source": data["plan"]["jobs"][0]["source"]}
    missing = _fleming(project, "diff", "specs/old.flm", "specs/nope.flm")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        2, "", "specs/nope.flm: no such spec file\n")


def test_cli_rev_compares_with_a_git_revision(project: Path) -> None:
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "."], cwd=project, check=True)
    subprocess.run([*git, "add", "specs"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny"], cwd=project, check=True)
    same = _fleming(project, "diff", "--rev", "HEAD", "specs/tiny.flm")
    assert (same.returncode, same.stderr) == (0, ""), same.stdout
    spec = project / "specs" / "tiny.flm"
    spec.write_text(spec.read_text().replace("lr = 3e-3", "lr = 1e-3"), encoding="utf-8")
    edited = _fleming(project, "diff", "--rev", "HEAD", "specs/tiny.flm")
    assert edited.returncode == 1, edited.stderr
    assert "    ~ training.lr: 0.003 -> 0.001\n" in edited.stdout
    bad = _fleming(project, "diff", "--rev", "no-such-rev", "specs/tiny.flm")
    assert bad.returncode == 2 and bad.stderr.startswith("git rev-parse --verify"), bad.stderr


def test_checkout_specs_takes_specs_from_the_revision_and_the_rest_from_the_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "base.flm").write_text("old base\n")
    (tmp_path / "specs" / "notes.txt").write_text("notes\n")
    subprocess.run(["git", "init", "-q", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "v1"], cwd=tmp_path, check=True)
    (tmp_path / "specs" / "base.flm").write_text("new base\n")
    (tmp_path / "specs" / "added.flm").write_text("only in the tree\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kg.csv").write_text("untracked data\n")
    monkeypatch.chdir(tmp_path / "specs")
    with checkout_specs("HEAD") as here:
        assert here.name == "specs"
        assert (here / "base.flm").read_text() == "old base\n"
        assert not (here / "added.flm").exists()
        assert (here / "notes.txt").read_text() == "notes\n"
        assert (here.parent / "data" / "kg.csv").read_text() == "untracked data\n"
    assert not here.exists()
