"""Evaluation: answer extraction, Wilson intervals, the eval job end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from generation_fixtures import build_tiny_model

from fleming_dsl.errors import JobError
from fleming_dsl.runtime import generation
from fleming_dsl.runtime.data.items import Item, extract_choice
from fleming_dsl.runtime.jobs.eval import score_item, summarise
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.reporting.stats import wilson_interval

# ---------------------------------------------------------------- answer extraction


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>fever and rash</think><answer>B</answer>", "B"),
    ("<answer>A</answer> wait, <answer>C</answer>", "C"),  # the last tag wins
    ("<answer> (D) </answer>", "D"),
    ("Reasoning... The answer is (C).", "C"),
    ("so the answer is: B", "B"),
    ("THE ANSWER IS D", "D"),
    ("Answer: A", "A"),
    ("**Answer:** (B)", "B"),
    ("hence \\boxed{D}", "D"),
    ("C", "C"),
    (" (B) ", "B"),
    ("D.", "D"),
    ("The answer is a beta blocker", None),  # a lowercase article is not option A
    ("<answer>E</answer>", None),  # not one of the item's options
    ("I am not sure", None),
    ("", None),
])
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text, "ABCD") == expected


def test_extract_choice_reads_letters_beyond_d_for_long_option_lists() -> None:
    assert extract_choice("<answer>U</answer>", "ABCDEFGHIJKLMNOPQRSTU") == "U"  # JMED: 21


# ---------------------------------------------------------------- Wilson interval


@pytest.mark.parametrize(("p_hat", "n", "expected"), [
    # reference values: scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    (50 / 100, 100, (0.4038, 0.5962)),
    (0 / 10, 10, (0.0, 0.2775)),  # upper bound z^2 / (n + z^2)
    (10 / 10, 10, (0.7225, 1.0)),
    (10 / 40, 40, (0.1419, 0.4019)),
    (1018 / 1273, 1273, (0.7768, 0.8208)),  # MedQA-sized
])
def test_wilson_interval_known_values(p_hat: float, n: int, expected: tuple) -> None:
    lo, hi = wilson_interval(p_hat, n)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0.3, 0) == (0.0, 1.0)
    lo90, hi90 = wilson_interval(0.5, 100, confidence=0.90)
    lo95, hi95 = wilson_interval(0.5, 100)
    assert lo95 < lo90 < 0.5 < hi90 < hi95
    with pytest.raises(ValueError, match="p_hat must be in"):
        wilson_interval(1.5, 10)


# ---------------------------------------------------------------- the eval job


def _item(index: int, answer: str, options: str = "ABCD") -> dict:
    return {"id": f"q{index}", "question": f"Question {index}: which finding fits?",
            "options": {letter: f"option {letter.lower()} {index}" for letter in options},
            "answer": answer}


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _write_config(tmp_path: Path, model: str, benchmarks: list[dict], **overrides) -> str:
    config = {
        "kind": "eval", "job": "eval_cold_start", "experiment": "test", "seed": 1,
        "meta": str(tmp_path / "out" / "eval.json.meta.json"), "target": "cold_start",
        "model": model, "benchmarks": benchmarks, "samples": 1, "temperature": 0.0,
        "max_tokens": 12, "limit": None, "output": str(tmp_path / "out" / "eval.json"),
        **overrides,
    }
    path = tmp_path / "eval.job.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def _read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-lm") / "model"))


def test_eval_job_end_to_end_on_a_tiny_model(tmp_path: Path, tiny_model: str) -> None:
    bench_a = _write_jsonl(tmp_path / "a.jsonl", [_item(i, "ABCD"[i % 4]) for i in range(6)])
    bench_b = _write_jsonl(tmp_path / "b.jsonl", [_item(i, "ABC"[i % 3], "ABC") for i in range(5)])
    config = _write_config(tmp_path, tiny_model, [
        {"name": "alpha", "path": bench_a, "format": "items"},
        {"name": "beta", "path": bench_b, "format": "items"},
    ], samples=2, temperature=1.0, limit=4)
    run_job("eval", config)

    results = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert set(results) >= {"target", "model", "benchmarks", "format_rate", "accuracy_mean"}
    assert results["target"] == "cold_start" and results["model"] == tiny_model
    rows = _read_rows(tmp_path / "out" / "eval.json.predictions.jsonl")
    assert len(rows) == (4 + 4) * 2  # limit 4 items per benchmark, 2 samples each
    for name in ("alpha", "beta"):
        summary = results["benchmarks"][name]
        assert set(summary) == {"n", "samples", "correct", "correct_by", "accuracy", "ci95",
                                "format_rate", "extracted_rate"}
        assert summary["correct_by"] == {"letter": summary["correct"], "text": 0}  # letter grading
        mine = [row for row in rows if row["benchmark"] == name]
        hand_correct = sum(row["extracted"] == row["answer"] for row in mine)
        assert summary["n"] == 4 and summary["correct"] == hand_correct
        assert summary["accuracy"] == pytest.approx(hand_correct / 8)
        lo, hi = summary["ci95"]
        assert 0.0 <= lo <= summary["accuracy"] <= hi <= 1.0
    meta = json.loads((tmp_path / "out" / "eval.json.meta.json").read_text())
    assert meta["counts"]["completions"] == 16
    assert meta["metrics"]["format_rate"] == results["format_rate"]


@pytest.fixture
def scripted_model(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace the model with scripted completions, keyed by item id, to know the right scores."""
    script: dict[str, list[str]] = {}

    def fake_generate_chat(model, conversations, *, n=1, **kwargs):
        ids = [conv[-1]["content"].split(":")[0].split()[-1] for conv in conversations]
        return [script[f"q{index}"][:n] for index in ids]

    monkeypatch.setattr(generation, "generate_chat", fake_generate_chat)
    return script


