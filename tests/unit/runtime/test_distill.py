"""distill: rationales, the refinement protocol, keep = correct / all, the chat output shape."""

from __future__ import annotations

import json
from pathlib import Path

from data_fixtures import (
    read_jsonl,
    repo_source,
    template_generator,
    write_config,
    write_jsonl,
)
from paths import REPO

from fleming_dsl.plan.jobconfig import DataSource, DistillJob
from fleming_dsl.runtime.data.items import Item, is_well_formed, prompt_messages
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.teachers import CachedTeacher
from fleming_dsl.runtime.teachers.cache import DiskCache

ITEMS = [
    {"id": f"i{n}", "question": f"Question number {n}?", "answer": "B",
     "options": {"A": "alpha", "B": "beta", "C": "gamma"}} for n in range(4)
]


def job(tmp_path: Path, sources=None, **changes) -> tuple[Path, DistillJob]:
    if sources is None:
        items = write_jsonl(tmp_path / "items.jsonl", ITEMS)
        sources = (DataSource(path=str(items), format="items", name="mine"),)
    settings = dict(refine=("backtrack", "explore", "self_correct"), max_rounds=3, keep="correct")
    settings.update(changes)
    cfg = DistillJob(job="cot", experiment="t", seed=1, meta=str(tmp_path / "meta.json"),
                     sources=sources, prompt=str(REPO / "prompts/reason.j2"),
                     teacher=template_generator(), cache_dir=str(tmp_path / "cache"),
                     output=str(tmp_path / "cot.jsonl"), **settings)
    return write_config(tmp_path / "job.json", cfg), cfg


class Stubborn:
    """Item i0 is right at once, i1 after one refinement, i2 after two, i3 never (wrong, then
    unreadable). Records every prompt it sees."""

    def __init__(self) -> None:
        self.prompts: list[tuple[str, int, str]] = []

    def identity(self):
        return {"backend": "stubborn", "model": "", "params": {}}

    def key_extra(self, request):
        return {"round": request.context["round"]}

    def generate(self, requests):
        out = []
        for request in requests:
            item, rnd = request.context["item"]["id"], request.context["round"]
            self.prompts.append((item, rnd, request.messages[-1]["content"]))
            solved_at = {"i0": 1, "i1": 2, "i2": 3}.get(item, 99)
            if rnd >= solved_at:
                out.append([f"<think>because {item} round {rnd}</think><answer>B</answer>"])
            elif item == "i3" and rnd == 3:
                out.append(["I am not sure."])
            else:
                out.append([f"<think>wrong {item} {rnd}</think><answer>A</answer>"])
        return out


def use(monkeypatch, backend) -> None:
    monkeypatch.setattr("fleming_dsl.runtime.jobs.distill.make_teacher",
                        lambda g, cache, seed: CachedTeacher(backend, DiskCache(cache)))


def test_refinement_rounds_and_keep_correct(tmp_path, monkeypatch):
    teacher = Stubborn()
    use(monkeypatch, teacher)
    config, cfg = job(tmp_path)
    run_job("distill", str(config))
    kept = {row["id"]: row for row in read_jsonl(Path(cfg.output))}
    assert sorted(kept) == ["i0", "i1", "i2"]
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert counts["rounds"] == {"1": 1, "2": 1, "3": 1, "unsolved": 1}
    assert (counts["input"], counts["output"], counts["malformed"]) == (4, 3, 1)
    assert counts["teacher_calls"] == 4 + 3 + 2
    # Round 2 uses the first strategy and shows the previous attempt; round 3 the second.
    round2 = next(p for i, r, p in teacher.prompts if (i, r) == ("i1", 2))
    assert "<think>wrong i1 1</think><answer>A</answer>" in round2
    assert "Go back to the last step that was sound" in round2
    round3 = next(p for i, r, p in teacher.prompts if (i, r) == ("i2", 3))
    assert "Try a different line of reasoning" in round3
    first = next(p for i, r, p in teacher.prompts if (i, r) == ("i0", 1))
    assert "previous attempt" not in first and "The verified correct answer is B (beta)." in first
    item = kept["i1"]
    expected = prompt_messages(Item.model_validate(ITEMS[1]))
    assert item["messages"][:2] == expected
    assert item["messages"][2] == {"role": "assistant",
                                   "content": "<think>because i1 round 2</think><answer>B</answer>"}
    assert item["provenance"]["distill_rounds"] == 2


def test_keep_all_keeps_last_readable_attempt(tmp_path, monkeypatch):
    use(monkeypatch, Stubborn())
    config, cfg = job(tmp_path, keep="all")
    run_job("distill", str(config))
    kept = {row["id"]: row for row in read_jsonl(Path(cfg.output))}
    assert kept["i3"]["messages"][-1]["content"] == "<think>wrong i3 2</think><answer>A</answer>"
    assert kept["i3"]["provenance"]["distill_correct"] is False


def test_no_refinement_when_max_rounds_is_one(tmp_path, monkeypatch):
    use(monkeypatch, Stubborn())
    config, cfg = job(tmp_path, max_rounds=1)
    run_job("distill", str(config))
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert counts["rounds"] == {"1": 1, "unsolved": 3} and counts["teacher_calls"] == 4


def test_template_teacher_on_the_embedded_train_set(tmp_path):
    config, cfg = job(tmp_path, sources=(repo_source("data/train/medqa_train.jsonl", "medqa",
                                                     "medqa_train"),))
    run_job("distill", str(config))
    rows = read_jsonl(Path(cfg.output))
    assert len(rows) == 297
    for row in rows:
        answer = row["messages"][-1]["content"]
        assert is_well_formed(answer) and answer.endswith(f"<answer>{row['answer']}</answer>")
        assert len(answer.split()) <= 40 and row["source"] == "medqa_train"
    run_job("distill", str(config))
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert (counts["teacher_calls"], counts["cache_hits"]) == (0, 297)
