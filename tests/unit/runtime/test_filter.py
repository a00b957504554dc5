"""filter: every step removes what it should, says why, and the counts have the agreed shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import (
    read_jsonl,
    repo_source,
    template_generator,
    write_config,
    write_jsonl,
)
from paths import REPO

from fleming_dsl.ir import Backend
from fleming_dsl.plan.jobconfig import (
    DataSource,
    DecontaminateStep,
    DedupeStep,
    DifficultyStep,
    FilterJob,
    FormatStep,
    Generator,
    VerifyLabelStep,
)
from fleming_dsl.runtime.data.items import Item, completion_text, prompt_messages
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.jobs.filter import format_problem
from fleming_dsl.runtime.teachers import CachedTeacher
from fleming_dsl.runtime.teachers.cache import DiskCache


def item(n: int, question: str | None = None, **changes) -> dict:
    base = {"id": f"i{n}", "question": question or f"Which enzyme number {n} is inhibited by "
            f"drug {n} in the liver of adult patients with condition {n}?",
            "options": {"A": f"alpha {n}", "B": f"beta {n}", "C": f"gamma {n}"}, "answer": "B"}
    base.update(changes)
    return base


def job(tmp_path: Path, rows: list[dict], steps: tuple) -> tuple[Path, FilterJob]:
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = FilterJob(job="clean", experiment="t", seed=3, meta=str(tmp_path / "meta.json"),
                    source=DataSource(path=str(source), format="items"), steps=steps,
                    cache_dir=str(tmp_path / "cache"), output=str(tmp_path / "out.jsonl"),
                    review=str(tmp_path / "review.jsonl"))
    return write_config(tmp_path / "job.json", cfg), cfg


def run(tmp_path: Path, rows: list[dict], *steps) -> tuple[list[dict], dict]:
    config, cfg = job(tmp_path, rows, tuple(steps))
    run_job("filter", str(config))
    return read_jsonl(Path(cfg.output)), json.loads(Path(cfg.meta).read_text())


@pytest.mark.parametrize("changes, problem", [
    ({"options": {"A": "x", "B": "X ", "C": "y"}}, "duplicate options"),
    ({"options": {"A": "x"}, "answer": "A"}, "fewer than 2 options"),
    ({"answer": "D"}, "answer not among options"),
    ({"question": "  "}, "empty text"),
    ({"options": {"A": "caf\u00c3\u00a9", "B": "y"}}, "encoding debris"),
    ({"question": "Which one\ufffd?"}, "encoding debris"),
    ({"question": "Which\x07 one?"}, "encoding debris"),
    ({"options": {"A": "x", "C": "y"}, "answer": "A"}, "option letters not A.. in order"),
    ({"messages": [{"role": "assistant", "content": "B"}]}, "malformed messages"),
    ({}, None),
])
def test_format_problems(changes, problem):
    assert format_problem(Item.model_validate(item(1, **changes))) == problem


def test_format_drops_a_worked_answer_with_encoding_debris():
    broken = Item.model_validate(item(1))
    broken.messages = prompt_messages(broken) + [{"role": "assistant", "content": completion_text(
        "The findings point to beta\u00e2\u20ac\u2122s option", "B")}]
    assert format_problem(broken) == "encoding debris"


def test_format_accepts_distilled_messages():
    good = Item.model_validate(item(1))
    good.messages = prompt_messages(good) + [{"role": "assistant",
                                              "content": completion_text("why", "B")}]
    assert format_problem(good) is None


def test_counts_have_the_agreed_shape(tmp_path):
    rows = [item(1), item(2, answer="Z"), item(3, options={"A": "x", "B": "x"})]
    kept, meta = run(tmp_path, rows, FormatStep())
    assert [r["id"] for r in kept] == ["i1"]
    counts = meta["counts"]
    assert counts["input"] == 3 and counts["kept"] == 1 and counts["review"] == 0
    assert counts["removed"] == {"format": 2, "verify_label": 0, "dedupe": 0, "decontaminate": 0}
    assert counts["buckets"] == {"easy": 0, "moderate": 0, "hard": 0}
    assert counts["reasons"]["format"] == {"answer not among options": 1, "duplicate options": 1}


def with_path(n: int, label: str) -> dict:
    """An item whose provenance names option B's text as the KG answer."""
    return item(n, answer=label, provenance={
        "answer": f"beta {n}", "mask_index": 0, "relations": ["disease_phenotype_positive"],
        "path": [{"node": f"beta {n}", "type": "disease"}, {"node": "fever", "type": "effect/phenotype"}]})