def test_eval_job_scores_scripted_completions(tmp_path: Path, scripted_model: dict) -> None:
    scripted_model.update({
        "q0": ["<think>x</think><answer>A</answer>", "<think>x</think><answer>B</answer>"],
        "q1": ["The answer is (B).", "<think>y</think><answer>B</answer>"],
        "q2": ["no idea", "<think>z</think><answer>D</answer>"],
        "q3": ["C", "<think>w</think><answer>C</answer>"],
    })
    bench = _write_jsonl(tmp_path / "b.jsonl", [_item(0, "A"), _item(1, "B"), _item(2, "C"),
                                                _item(3, "C")])
    config = _write_config(tmp_path, "scripted", [{"name": "medqa", "path": bench,
                                                    "format": "items"}], samples=2,
                           temperature=0.7)
    run_job("eval", config)
    results = json.loads((tmp_path / "out" / "eval.json").read_text())
    medqa = results["benchmarks"]["medqa"]
    # correct: q0 1/2, q1 2/2, q2 0/2, q3 2/2 -> 5 of 8 completions
    assert (medqa["n"], medqa["samples"], medqa["correct"]) == (4, 2, 5)
    assert medqa["accuracy"] == 5 / 8
    assert medqa["ci95"] == pytest.approx(list(wilson_interval(5 / 8, 4)))
    assert medqa["format_rate"] == 5 / 8  # every tagged completion
    assert medqa["extracted_rate"] == 7 / 8  # all but "no idea"
    assert results["format_rate"] == 5 / 8 and results["accuracy_mean"] == 5 / 8


def test_missing_benchmark_file_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    config = _write_config(tmp_path, "m", [{"name": "medqa", "path": missing,
                                            "format": "items"}])
    with pytest.raises(JobError) as err:
        run_job("eval", config)
    assert str(err.value) == (f"{missing}: benchmark file not found "
                              "(field 'benchmarks[0].path', benchmark 'medqa')")


