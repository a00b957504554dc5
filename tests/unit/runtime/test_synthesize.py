"""synthesize: sampled paths -> MCQ items through the job harness."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from data_fixtures import (
    read_jsonl,
    sample_rows,
    template_generator,
    write_config,
    write_jsonl,
)
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import SynthesizeJob
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.jobs.synthesize import clean_stem, shuffled_options
from fleming_dsl.runtime.teachers import CachedTeacher
from fleming_dsl.runtime.teachers.cache import DiskCache


def job(tmp_path: Path, rows: list[dict], **changes) -> tuple[Path, SynthesizeJob]:
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    cfg = SynthesizeJob(job="questions", experiment="t", seed=7, meta=str(tmp_path / "meta.json"),
                        samples=str(samples), prompt=str(REPO / "prompts/question.j2"),
                        teacher=template_generator(), cache_dir=str(tmp_path / "cache"),
                        output=str(tmp_path / "items.jsonl"), **changes)
    return write_config(tmp_path / "job.json", cfg), cfg


def test_paths_become_items_and_a_rerun_makes_no_calls(tmp_path):
    rows = sample_rows(120)
    config, cfg = job(tmp_path, rows)
    run_job("synthesize", str(config))
    items = read_jsonl(Path(cfg.output))
    assert len(items) == 120
    first = items[0]
    assert first["question"] == "Which disease presents with headache?"
    assert first["options"][first["answer"]] == rows[0]["answer"]
    assert sorted(first["options"].values()) == sorted([rows[0]["answer"], *rows[0]["distractors"]])
    assert first["provenance"]["path"] == rows[0]["path"] and first["source"] == "questions"
    two_hop = items[2]["question"]
    assert two_hop == ("Crushing chest pain is an adverse effect of ibuprofen. Which disease other "
                       "than those named presents with crushing chest pain?")
    letters = Counter(item["answer"] for item in items)
    assert set(letters) == set("ABCD") and max(letters.values()) < 50  # shuffled, not fixed
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert counts == {"input": 120, "output": 120, "malformed": 0, "teacher_calls": 120,
                      "cache_hits": 0, "rounds": {}}
    before = Path(cfg.output).read_bytes()
    run_job("synthesize", str(config))
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert (counts["teacher_calls"], counts["cache_hits"]) == (0, 120)
    assert Path(cfg.output).read_bytes() == before  # deterministic for a seed


def test_distractors_named_in_the_path_are_left_out(tmp_path):
    rows = sample_rows(3)
    rows[2]["distractors"] = ["ibuprofen", "gout", "asthma"]  # ibuprofen is on the path
    rows[1]["distractors"] = [rows[1]["path"][1]["node"]]  # only a path node: nothing left
    config, cfg = job(tmp_path, rows)
    run_job("synthesize", str(config))
    items = {row["id"]: row for row in read_jsonl(Path(cfg.output))}
    assert sorted(items["questions-s2"]["options"].values()) == sorted(
        ["gout", "asthma", rows[2]["answer"]])
    meta = json.loads(Path(cfg.meta).read_text())
    assert meta["counts"]["malformed"] == 1
    assert meta["metrics"]["malformed_examples"][0]["problem"] == "no distractor left"


def test_options_are_deterministic_per_seed_and_row():
    a = shuffled_options("x", ["y", "z", "w", "y"], 1, "r1")
    assert a == shuffled_options("x", ["y", "z", "w", "y"], 1, "r1")
    assert sorted(a[0].values()) == ["w", "x", "y", "z"] and a[0][a[1]] == "x"


def test_stem_problems_are_named():
    assert clean_stem("Question: Which disease?", "gout") == ("Which disease?", None)
    assert clean_stem("<think>hmm</think>", "gout")[1] == "empty question"
    assert clean_stem("Name the disease.", "gout")[1] == "not a question (no question mark)"
    assert clean_stem("Is it Gout?", "gout")[1] == "question names the answer"


def test_malformed_teacher_answers_are_counted_not_fatal(tmp_path, monkeypatch):
    class Sloppy:
        def identity(self):
            return {"backend": "sloppy", "model": "", "params": {}}

        def key_extra(self, request):
            return {}

        def generate(self, requests):
            return [["no question here"] if i % 2 else ["Which disease fits?"]
                    for i, _ in enumerate(requests)]

    monkeypatch.setattr("fleming_dsl.runtime.jobs.synthesize.make_teacher",
                        lambda g, cache, seed: CachedTeacher(Sloppy(), DiskCache(cache)))
    config, cfg = job(tmp_path, sample_rows(10))
    run_job("synthesize", str(config))
    meta = json.loads(Path(cfg.meta).read_text())
    assert (meta["counts"]["output"], meta["counts"]["malformed"]) == (5, 5)
    assert meta["metrics"]["malformed_examples"][0] == {
        "id": "s1", "problem": "not a question (no question mark)", "text": "no question here"}


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("distractors"), "field 'distractors' is missing"),
    (lambda r: r.update(mask_index=5), "field 'mask_index' must be an index into 'path', got 5"),
    (lambda r: r.update(answer="other"), "field 'answer' must be the masked path entity"),
    (lambda r: r.update(relations=[]), "field 'relations' must hold one relation per hop "
                                       "(len(path) - 1)"),
])
def test_bad_sample_row_is_one_located_line(tmp_path, change, message):
    rows = sample_rows(3)
    change(rows[1])
    config, cfg = job(tmp_path, rows)
    with pytest.raises(JobError) as err:
        run_job("synthesize", str(config))
    assert str(err.value) == f"{cfg.samples}:2: {message}"
    assert not Path(cfg.output).exists()


def test_variants_draw_fresh_distractors_and_move_the_answer(tmp_path):
    rows = sample_rows(6)
    for row in rows:  # a wider pool than one option set needs
        row["distractors"] = [f"{row['answer']} mimic {k}" for k in range(8)]
    config, cfg = job(tmp_path, rows, variants=3, options=4)
    run_job("synthesize", str(config))
    items = read_jsonl(Path(cfg.output))
    assert len(items) == 18
    assert [i["id"] for i in items[:3]] == ["questions-s0", "questions-s0-v1", "questions-s0-v2"]
    for start in range(0, 18, 3):
        group = items[start:start + 3]
        assert len({g["question"] for g in group}) == 1  # one stem per path
        assert all(len(g["options"]) == 4 for g in group)
        assert len({g["answer"] for g in group}) == 3  # the answer at a different letter each
        assert len({frozenset(g["options"].values()) for g in group}) > 1  # fresh draws
        assert [g["provenance"]["variant"] for g in group] == [0, 1, 2]
    before = Path(cfg.output).read_bytes()
    run_job("synthesize", str(config))
    assert Path(cfg.output).read_bytes() == before  # deterministic per seed
