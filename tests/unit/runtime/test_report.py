"""The report job on synthetic job records written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.jobs import run_job


def _meta(job: str, kind: str, counts: dict | None = None, metrics: dict | None = None,
          total_s: float = 1.0) -> dict:
    return {"job": job, "kind": kind, "experiment": "tiny", "config_sha256": "0" * 64,
            "inputs": {}, "counts": counts or {}, "metrics": metrics or {},
            "timings": {"total_s": total_s}, "versions": {}}


def _bench(n: int, correct: int, lo: float, hi: float, format_rate: float) -> dict:
    return {"n": n, "samples": 1, "correct": correct, "accuracy": correct / n, "ci95": [lo, hi],
            "format_rate": format_rate, "extracted_rate": 1.0}


RL1_ROWS = [
    {"stage": "grpo_rl1", "step": 2, "reward": 0.6, "rewards/correct": 0.3, "rewards/form": 0.9,
     "bucket/easy": 0.8, "bucket/moderate": 0.4},
    {"stage": "grpo_rl1", "step": 1, "reward": 0.5, "rewards/correct": 0.25, "rewards/form": 0.8,
     "bucket/easy": 0.7, "bucket/moderate": 0.3},
]
RL2_ROWS = [
    {"stage": "grpo_rl2", "step": 1, "reward": 0.4, "rewards/correct": 0.2, "rewards/form": 0.9,
     "bucket/hard": 0.3, "round": 1, "pool_pass_rate": 0.35, "mined": {"failed": 6, "solved": 3}},
    {"stage": "grpo_rl2", "step": 2, "reward": 0.45, "rewards/correct": 0.25, "rewards/form": 0.92,
     "bucket/hard": 0.35, "round": 1},
    {"stage": "grpo_rl2", "step": 3, "reward": 0.55, "rewards/correct": 0.3, "rewards/form": 0.95,
     "bucket/hard": 0.4, "round": 2, "pool_pass_rate": 0.45, "mined": {"failed": 5, "solved": 3},
     "mined/failed": 0.2, "mined/solved": 0.9},
]


# the miner's round records (miner.Miner): two rounds and the closing estimate
MINED_ROUNDS = [
    {"round": 0, "pool_pass_rate": 0.5, "failed": 6, "solved": 3, "from_rollouts": 0,
     "estimated": 12, "known": 12, "previous": {"mined_failed": 0, "remeasured": 0,
                                                  "flipped_to_solved": 0}},
    {"round": 1, "pool_pass_rate": 0.6, "failed": 5, "solved": 4, "from_rollouts": 9,
     "estimated": 3, "known": 15, "previous": {"mined_failed": 6, "remeasured": 6,
                                                 "flipped_to_solved": 2}},
    {"round": 2, "closing": True, "pool_pass_rate": 0.7, "known": 15,
     "previous": {"mined_failed": 5, "remeasured": 5, "flipped_to_solved": 3}},
]
# medqa_test items (of 50) each evaluated model answers right: rl1 gains 13-16 and loses 11-12
# against the cold start, rl2 gains 11-12 and loses 16 against rl1; pubmedqa: the same 20 each
MEDQA_RIGHT = {"cold_start": set(range(13)), "rl1": set(range(11)) | {13, 14, 15, 16},
               "rl2": set(range(16))}


def _predictions(medqa_right: set[int]) -> list[dict]:
    def row(bench: str, index: int, correct: bool) -> dict:
        return {"benchmark": bench, "id": f"{bench}-{index:02d}", "sample": 0, "correct": correct,
                "question": f"A {40 + index}-year-old man presents with fever and a cough that "
                            f"has lasted {index} days. What is the most likely diagnosis?",
                "options": {"A": "pneumonia", "B": "asthma"}, "answer": "A",
                "extracted": "A" if correct else "B",
                "completion": f"<think>...</think><answer>{'pneumonia' if correct else 'asthma'}</answer>"}

    return ([row("medqa_test", i, i in medqa_right) for i in range(50)]
            + [row("pubmedqa", i, i < 20) for i in range(50)])


def _write(path: Path, data: dict | list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, list):
        path.write_text("".join(json.dumps(row) + "\n" for row in data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def run_dir(tmp_path: Path) -> dict:
    """A finished tiny run's records: data jobs, SFT, two GRPO stages, three evaluations."""
    run = tmp_path / "runs" / "tiny"
    metas = [
        _write(run / "data" / "rare_dx.jsonl.meta.json",
               _meta("sample_rare_dx", "sample", {"requested": 600, "rows": 600}, total_s=2.0)),
        _write(run / "data" / "questions.jsonl.meta.json",
               _meta("synthesize_questions", "synthesize",
                     {"input": 600, "output": 590, "malformed": 10, "teacher_calls": 600,
                      "cache_hits": 0})),
        _write(run / "data" / "cot.jsonl.meta.json",
               _meta("distill_cot", "distill", {
                   "input": 690, "output": 640, "malformed": 9,
                   "rounds": {"1": 500, "2": 100, "3": 40, "unsolved": 50},
                   "strategies": {"backtrack": 70, "explore": 60, "self_correct": 60},
                   "chains": {"searches": 140, "words_before": 7000, "words_after": 8400,
                              "rewrites": {"failed": 4, "rewritten": 136}}},
                   {"protocol": "search"})),
        _write(run / "data" / "clean.jsonl.meta.json",
               _meta("filter_clean", "filter",
                     {"input": 640, "kept": 520, "review": 12,
                      "removed": {"decontaminate": 8, "dedupe": 70, "format": 5,
                                  "verify_label": 25},
                      "buckets": {"easy": 200, "hard": 120, "moderate": 200}},
                     {"pass_rate_by_bucket": {"easy": 0.85, "moderate": 0.5, "hard": 0.1}})),
        _write(run / "stages" / "cold_start.meta.json", _meta(
            "sft_cold_start", "sft", metrics={
                "steps": 30, "final_loss": 0.9, "stopped_by": "schedule",
                "loss_curve": [[10, 2.5], [20, 1.4], [30, 0.9]]}, total_s=44.0)),
        _write(run / "stages" / "rl1.meta.json", _meta(
            "grpo_rl1", "grpo", {"steps": 2}, {"steps": 2, "stopped_by": "plateau"})),
        _write(run / "stages" / "rl2.meta.json", _meta(
            "grpo_rl2", "grpo", {"steps": 3}, {"stopped_by": "max_steps", "rounds": MINED_ROUNDS})),
    ]
    metrics = [_write(run / "stages" / "rl1.metrics.jsonl", RL1_ROWS),
               _write(run / "stages" / "rl2.metrics.jsonl", RL2_ROWS)]
    evals, predictions = [], []
    for target, fmt_rate, medqa_correct in (("cold_start", 0.96, 13), ("rl1", 0.98, 15),
                                            ("rl2", 1.0, 16)):
        predictions.append(_write(run / "eval" / f"{target}.json.predictions.jsonl",
                                  _predictions(MEDQA_RIGHT[target])))
        evals.append(_write(run / "eval" / f"{target}.json", {
            "target": target, "model": f"runs/tiny/stages/{target}",
            "benchmarks": {
                "medqa_test": _bench(50, medqa_correct, 0.16, 0.41, fmt_rate),
                "pubmedqa": _bench(50, 20, 0.28, 0.54, fmt_rate),
            },
            "format_rate": fmt_rate, "accuracy_mean": (medqa_correct / 50 + 20 / 50) / 2,
        }))
    return {"tmp": tmp_path, "metas": metas, "metrics": metrics, "evals": evals,
            "predictions": predictions, "output": str(run / "report")}