@pytest.mark.parametrize("on_fail, review", [("review", 1), ("drop", 0)])
def test_verify_label_sends_disagreements_to_review_or_drops(tmp_path, on_fail, review):
    step = VerifyLabelStep(judge=template_generator(), votes=5, agree=3, on_fail=on_fail)
    kept, meta = run(tmp_path, [with_path(1, "B"), with_path(2, "C")], step)
    assert [r["id"] for r in kept] == ["i1"]
    assert meta["counts"]["removed"]["verify_label"] == 1 and meta["counts"]["review"] == review
    reviewed = read_jsonl(tmp_path / "review.jsonl")
    assert [r["id"] for r in reviewed] == (["i2"] if review else [])
    if review:
        assert reviewed[0]["provenance"]["label_votes"] == {"matching": 0, "votes": 5}
    assert meta["counts"]["reasons"]["verify_label"] == {
        "fewer than 3 of 5 votes match the label": 1}


class Voter:
    """Votes per item: i1 always B, i2 B on 1 of 4 samples, i3 unreadable."""

    def identity(self):
        return {"backend": "voter", "model": "m", "params": {}}

    def key_extra(self, request):
        return {}

    def generate(self, requests):
        out = []
        for request in requests:
            name = request.messages[-1]["content"].split()[3]
            # i1's last sample names option B by its text (case aside): it matches as a letter would
            texts = {"1": ["<answer>B</answer>"] * (request.n - 1) + ["<answer>Beta 1</answer>"],
                     "2": ["The answer is B"] + ["<answer>A</answer>"] * (request.n - 1),
                     "3": ["no idea"] * request.n}[name]
            out.append(texts)
        return out


def test_difficulty_by_pass_rate_of_k_samples(tmp_path, monkeypatch):
    monkeypatch.setattr("fleming_dsl.runtime.jobs.filter.make_teacher",
                        lambda g, cache, seed: CachedTeacher(Voter(), DiskCache(cache)))
    model = Generator(model="some/model", backend=Backend(kind="transformers", temperature=0.7))
    step = DifficultyStep(method="pass_rate", model=model, samples=4, easy=0.75, moderate=0.25)
    kept, meta = run(tmp_path, [item(1), item(2), item(3)], step)
    assert [(r["pass_rate"], r["difficulty"]) for r in kept] == [
        (1.0, "easy"), (0.25, "moderate"), (0.0, "hard")]
    assert meta["counts"]["buckets"] == {"easy": 1, "moderate": 1, "hard": 1}
    assert meta["counts"]["malformed"] == 4  # i3's unreadable samples
    assert meta["metrics"]["pass_rate_by_bucket"] == {"easy": 1.0, "hard": 0.0, "moderate": 0.25}


def test_difficulty_by_template_grader(tmp_path):
    two_hop = with_path(2, "B")
    two_hop["provenance"].update(relations=["x", "y"], answer_count=1)
    rows = [with_path(1, "B"), two_hop, item(3, question="Which is short?")]
    step = DifficultyStep(method="grader", model=template_generator(), samples=1, easy=0.75,
                          moderate=0.25, prompt=str(REPO / "prompts/grader.j2"))
    kept, meta = run(tmp_path, rows, step)
    assert [r["difficulty"] for r in kept] == ["easy", "hard", "easy"]
    # grader levels are levels: no pass rate is made up for them (issue 11)
    assert [r.get("pass_rate") for r in kept] == [None, None, None]
    assert meta["metrics"]["pass_rate_by_bucket"] == {}
    assert meta["metrics"]["difficulty_method"] == "grader"