def test_malformed_item_names_line_and_field(tmp_path: Path) -> None:
    bad = dict(_item(1, "B"))
    del bad["answer"]
    bench = _write_jsonl(tmp_path / "b.jsonl", [_item(0, "A"), bad])
    config = _write_config(tmp_path, "m", [{"name": "medqa", "path": bench, "format": "items"}])
    with pytest.raises(JobError) as err:
        run_job("eval", config)
    assert str(err.value).startswith(f"{bench}:2:")
    assert "answer" in str(err.value)


def test_unloadable_model_is_one_line(tmp_path: Path) -> None:
    bench = _write_jsonl(tmp_path / "b.jsonl", [_item(0, "A"), _item(1, "B")])
    missing_model = str(tmp_path / "no-model")
    config = _write_config(tmp_path, missing_model, [{"name": "medqa", "path": bench,
                                                      "format": "items"}])
    with pytest.raises(JobError) as err:
        run_job("eval", config)
    message = str(err.value)
    assert message.startswith(f"{missing_model}: cannot load model (field 'model')")
    assert "\n" not in message
    assert not (tmp_path / "out" / "eval.json").exists()


def test_eval_job_reads_published_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MedQA JSONL and PubMedQA ori_pqal.json through formats.load_items; always answering A."""
    seen: list[list[dict]] = []

    def always_a(model, conversations, *, n=1, **kwargs):
        seen.extend(conversations)
        return [["<think>first option</think><answer>A</answer>"] * n for _ in conversations]

    monkeypatch.setattr(generation, "generate_chat", always_a)
    medqa = _write_jsonl(tmp_path / "medqa_test.jsonl", [
        {"question": f"Case {i}: best next step?", "answer_idx": letter, "answer": "x",
         "options": {"A": "aspirin", "B": "heparin", "C": "warfarin", "D": "observation"}}
        for i, letter in enumerate("ABAD")])
    pqal = {str(1000 + i): {"QUESTION": f"Does drug {i} reduce mortality?",
                            "CONTEXTS": [f"A trial of drug {i}."], "final_decision": decision}
            for i, decision in enumerate(["yes", "no", "maybe", "yes", "yes"])}
    (tmp_path / "ori_pqal.json").write_text(json.dumps(pqal), encoding="utf-8")
    config = _write_config(tmp_path, "scripted", [
        {"name": "medqa_test", "path": medqa, "format": "medqa"},
        {"name": "pubmedqa", "path": str(tmp_path / "ori_pqal.json"), "format": "pubmedqa"},
    ])
    run_job("eval", config)
    results = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert results["benchmarks"]["medqa_test"]["correct"] == 2  # answers A, B, A, D
    assert results["benchmarks"]["pubmedqa"]["correct"] == 3  # yes -> A, three times
    assert results["accuracy_mean"] == pytest.approx((2 / 4 + 3 / 5) / 2)
    assert results["format_rate"] == 1.0
    pubmed_prompt = seen[4][-1]["content"]
    assert pubmed_prompt.endswith("A. yes\nB. no\nC. maybe")


def test_accept_text_grades_an_option_named_by_its_text():
    item = Item(id="q1", question="Which?", options={"A": "gout", "B": "Pneumonia", "C": "asthma"},
                answer="B")
    completions = ["<think>x</think><answer>pneumonia</answer>",  # right, by text
                   "<think>x</think><answer>B</answer>",  # right, by letter
                   "<think>x</think><answer>measles</answer>"]  # the shape, but no option
    rows = score_item("b", item, completions, accept="text")
    assert [(r["extracted"], r["named_by"], r["correct"], r["well_formed"]) for r in rows] == [
        ("B", "text", True, True), ("B", "letter", True, True), (None, None, False, True)]
    assert summarise(rows, 1, 3)["correct_by"] == {"letter": 1, "text": 1}
    letters = score_item("b", item, completions)  # the default: letters only
    assert [(r["correct"], r["well_formed"]) for r in letters] == [
        (False, False), (True, True), (False, False)]
