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

import pytest

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
    settings = dict(refine=("backtrack", "explore", "self_correct"), max_rounds=3, keep="correct",
                    prompt=str(REPO / "prompts/reason.j2"), teacher=template_generator())
    settings.update(changes)
    cfg = DistillJob(job="cot", experiment="t", seed=1, meta=str(tmp_path / "meta.json"),
                     sources=sources, cache_dir=str(tmp_path / "cache"),
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


def kept_by_id(cfg: DistillJob) -> dict:
    return {row["id"]: row for row in read_jsonl(Path(cfg.output))}


def use(monkeypatch, backend) -> None:
    monkeypatch.setattr("fleming_dsl.runtime.jobs.distill.make_teacher",
                        lambda g, cache, seed: CachedTeacher(backend, DiskCache(cache)))


def distilled(monkeypatch, backend, config: Path, cfg: DistillJob) -> dict:
    """Run the job on `backend`; the kept items by id."""
    use(monkeypatch, backend)
    run_job("distill", str(config))
    return kept_by_id(cfg)


def test_refinement_rounds_and_keep_correct(tmp_path, monkeypatch):
    teacher = Stubborn()
    config, cfg = job(tmp_path)
    kept = distilled(monkeypatch, teacher, config, cfg)
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
    kept = kept_by_id(cfg)
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


# ---------------------------------------------------------------- protocol = search

from fleming_dsl.errors import JobError  # noqa: E402
from fleming_dsl.ir import Backend  # noqa: E402
from fleming_dsl.plan.jobconfig import Generator  # noqa: E402
from fleming_dsl.runtime.data.chains import drawn_strategy  # noqa: E402
from fleming_dsl.runtime.teachers.backends.template import TemplateBackend  # noqa: E402


def search_job(tmp_path: Path, rows=ITEMS, **changes) -> tuple[Path, DistillJob]:
    items = write_jsonl(tmp_path / "items.jsonl", rows)
    settings = dict(protocol="search", prompt=str(REPO / "prompts/search.j2"),
                    rewrite=str(REPO / "prompts/rewrite.j2"),
                    sources=(DataSource(path=str(items), format="items", name="mine"),))
    settings.update(changes)
    return job(tmp_path, **settings)


class Searcher(Stubborn):
    """Stubborn under search: a later round opens with a reflection on the answer before; the
    rewrite is the template teacher's. Records every request's context too."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[dict] = []

    def key_extra(self, request):
        return {"task": request.task, "round": request.context.get("round")}

    def generate(self, requests):
        self.contexts += [r.context for r in requests]
        reasons = [r for r in requests if r.task == "reason"]
        answers = iter(super().generate(reasons))
        out = []
        for request in requests:
            if request.task == "rewrite":
                out.append([TemplateBackend().rewrite(request.context)])
                continue
            text = next(answers)[0]
            if request.context["round"] > 1 and "<think>" in text:
                text = text.replace("<think>", "<think>Wait, alpha cannot be right. ", 1)
            out.append([text])
        return out


def test_search_hides_the_label_from_every_request(tmp_path, monkeypatch):
    def prompts_for(label: str, protocol: str) -> list:
        teacher = Searcher()
        use(monkeypatch, teacher)
        rows = [{**row, "answer": label, "options": {**row["options"], "D": "delta"}}
                for row in ITEMS]  # the teacher answers A or B: never the label
        root = tmp_path / f"{protocol}-{label}"
        root.mkdir()
        config, _ = (search_job(root, rows) if protocol == "search" else
                     job(root, sources=(DataSource(path=str(write_jsonl(root / "i.jsonl", rows)),
                                                   format="items", name="mine"),)))
        try:
            run_job("distill", str(config))
        except JobError:
            pass  # nothing kept: every answer names A
        reason = [c for c in teacher.contexts if "round" in c]
        assert all("answer" not in c["item"] for c in reason) or protocol == "rationale"
        return [p for _, _, p in teacher.prompts]

    # two runs whose items differ only in their label send the same prompts, word for word
    assert prompts_for("C", "search") == prompts_for("D", "search")
    assert prompts_for("C", "rationale") != prompts_for("D", "rationale")  # the control


def test_search_continues_the_chain_and_rewrites_a_late_success(tmp_path, monkeypatch):
    teacher = Searcher()
    config, cfg = search_job(tmp_path)
    kept = distilled(monkeypatch, teacher, config, cfg)
    assert sorted(kept) == ["i0", "i1", "i2"]  # keep = correct drops the never-solved i3
    # round 2 of i1 carries the whole chain so far and the drawn strategy's instruction
    round2 = next(p for i, r, p in teacher.prompts if (i, r) == ("i1", 2))
    assert "Your reasoning so far:\n<think>wrong i1 1</think><answer>A</answer>" in round2
    strategy = drawn_strategy(cfg.refine, cfg.seed, "i1", 2)
    assert {"backtrack": "backtrack:", "explore": "explore a new path:",
            "self_correct": "correct yourself:"}[strategy] in round2
    # one rewritten chain: the first attempt, the reflection on it, the answer
    assert kept["i1"]["messages"][-1]["content"] == (
        "<think>wrong i1 1 Wait, alpha cannot be right. because i1 round 2 Checking beta "
        "against the question once more, it fits.</think><answer>B</answer>")
    record = kept["i1"]["provenance"]["distill"]
    assert record["protocol"] == "search" and record["rewrite"] == "rewritten"
    assert [(a["round"], a["strategy"], a["answer"], a["verified"]) for a in record["attempts"]] == [
        (1, None, "A", False), (2, strategy, "B", True)]
    assert record["attempts"][0]["text"] == "<think>wrong i1 1</think><answer>A</answer>"
    # a round-1 success needs no rewrite
    assert kept["i0"]["messages"][-1]["content"] == "<think>because i0 round 1</think><answer>B</answer>"
    assert kept["i0"]["provenance"]["distill"]["rewrite"] == "none"
    meta = json.loads(Path(cfg.meta).read_text())
    counts = meta["counts"]
    assert meta["metrics"]["protocol"] == "search"
    assert counts["rounds"] == {"1": 1, "2": 1, "3": 1, "unsolved": 1}
    assert sum(counts["strategies"].values()) == 1 + 2 + 2  # i1 once, i2 and i3 twice
    assert counts["chains"] == {"searches": 2, "rewrites": {"rewritten": 2},
                                "words_before": (3 + 9) + (3 + 8 + 9),
                                "words_after": (3 + 9) + (3 + 8 + 9) + 2 * 9}


def test_without_a_rewrite_prompt_the_attempts_are_joined(tmp_path, monkeypatch):
    use(monkeypatch, Searcher())
    config, cfg = search_job(tmp_path, rewrite=None)
    run_job("distill", str(config))
    kept = kept_by_id(cfg)
    assert kept["i1"]["messages"][-1]["content"] == (
        "<think>wrong i1 1\n\nWait, alpha cannot be right. because i1 round 2</think><answer>B</answer>")
    assert kept["i1"]["provenance"]["distill"]["rewrite"] == "joined"


class Contrary(Searcher):
    """Its rewrite concludes on another option than the search did."""

    def generate(self, requests):
        out = super().generate(requests)
        return [["<think>On reflection, gamma.</think><answer>C</answer>"] if r.task == "rewrite"
                else texts for r, texts in zip(requests, out)]


def test_a_rewrite_that_changes_the_answer_is_not_used(tmp_path, monkeypatch):
    config, cfg = search_job(tmp_path)
    kept = distilled(monkeypatch, Contrary(), config, cfg)
    assert kept["i1"]["messages"][-1]["content"] == (
        "<think>wrong i1 1\n\nWait, alpha cannot be right. because i1 round 2</think><answer>B</answer>")
    assert kept["i1"]["provenance"]["distill"]["rewrite"] == "failed"
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    assert counts["chains"]["rewrites"] == {"failed": 2}


def test_search_keep_all_keeps_the_unsolved(tmp_path, monkeypatch):
    use(monkeypatch, Searcher())
    config, cfg = search_job(tmp_path, keep="all")
    run_job("distill", str(config))
    kept = kept_by_id(cfg)
    assert sorted(kept) == ["i0", "i1", "i2", "i3"]
    assert kept["i3"]["provenance"]["distill_correct"] is False


class FreeText:
    """Answers in words that name no option exactly."""

    def identity(self):
        return {"backend": "free", "model": "", "params": {}}

    def key_extra(self, request):
        return {"task": request.task}

    def generate(self, requests):
        return [["<think>The findings fit it.</think><answer>it is beta, surely</answer>"]
                for _ in requests]


class Judge:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def identity(self):
        return {"backend": "judge", "model": "", "params": {}}

    def key_extra(self, request):
        return {}

    def generate(self, requests):
        self.asked += [r.messages[-1]["content"] for r in requests]
        return [["True" if "beta" in r.context["response"] else "False"] for r in requests]


def test_a_declared_judge_verifies_answers_that_name_no_option(tmp_path, monkeypatch):
    judge = Judge()
    monkeypatch.setattr("fleming_dsl.runtime.jobs.distill.make_teacher",
                        lambda g, cache, seed: CachedTeacher(judge if g.model == "judge" else FreeText(),
                                                             DiskCache(cache)))
    config, cfg = search_job(tmp_path, judge=Generator(model="judge", backend=Backend(kind="template")))
    run_job("distill", str(config))
    rows = read_jsonl(Path(cfg.output))
    assert len(rows) == 4 and len(judge.asked) == 4
    assert judge.asked[0].startswith("<Model Response>\nit is beta, surely\n</Model Response>")
    assert "<Reference Answer>\nbeta\n</Reference Answer>" in judge.asked[0]
    assert rows[0]["messages"][-1]["content"] == "<think>The findings fit it.</think><answer>beta</answer>"
    assert rows[0]["provenance"]["distill"]["attempts"][0]["judged"] is True
    # without the judge the same answers fail the verifier
    (tmp_path / "nojudge").mkdir()
    config, cfg = search_job(tmp_path / "nojudge")
    with pytest.raises(JobError, match="no trajectory kept of 4 items"):
        run_job("distill", str(config))


def graph_items(count: int) -> list[dict]:
    """Items whose provenance names the answer entity (what the template teacher knows)."""
    rows = []
    for n in range(count):
        options = {"A": f"disease {n}a", "B": f"disease {n}b", "C": f"disease {n}c", "D": f"disease {n}d"}
        letter = "ABCD"[n % 4]
        rows.append({"id": f"g{n}", "question": f"Which disease presents with finding {n}?",
                     "options": options, "answer": letter, "provenance": {"answer": options[letter]}})
    return rows


def fallible(error_rate: float = 0.4, malformed_rate: float = 0.1) -> Generator:
    return Generator(model="", backend=Backend(kind="template", temperature=0.0,
                                               error_rate=error_rate, malformed_rate=malformed_rate))


def test_the_fallible_template_teacher_is_solved_in_later_rounds(tmp_path):
    config, cfg = search_job(tmp_path, rows=graph_items(200), teacher=fallible())
    run_job("distill", str(config))
    counts = json.loads(Path(cfg.meta).read_text())["counts"]
    rounds = counts["rounds"]
    assert rounds["1"] > rounds["2"] > rounds["3"] > 0 and rounds["unsolved"] > 0
    assert counts["output"] == 200 - rounds["unsolved"] and counts["malformed"] > 0
    for row in read_jsonl(Path(cfg.output)):
        record = row["provenance"]["distill"]
        chain = row["messages"][-1]["content"]
        assert len(record["attempts"]) == record["solved_round"]
        if record["solved_round"] == 1:
            continue
        # the rewritten chain holds the first attempt and each reflection, in order
        first, second = record["attempts"][0]["text"], record["attempts"][1]["text"]
        reflection = second[len("<think>"):second.index(". ") + 1]
        assert reflection.startswith("Wait, ") and reflection in chain
        if "<answer>" in first and "\u00e2" not in first:
            assert first[len("<think>"):first.index("</think>")] in chain
        assert chain.index(reflection) > 0 and chain.endswith(f"<answer>{row['answer']}</answer>")
    before = Path(cfg.output).read_bytes()
    run_job("distill", str(config))  # from the cache: the same bytes
    assert Path(cfg.output).read_bytes() == before


def test_an_oracle_template_teacher_is_never_wrong(tmp_path):
    config, cfg = search_job(tmp_path, rows=graph_items(40), teacher=fallible(0.0, 0.0))
    run_job("distill", str(config))
    assert json.loads(Path(cfg.meta).read_text())["counts"]["rounds"] == {"1": 40, "unsolved": 0}


class Recording:
    """A backend wrapper keeping every prompt the model was given."""

    def __init__(self, inner) -> None:
        self.inner, self.prompts = inner, []

    def identity(self):
        return self.inner.identity()

    def key_extra(self, request):
        return self.inner.key_extra(request)

    def generate(self, requests):
        self.prompts += [r.messages[-1]["content"] for r in requests]
        return self.inner.generate(requests)


@pytest.mark.slow  # builds the tiny model and samples it
def test_search_with_a_transformers_teacher_on_the_tiny_model(tmp_path):
    """A real (random-weight) model: it never names an option, so every item runs all rounds,
    each continuing the chain with its drawn strategy, and no prompt depends on the label."""
    from generation_fixtures import build_tiny_model

    from fleming_dsl.runtime.jobs import distill
    from fleming_dsl.runtime.teachers.backends.transformers import TransformersBackend

    model = Generator(model=str(build_tiny_model(tmp_path / "tiny")),
                      backend=Backend(kind="transformers", temperature=0.8, max_tokens=8))

    def prompts(label: str) -> tuple[list[str], list[dict]]:
        root = tmp_path / label
        root.mkdir()
        rows = [{**row, "answer": label} for row in graph_items(3)]
        _, cfg = search_job(root, rows=rows, teacher=model)
        backend = Recording(TransformersBackend(model.model, model.backend, cfg.seed))
        trajectories = [distill.Trajectory(item) for item in distill.load_sources(cfg)]
        distill.refine_all(cfg, trajectories, CachedTeacher(backend, DiskCache(cfg.cache_dir)))
        outs = [distill.outcome(t, "all", "search") for t in trajectories]
        return backend.prompts, outs

    sent_b, outs = prompts("B")
    sent_c, _ = prompts("C")
    assert len(sent_b) == 3 * 3 and sent_b == sent_c
    assert all(out["solved"] == "unsolved" and len(out["strategies"]) == 2 for out in outs)
    assert [out["strategies"] for out in outs] == [
        [drawn_strategy(("backtrack", "explore", "self_correct"), 1, f"g{n}", r) for r in (2, 3)]
        for n in range(3)]
    assert "Your reasoning so far:" in sent_b[3] and "Your reasoning so far:" not in sent_b[0]