def test_dedupe_exact_and_near(tmp_path):
    stem = ("A sixty year old man has crushing chest pain radiating to the left arm with "
            "sweating and nausea for one hour; which diagnosis is most likely?")
    rows = [item(1, question=stem),
            item(2, question=stem.upper(), options={"A": "beta 1", "B": "alpha 1", "C": "gamma 1"}),
            item(3, question=stem.replace("one hour", "two hours"), options=item(1)["options"]),
            item(4)]
    kept, meta = run(tmp_path, rows, DedupeStep(method="minhash", threshold=0.7))
    assert [r["id"] for r in kept] == ["i1", "i4"]
    assert meta["counts"]["reasons"]["dedupe"] == {
        "exact duplicate": 1, "near duplicate (minhash jaccard >= 0.7)": 1}
    kept, _ = run(tmp_path, rows, DedupeStep(method="exact", threshold=0.7))
    assert [r["id"] for r in kept] == ["i1", "i3", "i4"]


def test_decontaminate_against_the_embedded_eval_sets(tmp_path):
    eval_question = json.loads((REPO / "data/eval/medqa_test.jsonl").read_text().splitlines()[0])
    leaked = item(1, question="Revision note: " + eval_question["question"][:90])
    step = DecontaminateStep(against=(
        repo_source("data/eval/medqa_test.jsonl", "medqa", "medqa_test"),
        repo_source("data/eval/pubmedqa.json", "pubmedqa", "pubmedqa")), ngram=8)
    kept, meta = run(tmp_path, [leaked, item(2)], step)
    assert [r["id"] for r in kept] == ["i2"]
    assert meta["counts"]["removed"]["decontaminate"] == 1
    assert meta["metrics"]["contamination_examples"][0]["id"] == "i1"


@pytest.mark.slow  # ~18 s: builds the tiny model (tokenizer training) and loads transformers
def test_pass_rate_with_a_real_tiny_model(tmp_path):
    """transformers backend end to end: a random-weight tiny model answers (mostly garbage);
    every item still gets a pass rate, unreadable samples are counted, a re-run is all cache."""
    from generation_fixtures import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    model = Generator(model=str(model_dir),
                      backend=Backend(kind="transformers", temperature=0.8, max_tokens=8))
    step = DifficultyStep(method="pass_rate", model=model, samples=2, easy=0.75, moderate=0.25)
    config, cfg = job(tmp_path, [item(1), item(2), item(3)], (step,))
    run_job("filter", str(config))
    kept = read_jsonl(Path(cfg.output))
    assert [r["pass_rate"] in (0.0, 0.5, 1.0) for r in kept] == [True] * 3
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert counts["teacher_calls"] == 3 and 0 <= counts["malformed"] <= 6
    run_job("filter", str(config))
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert (counts["teacher_calls"], counts["cache_hits"]) == (0, 3)
    assert read_jsonl(Path(cfg.output)) == kept


def test_dedupe_treats_the_variants_of_a_path_as_one_question(tmp_path):
    """Variants share a stem and often the option set: they are not duplicates of each other,
    and they follow their first variant when it duplicates an earlier question."""
    def variant(n, path, v, options):
        row = item(n, question="Which disease presents with fever and rash?", options=options)
        row["source"] = "questions"
        row["provenance"] = {"id": path, "variant": v}
        return row

    same = {"A": "measles", "B": "gout", "C": "asthma"}
    rows = [variant(1, "p1", 0, same), variant(2, "p1", 1, same),
            variant(3, "p1", 2, {"A": "gout", "B": "measles", "C": "angina"}),
            variant(4, "p2", 0, same), variant(5, "p2", 1, same)]  # p2 repeats p1
    kept, meta = run(tmp_path, rows, DedupeStep(method="exact", threshold=0.8))
    assert [r["id"] for r in kept] == ["i1", "i2", "i3"]
    assert meta["counts"]["reasons"]["dedupe"] == {"exact duplicate": 1,
                                                   "variant of a removed duplicate": 1}
