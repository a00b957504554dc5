"""Dataset `split` and `limit` take effect wherever a dataset is read (issue 11, finding 1): they
reach every job config that reads the dataset (so `fleming diff` re-runs those jobs) and the
loaders keep only the selected rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paths import REPO

from fleming_dsl.cli.diff import compare
from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import JobError
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan
from fleming_dsl.runtime.data.formats import load_items, load_source


def test_the_7b_workflow_evaluates_each_mmlu_pro_category_and_distills_60k_medmcqa() -> None:
    jobs = plan(load_experiment(REPO / "specs" / "fleming_r1_7b.flm"), "generated/x").jobs
    evals = [j.config for j in jobs if isinstance(j.config, jc.EvalJob)]
    benches = {b.name: (b.split, b.limit) for b in evals[0].benchmarks}
    assert benches["mmlu_pro_bio"] == ("biology", None)
    assert benches["mmlu_pro_health"] == ("health", None)
    (distill,) = [j.config for j in jobs if isinstance(j.config, jc.DistillJob)]
    assert {s.name: s.limit for s in distill.sources}["medmcqa_train"] == 60_000
    (flt,) = [j.config for j in jobs if isinstance(j.config, jc.FilterJob)]
    (decon,) = [s for s in flt.steps if isinstance(s, jc.DecontaminateStep)]
    assert {a.name: a.split for a in decon.against}["mmlu_pro_health"] == "health"


def _with_limit(exp, name: str, limit: int):
    datasets = tuple(d.model_copy(update={"limit": limit}) if d.name == name else d for d in exp.datasets)
    return exp.model_copy(update={"datasets": datasets})


def test_a_limit_edit_reruns_the_jobs_that_read_the_dataset() -> None:
    old = load_experiment(REPO / "specs" / "tiny.flm")
    _, impact = compare(old, _with_limit(old, "pubmedqa", 50))
    changed = sorted(j.name for j in impact.jobs if j.reason == "changed")
    assert changed == ["filter_clean", "filter_rl_pool"]  # tiny evaluates medqa_test only
    big = load_experiment(REPO / "specs" / "fleming_r1_7b.flm")
    _, impact = compare(big, _with_limit(big, "medmcqa_train", 50))
    assert sorted(j.name for j in impact.jobs if j.reason == "changed") == ["distill_cot"]


def _mmlu_pro(path: Path) -> Path:
    rows = [{"question_id": i, "question": f"q{i}", "options": ["a", "b", "c"], "answer": "A",
             "category": cat} for i, cat in enumerate(["biology", "health", "Health", "law", "health"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_split_keeps_one_category_and_limit_the_first_rows(tmp_path: Path) -> None:
    path = _mmlu_pro(tmp_path / "mmlu_pro.jsonl")
    assert len(load_items(path, "mmlu_pro")) == 5
    assert [i.id for i in load_items(path, "mmlu_pro", split="health")] == ["1", "2", "4"]
    assert [i.id for i in load_source(jc.Benchmark(name="h", path=str(path), format="mmlu_pro",
                                                   split="health", limit=2))] == ["1", "2"]
    with pytest.raises(JobError) as err:
        load_items(path, "mmlu_pro", split="physics")
    assert str(err.value) == f"{path}: field 'split': no row has category = 'physics'"


def test_pubmedqa_limit(tmp_path: Path) -> None:
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps({str(i): {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "yes"}
                                for i in range(1000)}))
    assert len(load_items(path, "pubmedqa", limit=50)) == 50
