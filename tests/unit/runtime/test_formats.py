"""Benchmark format loaders, the embedded data sets, and the real PubMedQA release."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.data.formats import load_items, medmcqa_base
from fleming_dsl.runtime.data.textsim import NgramIndex

REAL_PUBMEDQA = REPO.parent / "shared" / "realdata" / "pubmedqa" / "ori_pqal.json"


def jsonl(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_medqa(tmp_path):
    path = jsonl(tmp_path, "test.jsonl", [{"question": "Q?", "answer": "b", "options": {
        "A": "a", "B": "b", "C": "c", "D": "d"}, "meta_info": "step1", "answer_idx": "B"}])
    (item,) = load_items(path, "medqa")
    assert (item.id, item.question, item.answer, item.source) == ("test-1", "Q?", "B", "test")
    assert item.options == {"A": "a", "B": "b", "C": "c", "D": "d"}


def test_medmcqa_cop_base_is_detected_per_file(tmp_path):
    row = {"question": "Q", "opa": "a", "opb": "b", "opc": "c", "opd": "d"}
    zero = jsonl(tmp_path, "dev.jsonl", [{**row, "id": "1", "cop": 0}, {**row, "id": "2", "cop": 2}])
    assert [i.answer for i in load_items(zero, "medmcqa")] == ["A", "C"]
    one = jsonl(tmp_path, "orig.jsonl", [{**row, "id": "1", "cop": 4}, {**row, "id": "2", "cop": 2}])
    assert [i.answer for i in load_items(one, "medmcqa")] == ["D", "B"]
    # Only 1..3 seen: the original release (.json) counts from 1, the copies from 0.
    assert medmcqa_base(Path("dev.json"), [1, 2]) == 1
    assert medmcqa_base(Path("dev.jsonl"), [1, 2]) == 0


def test_other_published_formats(tmp_path):
    cases = {
        "medxpertqa": ({"id": "Text-1", "question": "Q", "options": {l: l.lower() for l in "ABCDEFGHIJ"},
                        "label": "J"}, "J", 10),
        "mmlu": ({"question": "Q", "choices": ["w", "x", "y", "z"], "answer": 2}, "C", 4),
        "mmlu_pro": ({"question_id": 7, "question": "Q", "options": list("abcdefghij"),
                      "answer": "E", "answer_index": 4}, "E", 10),
        "medbullets": ({"question": "Q", "opa": "1", "opb": "2", "opc": "3", "opd": "4",
                        "ope": "5", "answer_idx": "E"}, "E", 5),
        "careqa": ({"unique_id": "u1", "question": "Q", "op1": "a", "op2": "b", "op3": "c",
                    "op4": "d", "cop": 1}, "A", 4),
        "jmed": ({"id": "j", "question": "Q", "options": [str(i) for i in range(21)],
                  "answer": "U"}, "U", 21),
        "mcq": ({"question": "Q", "options": {"A": "x", "B": "y"}, "answer": "B"}, "B", 2),
    }
    for fmt, (row, answer, n_options) in cases.items():
        (item,) = load_items(jsonl(tmp_path, f"{fmt}.jsonl", [row]), fmt)
        assert (item.answer, len(item.options)) == (answer, n_options), fmt


def test_chat_and_items(tmp_path):
    chat = {"messages": [{"role": "user", "content": "Which?\n\nA. one\nB. two"},
                         {"role": "assistant", "content": "<think>t</think><answer>B</answer>"}]}
    (item,) = load_items(jsonl(tmp_path, "c.jsonl", [chat]), "chat")
    assert (item.question, item.options, item.answer) == ("Which?", {"A": "one", "B": "two"}, "B")
    own = {"id": "i1", "question": "Q", "options": {"A": "x", "B": "y"}, "answer": "A",
           "difficulty": "hard", "pass_rate": 0.0}
    (item,) = load_items(jsonl(tmp_path, "items.jsonl", [own]), "items")
    assert item.difficulty == "hard"


@pytest.mark.parametrize("fmt, row, message", [
    ("medqa", {"question": "Q", "options": {"A": "a", "B": "b"}}, "field 'answer_idx' is missing"),
    ("medqa", {"question": "Q", "options": {"A": "a", "B": "b"}, "answer_idx": "E"},
     "field 'answer_idx' is 'E', not one of the option letters AB"),
    ("medqa", {"question": "", "options": {"A": "a"}, "answer_idx": "A"},
     "field 'question' must be a non-empty string"),
    ("medmcqa", {"question": "Q", "opa": "a", "cop": 0}, "fields 'opa'..'opd' hold fewer than 2 options"),
    ("pubmedqa", {"QUESTION": "Q", "CONTEXTS": [], "final_decision": "perhaps"},
     "field 'final_decision' is 'perhaps', expected yes, no or maybe"),
    ("items", {"id": "x", "question": "Q", "options": {"A": "a"}}, "field 'answer' field required"),
])
def test_bad_row_names_file_line_and_field(tmp_path, fmt, row, message):
    path = tmp_path / "bad.jsonl"
    good = {"question": "Q", "options": {"A": "a", "B": "b"}, "answer_idx": "A"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n" if fmt == "medqa"
                    else json.dumps(row) + "\n")
    line = 2 if fmt == "medqa" else 1
    with pytest.raises(JobError) as err:
        load_items(path, fmt)
    assert str(err.value) == f"{path}:{line}: {message}"


def test_file_level_errors(tmp_path):
    with pytest.raises(JobError, match=r"nope\.jsonl: dataset file not found$"):
        load_items(tmp_path / "nope.jsonl", "medqa")
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"question": "Q"}\n{oops\n')
    with pytest.raises(JobError, match=r"x\.jsonl:2: not valid JSON"):
        load_items(bad, "medqa")
    with pytest.raises(JobError, match="unknown dataset format 'medqaa'"):
        load_items(bad, "medqaa")


def test_real_pubmedqa_release():
    if not REAL_PUBMEDQA.is_file():
        pytest.skip(f"real PubMedQA not present at {REAL_PUBMEDQA}")
    items = load_items(REAL_PUBMEDQA, "pubmedqa")
    assert len(items) == 1000
    by_letter = {letter: sum(i.answer == letter for i in items) for letter in "ABC"}
    assert by_letter == {"A": 552, "B": 338, "C": 110}  # yes / no / maybe as published
    first = items[0]
    assert first.id == "21645374" and first.options == {"A": "yes", "B": "no", "C": "maybe"}
    assert first.question.endswith("\nQuestion: Do mitochondria play a role in remodelling lace "
                                   "plant leaves during programmed cell death?")


# ---------------------------------------------------------------- the embedded sets


def embedded() -> dict[str, list]:
    return {
        "medqa_test": load_items(REPO / "data/eval/medqa_test.jsonl", "medqa"),
        "medmcqa_dev": load_items(REPO / "data/eval/medmcqa_dev.jsonl", "medmcqa"),
        "pubmedqa": load_items(REPO / "data/eval/pubmedqa.json", "pubmedqa"),
        "medqa_train": load_items(REPO / "data/train/medqa_train.jsonl", "medqa"),
    }


def test_embedded_sets_sizes_and_shapes():
    sets = embedded()
    assert all(len(sets[name]) >= 60 for name in ("medqa_test", "medmcqa_dev", "pubmedqa"))
    assert 280 <= len(sets["medqa_train"]) <= 320
    for name, items in sets.items():
        assert len({i.id for i in items}) == len(items), name
        for item in items:
            assert item.answer in item.options
            assert len(set(item.options.values())) == len(item.options), item.id
    letters = {i.answer for i in sets["medqa_test"]}
    assert letters == set("ABCD")  # answers are spread over the letters


def test_embedded_train_is_disjoint_from_eval_under_decontamination():
    sets = embedded()
    evaluation = [i.question for n in ("medqa_test", "medmcqa_dev", "pubmedqa") for i in sets[n]]
    for n in (13, 8, 5):
        index = NgramIndex(evaluation, n)
        shared = [(i.id, index.shared(i.question)) for i in sets["medqa_train"]
                  if index.shared(i.question)]
        assert shared == [], n


def test_case_bank_asks_other_cases_than_medqa_test():
    """RL's question bank: every medqa_test disease four times, never a test question, option
    set or finding set, and only a few items share an 8-gram with the evaluation (what the tiny
    spec's decontamination filter removes, so the funnel shows a real removal)."""
    bank = load_items(REPO / "data/train/case_bank.jsonl", "medqa")
    test = embedded()["medqa_test"]
    assert len(bank) == 4 * len(test)
    answers = Counter(item.options[item.answer] for item in bank)
    assert answers == Counter({item.options[item.answer]: 4 for item in test})
    assert not {i.question for i in bank} & {i.question for i in test}
    assert not {frozenset(i.options.values()) for i in bank} & {frozenset(i.options.values()) for i in test}
    tested = {}  # disease -> the four findings medqa_test shows
    for item in test:
        found = re.fullmatch(r".* is evaluated for (.+), (.+) and (.+)\. On examination there is "
                             r"also (.+)\. What is the most likely diagnosis\?", item.question)
        tested[item.options[item.answer]] = found.groups()
    for item in bank:
        assert sum(f in item.question for f in tested[item.options[item.answer]]) < 4, item.question
    index = NgramIndex([i.question for i in test], 8)
    shared = [i.id for i in bank if index.shared(i.question)]
    assert 0 < len(shared) <= len(bank) // 20, shared


def _kg_edges() -> set[tuple[str, str, str]]:
    import csv

    with open(REPO / "data/medkg/kg.csv", encoding="utf-8") as handle:
        return {(row["relation"], row["x_name"], row["y_name"]) for row in csv.DictReader(handle)}


def test_embedded_benchmarks_ask_what_the_graph_holds_in_its_spelling():
    """One source of facts: every MedQA vignette's findings are phenotypes of its answer in the
    graph, and every MedMCQA answer is an adverse effect the graph gives that drug."""
    edges = _kg_edges()
    sets = embedded()
    assert len(sets["medqa_test"]) == 139  # every graph disease
    phenotypes: dict[str, set[str]] = {}
    for relation, x, y in edges:
        if relation == "disease_phenotype_positive":
            phenotypes.setdefault(x, set()).add(y)
    for item in sets["medqa_test"]:
        disease = item.options[item.answer]
        shown = {p for p in phenotypes[disease] if p in item.question}
        assert len(shown) >= 4, (item.id, shown)
        for letter, other in item.options.items():
            if letter != item.answer:  # a fair distractor has none of the findings shown
                assert not phenotypes[other] & shown, (item.id, other)
    for item in sets["medmcqa_dev"]:
        drug = item.question.removeprefix("Characteristic adverse effect of ").rstrip(":")
        assert ("drug_effect", drug, item.options[item.answer]) in edges, item.id


def test_build_script_reproduces_the_committed_files():
    done = subprocess.run([sys.executable, str(REPO / "data/build_sets.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
