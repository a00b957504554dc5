"""MedXpertQA as published (accuracy per medical task, body system, question type) and
MedAgentsBench's test_hard layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.data.formats import load_items
from fleming_dsl.runtime.jobs.eval import score_item, summarise
from fleming_dsl.runtime.reporting.collect import EvalResult, ReportInputs
from fleming_dsl.runtime.reporting.tables import group_accuracy_table

OPTIONS = {letter: f"option {letter}" for letter in "ABCDEFGHIJ"}


def medxpertqa_rows() -> list[dict]:
    tasks = [("Diagnosis", "Cardiovascular", "Reasoning"), ("Treatment", "Cardiovascular", "Understanding"),
             ("Diagnosis", "Nervous", "Reasoning")]
    return [{"id": f"Text-{i}", "question": f"Case {i}. What is the most likely diagnosis?",
             "options": OPTIONS, "label": "BCD"[i], "medical_task": task, "body_system": system,
             "question_type": kind} for i, (task, system, kind) in enumerate(tasks)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_medxpertqa_keeps_its_categories(tmp_path: Path) -> None:
    items = load_items(write_jsonl(tmp_path / "medxpertqa_text.jsonl", medxpertqa_rows()), "medxpertqa")
    assert [(i.id, i.answer, len(i.options)) for i in items] == [("Text-0", "B", 10), ("Text-1", "C", 10),
                                                                  ("Text-2", "D", 10)]
    assert items[1].provenance == {"medical_task": "Treatment", "body_system": "Cardiovascular",
                                   "question_type": "Understanding"}


def test_eval_reports_accuracy_per_task_body_system_and_question_type(tmp_path: Path) -> None:
    items = load_items(write_jsonl(tmp_path / "mx.jsonl", medxpertqa_rows()), "medxpertqa")
    answers = ["<answer>B</answer>", "<answer>A</answer>", "<answer>D</answer>"]  # 1st and 3rd right
    rows = [row for item, text in zip(items, answers) for row in score_item("medxpertqa", item, [text])]
    summary = summarise(rows, len(items), 1)
    assert summary["by_medical_task"] == {"Diagnosis": {"n": 2, "accuracy": 1.0},
                                          "Treatment": {"n": 1, "accuracy": 0.0}}
    assert summary["by_body_system"] == {"Cardiovascular": {"n": 2, "accuracy": 0.5},
                                         "Nervous": {"n": 1, "accuracy": 1.0}}
    assert summary["by_question_type"]["Reasoning"] == {"n": 2, "accuracy": 1.0}
    result = EvalResult(target="rl2", model="m", benchmarks={"medxpertqa": summary}, format_rate=0.0,
                        accuracy_mean=summary["accuracy"])
    table = group_accuracy_table(ReportInputs(metas=(), curves=(), evals=(result,)))
    assert table is not None
    assert ("rl2", "medxpertqa", "medical_task", "Treatment", "1", "0.000") in table.rows
    assert len(table.rows) == 6


def test_benchmarks_without_categories_report_none(tmp_path: Path) -> None:
    rows = [{"realidx": 7, "question": "q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}]
    items = load_items(write_jsonl(tmp_path / "test_hard.jsonl", rows), "medagentsbench")
    summary = summarise(score_item("b", items[0], ["<answer>A</answer>"]), 1, 1)
    assert not [k for k in summary if k.startswith("by_")]


def test_medagentsbench_test_hard_layout(tmp_path: Path) -> None:
    rows = [
        {"realidx": 12, "question": "A 40-year-old man ... next step?", "answer": "Labetalol",
         "options": {"A": "Diltiazem", "B": "Labetalol", "C": "Propranolol", "D": "Observation"},
         "meta_info": "step2&3", "answer_idx": "B", "metamap_phrases": ["man"]},
        {"realidx": "2871", "question": "Context ... Question?", "answer": "no",
         "answer_rationale": "because", "options": {"A": "yes", "B": "no", "C": "maybe"}, "answer_idx": "B"},
    ]
    items = load_items(write_jsonl(tmp_path / "test_hard.jsonl", rows), "medagentsbench")
    assert [(i.id, i.answer, list(i.options)) for i in items] == [("12", "B", list("ABCD")),
                                                                  ("2871", "B", list("ABC"))]
    assert items[0].provenance == {"meta_info": "step2&3"} and items[1].provenance == {}


def test_medagentsbench_row_without_answer_idx_is_located(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "test_hard.jsonl", [{"realidx": 1, "question": "q", "options": {"A": "x"}}])
    with pytest.raises(JobError) as err:
        load_items(path, "medagentsbench")
    assert str(err.value).startswith(f"{path}:1: field 'answer_idx'")