def _config(tmp: Path, metas: list[str], metrics: list[str], evals: list[str],
            output: str, predictions: list[str] = ()) -> str:
    path = tmp / "report.job.json"
    path.write_text(json.dumps({
        "kind": "report", "job": "report", "experiment": "tiny", "seed": 7,
        "meta": output + ".meta.json", "metas": metas, "metrics": metrics, "evals": evals,
        "predictions": list(predictions), "output": output,
    }), encoding="utf-8")
    return str(path)


def _run(run_dir: dict) -> Path:
    run_job("report", _config(run_dir["tmp"], run_dir["metas"], run_dir["metrics"],
                              run_dir["evals"], run_dir["output"], run_dir["predictions"]))
    return Path(run_dir["output"])


def test_report_writes_every_file(run_dir: dict) -> None:
    report = _run(run_dir)
    assert sorted(p.name for p in report.iterdir()) == [
        "accuracy.png", "bucket_rewards.png", "difficulty.png", "format_rate.png", "funnel.png",
        "index.html", "mining.png", "report.md", "rewards.png", "sft_loss.png", "summary.json",
    ]
    for png in report.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (report / "index.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 8  # self-contained
    assert "<td>0.260 [0.160, 0.410]</td>" in html
    meta = json.loads(Path(run_dir["output"] + ".meta.json").read_text())
    assert meta["counts"] == {"metas": 7, "stages": 2, "evals": 3, "plots": 8}


def test_summary_headline_figures(run_dir: dict) -> None:
    summary = json.loads((_run(run_dir) / "summary.json").read_text())
    assert summary["cold_start_target"] == "cold_start"
    assert summary["format_rate_after_cold_start"] == 0.96
    assert summary["format_rate"] == {"cold_start": 0.96, "rl1": 0.98, "rl2": 1.0}
    assert summary["accuracy"]["rl2"] == {"medqa_test": 0.32, "pubmedqa": 0.4}
    assert summary["ci95"]["rl1"]["medqa_test"] == [0.16, 0.41]
    # removed: read minus written (the distillation's 50 never solved, the filter's 120)
    assert summary["funnel"] == [{"stage": "sampled", "count": 600, "removed": 0},
                                 {"stage": "synthesized", "count": 590, "removed": 10},
                                 {"stage": "distilled", "count": 640, "removed": 50},
                                 {"stage": "filtered", "count": 520, "removed": 120}]
    clean = summary["filters"]["filter_clean"]
    assert list(clean["removed"]) == ["format", "verify_label", "dedupe", "decontaminate"]
    assert list(clean["buckets"]) == ["easy", "moderate", "hard"]
    assert (clean["input"], clean["kept"], clean["review"]) == (640, 520, 12)
    rl1, rl2 = summary["grpo"]["rl1"], summary["grpo"]["rl2"]
    assert (rl1["steps"], rl1["final_step"], rl1["final_reward"]) == (2, 2, 0.6)  # sorted by step
    assert rl1["final_rewards"] == {"correct": 0.3, "form": 0.9}
    assert rl1["final_buckets"] == {"easy": 0.8, "moderate": 0.4}
    assert (rl2["rounds"], rl2["final_pool_pass_rate"], rl2["max_reward"]) == (2, 0.45, 0.55)
    assert rl2["final_mined_rewards"] == {"failed": 0.2, "solved": 0.9}
    assert summary["timings_s"]["sft_cold_start"] == 44.0
    assert (rl1["stopped_by"], rl2["stopped_by"]) == ("plateau at step 2", "max_steps")
    assert summary["sft"] == {"cold_start": {
        "steps": 30, "final_loss": 0.9, "stopped_by": "schedule",
        "loss_curve": [[10, 2.5], [20, 1.4], [30, 0.9]]}}


def test_markdown_tables_word_for_word(run_dir: dict) -> None:
    markdown = (_run(run_dir) / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Report: tiny\n\n- Ablation, mean benchmark accuracy: "
                               "cold_start 0.330 -> rl1 0.350 -> rl2 0.360\n"
                               "- rl1 against cold_start, same questions: ")
    assert "- Format rate after the cold start (cold_start): 0.960\n" in markdown
    # the ablation is the first section
    assert markdown.index("## Ablation: accuracy per stage") < markdown.index("## Data funnel")
    assert (
        "| benchmark | n | cold_start | rl1 | rl2 |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| medqa_test | 50 | 0.260 [0.160, 0.410] | 0.300 [0.160, 0.410] "
        "| 0.320 [0.160, 0.410] |\n"
        "| pubmedqa | 50 | 0.400 [0.280, 0.540] | 0.400 [0.280, 0.540] "
        "| 0.400 [0.280, 0.540] |\n"
        "| mean | - | 0.330 | 0.350 | 0.360 |\n"
    ) in markdown
    assert ("| stage | items | removed |\n| --- | --- | --- |\n| sampled | 600 | 0 |\n"
            "| synthesized | 590 | 10 |\n| distilled | 640 | 50 |\n| filtered | 520 | 120 |\n") in markdown
    assert (
        "| distill_cot | items |\n"
        "| --- | --- |\n"
        "| protocol | search |\n"
        "| input | 690 |\n"
        "| solved in round 1 | 500 |\n"
        "| solved in round 2 | 100 |\n"
        "| solved in round 3 | 40 |\n"
        "| never solved | 50 |\n"
        "| continued with backtrack | 70 |\n"
        "| continued with explore | 60 |\n"
        "| continued with self_correct | 60 |\n"
        "| searches failed | 4 |\n"
        "| searches rewritten | 136 |\n"
        "| words per joined search, before rewrite | 50.0 |\n"
        "| words per joined search, after rewrite | 60.0 |\n"
        "| kept | 640 |\n"
    ) in markdown
    assert (
        "| filter_clean | items |\n"
        "| --- | --- |\n"
        "| input | 640 |\n"
        "| removed by format | 5 |\n"
        "| removed by verify_label | 25 |\n"
        "| removed by dedupe | 70 |\n"
        "| removed by decontaminate | 8 |\n"
        "| sent to review | 12 |\n"
        "| kept | 520 |\n"
    ) in markdown
    assert (
        "| stage | steps | final reward | max reward | final reward per term "
        "| final reward per bucket | pool pass rate | stopped by |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
        "| rl1 | 2 | 0.600 | 0.600 | correct 0.300, form 0.900 "
        "| easy 0.800, moderate 0.400 | - | plateau at step 2 |\n"
        "| rl2 | 3 | 0.550 | 0.550 | correct 0.300, form 0.950 "
        "| hard 0.400, mined failed 0.200, mined solved 0.900 | 0.450 | max_steps |\n"
    ) in markdown
    assert ("| stage | steps | final loss | stopped by |\n| --- | --- | --- | --- |\n"
            "| cold_start | 30 | 0.900 | schedule |\n") in markdown
    assert "- GRPO rl1: 2 steps logged, final reward 0.600, stopped by plateau at step 2\n" in markdown
    assert "![SFT loss per step](sft_loss.png)" in markdown
    assert ("| bucket | items | pass rate |\n| --- | --- | --- |\n| easy | 200 | 0.850 |\n"
            "| moderate | 200 | 0.500 |\n| hard | 120 | 0.100 |\n") in markdown
    assert "![Ablation: accuracy per stage](accuracy.png)" in markdown


def test_stage_stopped_at_step_zero_still_renders(run_dir: dict) -> None:
    Path(run_dir["metrics"][1]).write_text("", encoding="utf-8")  # rl2 logged nothing
    report = _run(run_dir)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["grpo"]["rl2"] == {
        "steps": 0, "final_step": None, "final_reward": None, "max_reward": None,
        "final_rewards": {}, "final_buckets": {}, "final_mined_rewards": {},
        "final_pool_pass_rate": None, "rounds": None,
        "stopped_by": "max_steps",
    }
    assert "| rl2 | 0 | - | - | - | - | - | max_steps |" in (report / "report.md").read_text()
    assert (report / "rewards.png").is_file()


def test_paired_tests_count_flips_with_exact_mcnemar_and_a_seeded_bootstrap(run_dir: dict) -> None:
    summary = json.loads((_run(run_dir) / "summary.json").read_text())
    picked = {(r["benchmark"], r["after"]): r for r in summary["paired"]}
    assert [(r["benchmark"], r["before"], r["after"]) for r in summary["paired"]] == [
        ("medqa_test", "cold_start", "rl1"), ("pubmedqa", "cold_start", "rl1"),
        ("medqa_test", "rl1", "rl2"), ("pubmedqa", "rl1", "rl2"),
        ("medqa_test", "cold_start", "rl2"), ("pubmedqa", "cold_start", "rl2")]  # RL as a whole
    rl1 = picked[("medqa_test", "rl1")]
    # 4 gained, 2 lost: p = 2 * P(Binomial(6, 1/2) <= 2) = 2 * 22/64
    assert (rl1["n"], rl1["gained"], rl1["lost"], rl1["p_value_mcnemar"]) == (50, 4, 2, 0.6875)
    assert rl1["difference"] == 0.04
    lo, hi = rl1["difference_ci95"]
    assert lo < 0.0 < 0.04 < hi  # two more right answers out of 50 are no evidence
    same = picked[("pubmedqa", "rl2")]
    assert (same["gained"], same["lost"], same["p_value_mcnemar"], same["difference_ci95"]) == (
        0, 0, 1.0, [0.0, 0.0])
    assert summary["paired"] == json.loads((_run(run_dir) / "summary.json").read_text())["paired"]


def test_paired_tests_are_printed_in_the_headline_and_a_table(run_dir: dict) -> None:
    markdown = (_run(run_dir) / "report.md").read_text(encoding="utf-8")
    assert ("- rl1 against cold_start, same questions: medqa_test +0.040 (gained 4, lost 2, "
            "McNemar p 0.688); pubmedqa +0.000 (gained 0, lost 0, McNemar p 1.000)\n") in markdown
    assert ("| benchmark | stage | items | gained | lost | difference [paired bootstrap 95%] "
            "| exact McNemar p |\n| --- | --- | --- | --- | --- | --- | --- |\n"
            "| medqa_test | cold_start -> rl1 | 50 | 4 | 2 | +0.040 [") in markdown
    assert "| pubmedqa | rl1 -> rl2 | 50 | 0 | 0 | +0.000 [+0.000, +0.000] | 1.000 |\n" in markdown


def test_exact_mcnemar_p_values() -> None:
    from fleming_dsl.runtime.reporting.paired import compare, mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert compare({str(i): 0.0 for i in range(49)}, {str(i): 1.0 for i in range(49)},
                   seed=7)["p_value_mcnemar"] == 3.55271e-15  # 2 / 2**49, not rounded to 0
    assert mcnemar_exact(2, 4) == mcnemar_exact(4, 2) == pytest.approx(44 / 64)


def test_answers_per_stage_right_and_wrong_in_one_fixed_order(run_dir: dict) -> None:
    report = _run(run_dir)
    answers = json.loads((report / "summary.json").read_text())["answers"]
    assert list(answers) == ["cold_start", "rl1", "rl2"]
    shown = answers["rl1"]
    assert [(a["benchmark"], a["correct"]) for a in shown] == [
        ("medqa_test", True), ("medqa_test", False), ("pubmedqa", True), ("pubmedqa", False)]
    first = shown[0]
    assert first["question"].endswith("...") and len(first["question"]) <= 93
    assert (first["answer"], first["gold"]) == ("pneumonia", "A. pneumonia")
    assert (shown[1]["answer"], shown[1]["gold"]) == ("asthma", "A. pneumonia")
    # the same order of questions for every stage
    assert answers["rl2"][2]["id"] == answers["rl1"][2]["id"]
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "| rl1: benchmark | question | model's answer | gold | right |\n" in markdown


def test_model_answer_without_a_tag_shows_the_completions_end() -> None:
    from fleming_dsl.runtime.reporting.answers import model_answer, shorten

    assert model_answer("<think>x</think><answer> pneumonia </answer>") == "pneumonia"
    assert model_answer("<think>the findings point to") == "(no answer tag) ...<think>the findings point to"
    assert model_answer("\n\n\n") == "(no answer tag; blank)"  # an untrained model's newlines
    assert shorten("one two three four", 9) == "one two..."


def test_mining_rounds_table_shows_failures_that_flipped(run_dir: dict) -> None:
    report = _run(run_dir)
    mining = json.loads((report / "summary.json").read_text())["mining"]
    assert list(mining) == ["rl2"]
    assert [(r["round"], r["pool_pass_rate"], r["previous_flipped_to_solved"], r["closing"])
            for r in mining["rl2"]] == [(0, 0.5, 0, False), (1, 0.6, 2, False), (2, 0.7, 3, True)]
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert ("| rl2: round | pool pass rate (estimated) | items estimated so far "
            "| mined failed + solved | previous round's failures now solved |\n"
            "| --- | --- | --- | --- | --- |\n"
            "| 0 | 0.500 | 12 | 6 + 3 | - |\n"
            "| 1 | 0.600 | 15 | 5 + 4 | 2 of 6 re-measured (6 mined) |\n"
            "| after training | 0.700 | 15 | - | 3 of 5 re-measured (5 mined) |\n") in markdown
    assert "![Per-bucket reward and hard-sample mining](mining.png)" in markdown


def test_a_report_planned_without_predictions_still_renders(run_dir: dict) -> None:
    run_dir["predictions"] = []
    report = _run(run_dir)
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["paired"], summary["answers"]) == ([], {})
    assert "No two consecutive evaluations with per-item predictions." in (report / "report.md").read_text()


def test_empty_run_renders_notes(tmp_path: Path) -> None:
    output = str(tmp_path / "report")
    run_job("report", _config(tmp_path, [], [], [], output))
    markdown = (Path(output) / "report.md").read_text(encoding="utf-8")
    assert "No evaluation or training results were recorded." in markdown
    assert "No GRPO stage in this experiment." in markdown
    assert not list(Path(output).glob("*.png"))


@pytest.mark.parametrize(("which", "content", "message"), [
    ("metas", None, "{path}: file not found (field 'metas')"),
    ("metas", "{not json", "{path}:1: not valid JSON (Expecting property name enclosed in "
                           "double quotes)"),
    ("metas", '{"kind": "sft"}', "{path}: field 'job' is missing"),
    ("metrics", '{"step": 1, "reward": 0.5}\n{"reward": 0.4}\n',
     "{path}:2: field 'step' must be an integer, found None"),
    ("metrics", '{"step": 1, "reward": "high"}\n',
     "{path}:1: field 'reward' must be a number, found 'high'"),
    ("evals", '{"target": "rl1", "benchmarks": {"medqa": {"n": 5, "accuracy": 0.2}}, '
              '"format_rate": 1.0, "accuracy_mean": 0.2}',
     "{path}: field 'benchmarks.medqa.ci95' must be [lo, hi], found None"),
    ("evals", '{"target": "rl1", "benchmarks": {}, "accuracy_mean": 0.2}',
     "{path}: field 'format_rate' is missing"),
    ("predictions", None, "{path}: file not found (field 'predictions')"),
    ("predictions", '{"benchmark": "medqa_test", "id": "q1", "correct": true}\n'
                    '{"benchmark": "medqa_test", "id": "q2", "correct": 1}\n',
     "{path}:2: field 'correct' must be true or false, found 1"),
])
def test_bad_inputs_fail_with_one_located_line(run_dir: dict, which: str, content: str | None,
                                               message: str) -> None:
    path = Path(run_dir[which][0])
    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(JobError) as err:
        _run(run_dir)
    assert str(err.value) == message.format(path=path)
    assert not Path(run_dir["output"]).exists()  # nothing half-written


def test_grader_levels_are_reported_as_levels_not_pass_rates() -> None:
    from fleming_dsl.runtime.reporting.tables import bucket_table

    graded = {"buckets": {"easy": 3, "moderate": 2, "hard": 1}, "pass_rate_by_bucket": {},
              "difficulty_method": "grader"}
    table = bucket_table(graded)
    assert table.headers == ("grader level", "items")
    assert [row[0] for row in table.rows] == ["easy", "moderate", "hard"]


def test_right_answers_by_letter_and_by_text_are_counted_apart(run_dir: dict) -> None:
    path = Path(run_dir["evals"][0])
    result = json.loads(path.read_text())
    result["benchmarks"]["medqa_test"]["correct_by"] = {"letter": 4, "text": 9}
    path.write_text(json.dumps(result), encoding="utf-8")
    markdown = (_run(run_dir) / "report.md").read_text(encoding="utf-8")
    assert ("| right answers: letter / text | cold_start | rl1 | rl2 |\n"
            "| --- | --- | --- | --- |\n"
            "| medqa_test | 4 / 9 | - | - |\n"
            "| pubmedqa | - | - | - |\n") in markdown
