"""Scatter and gather: the same data however a job is cut, and a gather that checks its parts.

Each job is run as the planner cuts it (`planner.cut`): unsharded, then as 2 and 3 shard jobs
plus their gather, each cut with its own teacher cache (so no cut can copy another's answers).
The merged outputs must be byte-identical to the unsharded job's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from data_fixtures import (
    repo_source,
    sample_rows,
    template_generator,
    write_config,
    write_jsonl,
)
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.hashing import sha256_path
from fleming_dsl.ir import Backend
from fleming_dsl.plan.jobconfig import (
    Benchmark,
    DataSource,
    DecontaminateStep,
    DedupeStep,
    DifficultyStep,
    DistillJob,
    EvalJob,
    FilterJob,
    FormatStep,
    Generator,
    SynthesizeJob,
    VerifyLabelStep,
    config_text,
)
from fleming_dsl.plan.planner import cut
from fleming_dsl.runtime.data import shards
from fleming_dsl.runtime.jobs import run_job

# ---------------------------------------------------------------- the slicing


def test_every_item_has_one_shard_and_adding_items_moves_none():
    keys = [f"item-{n}" for n in range(2000)]
    for count in (1, 2, 3, 16):
        owners = [shards.shard_of(key, count) for key in keys]
        assert set(owners) == set(range(count))
        assert owners[:500] == [shards.shard_of(key, count) for key in keys[:500]]


def test_one_more_shard_moves_about_one_item_in_n_plus_one():
    keys = [f"item-{n}" for n in range(4000)]
    before = [shards.shard_of(key, 8) for key in keys]
    after = [shards.shard_of(key, 9) for key in keys]
    moved = sum(a != b for a, b in zip(before, after))
    assert 0.08 < moved / len(keys) < 0.14  # 1/9 = 0.111; `hash mod n` would move ~8/9
    assert all(b == 8 for a, b in zip(before, after) if a != b)  # only to the new shard


def test_shard_sizes_are_balanced():
    sizes = [0] * 4
    for n in range(4000):
        sizes[shards.shard_of(f"k{n}", 4)] += 1
    assert max(sizes) - min(sizes) < 200


# ---------------------------------------------------------------- running a job cut N ways


def run_cut(cfg, count: int, root: Path) -> None:
    """Run `cfg` as the planner would with `shards = count` (in-process, shards in turn)."""
    if count == 1:
        run_job(cfg.kind, str(write_config(root / f"{cfg.job}.json", cfg)))
        return
    shard_cfgs, gather = cut(cfg, count, str(root / "shards" / cfg.job))
    for shard in reversed(shard_cfgs):  # the order shards run in must not matter
        run_job(shard.kind, str(write_config(root / f"{shard.job}.json", shard)))
    run_job("gather", str(write_config(root / f"{cfg.job}.gather.json", gather)))


def outputs_of_cuts(make_cfg, tmp_path: Path, files, counts=(1, 2, 3)) -> list[dict[str, bytes]]:
    results = []
    for count in counts:
        root = tmp_path / f"cut{count}"
        root.mkdir(parents=True)
        cfg = make_cfg(root)
        run_cut(cfg, count, root)
        results.append({name: (root / name).read_bytes() for name in files})
    return results


def metas(tmp_path: Path, name: str, counts=(1, 2, 3)) -> list[dict]:
    return [json.loads((tmp_path / f"cut{c}" / name).read_text()) for c in counts]


def synthesize_cfg(root: Path, rows: int = 40) -> SynthesizeJob:
    samples = write_jsonl(root / "samples.jsonl", sample_rows(rows))
    return SynthesizeJob(job="synthesize_q", experiment="t", seed=5, meta=str(root / "q.meta.json"),
                         samples=str(samples), prompt=str(REPO / "prompts" / "question.j2"),
                         teacher=template_generator(), cache_dir=str(root / "cache"),
                         inputs=(str(samples), str(REPO / "prompts" / "question.j2")),
                         output=str(root / "q.jsonl"))


def test_synthesize_cut_2_or_3_ways_writes_the_same_bytes(tmp_path):
    outs = outputs_of_cuts(synthesize_cfg, tmp_path, ["q.jsonl"])
    assert outs[0]["q.jsonl"] and outs[0] == outs[1] == outs[2]
    records = metas(tmp_path, "q.meta.json")
    assert [m["job"] for m in records] == ["synthesize_q"] * 3
    assert [m["kind"] for m in records] == ["synthesize"] * 3  # the gather records its task
    task = synthesize_cfg(tmp_path / "cut3")  # what the gather wrote for: the unsharded job
    assert records[2]["config_sha256"] == hashlib.sha256(config_text(task).encode()).hexdigest()
    assert records[2]["counts"]["shards"]["count"] == 3
    assert sum(records[2]["counts"]["shards"]["items"]) == 40
    for key in ("input", "output", "malformed", "teacher_calls"):
        assert records[0]["counts"][key] == records[2]["counts"][key], key
    assert records[0]["metrics"] == records[2]["metrics"]


def distill_cfg(root: Path) -> DistillJob:
    return DistillJob(job="distill_cot", experiment="t", seed=5, meta=str(root / "cot.meta.json"),
                      sources=(repo_source("data/train/medqa_train.jsonl", "medqa", "medqa"),),
                      prompt=str(REPO / "prompts" / "reason.j2"), teacher=template_generator(),
                      refine=("backtrack",), max_rounds=2, keep="correct",
                      cache_dir=str(root / "cache"), output=str(root / "cot.jsonl"))


def test_distill_cut_2_or_3_ways_writes_the_same_bytes(tmp_path):
    outs = outputs_of_cuts(distill_cfg, tmp_path, ["cot.jsonl"])
    assert outs[0]["cot.jsonl"] and outs[0] == outs[1] == outs[2]
    records = metas(tmp_path, "cot.meta.json")
    assert records[0]["counts"]["rounds"] == records[1]["counts"]["rounds"]
    assert records[0]["counts"]["by_source"] == records[2]["counts"]["by_source"]


def search_cfg(root: Path) -> DistillJob:
    """Search with the fallible template teacher: rounds 1..3, unsolved items, rewrites."""
    teacher = Generator(model="", backend=Backend(kind="template", error_rate=0.4,
                                                  malformed_rate=0.1))
    return distill_cfg(root).model_copy(update={
        "protocol": "search", "prompt": str(REPO / "prompts" / "search.j2"), "teacher": teacher,
        "refine": ("backtrack", "explore", "self_correct"), "max_rounds": 3,
        "rewrite": str(REPO / "prompts" / "rewrite.j2")})


def test_search_distill_cut_2_or_3_ways_writes_the_same_bytes(tmp_path):
    outs = outputs_of_cuts(search_cfg, tmp_path, ["cot.jsonl"])
    assert outs[0]["cot.jsonl"] and outs[0] == outs[1] == outs[2]
    records = metas(tmp_path, "cot.meta.json")
    assert records[0]["counts"]["rounds"]["3"] > 0 and records[0]["counts"]["chains"]["searches"] > 0
    for key in ("rounds", "strategies", "chains", "malformed", "output"):
        assert records[0]["counts"][key] == records[1]["counts"][key] == records[2]["counts"][key], key
    assert records[0]["metrics"] == records[2]["metrics"]


def filter_rows() -> list[dict]:
    """Items every step acts on: duplicates (dedupe keeps the first, possibly in another shard),
    an evaluation question (decontaminate), a wrong label (verify_label), a broken item."""
    items = json.loads(json.dumps([json.loads(line) for line in (
        REPO / "data" / "train" / "medqa_train.jsonl").read_text().splitlines()[:30]]))
    rows = []
    for n, row in enumerate(items):
        options = {chr(ord("A") + i): text for i, text in enumerate(row["options"].values())}
        letter = next(k for k, v in row["options"].items() if k == row["answer_idx"])
        rows.append({"id": f"i{n}", "question": row["question"], "options": options,
                     "answer": letter, "provenance": {"answer": options[letter]}})
    rows.append({**rows[3], "id": "dup-of-3"})
    rows.append({**rows[7], "id": "dup-of-7"})
    rows[10] = {**rows[10], "answer": "A" if rows[10]["answer"] != "A" else "B"}  # label wrong
    rows[12] = {**rows[12], "options": {"A": "same", "B": "same"}, "answer": "A"}  # broken
    evaluation = json.loads((REPO / "data" / "eval" / "medqa_test.jsonl").read_text().splitlines()[0])
    rows.append({**rows[0], "id": "leaked", "question": evaluation["question"]})
    return rows


def filter_cfg(root: Path) -> FilterJob:
    source = write_jsonl(root / "in.jsonl", filter_rows())
    steps = (FormatStep(),
             VerifyLabelStep(judge=template_generator(), votes=3, agree=2, on_fail="review"),
             DedupeStep(method="exact", threshold=0.8),
             DecontaminateStep(against=(repo_source("data/eval/medqa_test.jsonl", "medqa",
                                                    "medqa_test"),), ngram=8),
             DifficultyStep(method="grader", model=template_generator(), samples=1, easy=0.75,
                            moderate=0.25, prompt=str(REPO / "prompts" / "grader.j2")))
    return FilterJob(job="filter_clean", experiment="t", seed=5, meta=str(root / "clean.meta.json"),
                     source=DataSource(path=str(source), format="items"), steps=steps,
                     cache_dir=str(root / "cache"), output=str(root / "clean.jsonl"),
                     review=str(root / "review.jsonl"))


def test_filter_cut_2_or_3_ways_writes_the_same_bytes(tmp_path):
    outs = outputs_of_cuts(filter_cfg, tmp_path, ["clean.jsonl", "review.jsonl"])
    assert outs[0] == outs[1] == outs[2]
    counts = [m["counts"] for m in metas(tmp_path, "clean.meta.json")]
    assert counts[0]["removed"] == {"format": 1, "verify_label": 1, "dedupe": 2,
                                    "decontaminate": 1}
    assert counts[0]["review"] == 1
    for key in ("removed", "reasons", "buckets", "kept", "input", "malformed"):
        assert counts[0][key] == counts[1][key] == counts[2][key], key


@pytest.mark.slow  # builds the tiny model and samples it, item by item, in two cuts each
def test_a_transformers_teacher_writes_the_same_bytes_however_cut(tmp_path):
    """Sampling at temperature 0.8 from a real (random-weight) model: each request has its own
    seed from what it asks, so neither the batch nor the shard it falls in changes its answer."""
    from generation_fixtures import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    model = Generator(model=str(model_dir),
                      backend=Backend(kind="transformers", temperature=0.8, max_tokens=6))

    def difficulty(root: Path) -> FilterJob:
        step = DifficultyStep(method="pass_rate", model=model, samples=3, easy=0.75,
                              moderate=0.25)
        source = write_jsonl(root / "few.jsonl", filter_rows()[:8])
        return filter_cfg(root).model_copy(update={
            "steps": (FormatStep(), step), "source": DataSource(path=str(source), format="items")})

    # (a distillation needs answers a random-weight model never writes, and keeps nothing: an
    # error since empty results are; the template teacher's cuts are compared in the fast tests)
    outs = outputs_of_cuts(difficulty, tmp_path / "f", ["clean.jsonl"], counts=(1, 2))
    assert outs[0] == outs[1]
    rates = [json.loads(line)["pass_rate"] for line in outs[0]["clean.jsonl"].splitlines()]
    assert set(rates) <= {0.0, 1 / 3, 2 / 3, 1.0}


def test_eval_cut_3_ways_writes_the_same_results(tmp_path, monkeypatch):
    """Scoring is per item: the results and the predictions are the unsharded job's. (A fake
    model stands in: which answer a real one gives is the generation tests' business.)"""
    def answer(cfg, items, counts=None, seed=None):
        return [[f"<think>x</think><answer>{'AB'[len(i.question) % 2]}</answer>"]
                * cfg.samples for i in items]

    monkeypatch.setattr("fleming_dsl.runtime.jobs.eval._generate", answer)

    def make(root: Path) -> EvalJob:
        benches = tuple(Benchmark(name=n, path=str(REPO / "data" / "eval" / f), format=fmt)
                        for n, f, fmt in (("medqa_test", "medqa_test.jsonl", "medqa"),
                                          ("pubmedqa", "pubmedqa.json", "pubmedqa")))
        return EvalJob(job="eval_base", experiment="t", seed=5, meta=str(root / "e.meta.json"),
                       target="base", model="none", benchmarks=benches, samples=2,
                       temperature=0.0, max_tokens=8, limit=25, output=str(root / "e.json"))

    outs = outputs_of_cuts(make, tmp_path, ["e.json", "e.json.predictions.jsonl"], counts=(1, 3))
    assert outs[0] == outs[1]
    results = json.loads(outs[0]["e.json"])
    assert results["benchmarks"]["medqa_test"]["n"] == 25


# ---------------------------------------------------------------- the gather's checks


@pytest.fixture
def shards_done(tmp_path):
    """The three shards of a synthesize job, run; their gather not yet."""
    cfg = synthesize_cfg(tmp_path)
    shard_cfgs, gather = cut(cfg, 3, str(tmp_path / "shards"))
    for shard in shard_cfgs:
        run_job("synthesize", str(write_config(tmp_path / f"{shard.job}.json", shard)))
    config = write_config(tmp_path / "gather.json", gather)
    return tmp_path, gather, str(config)


def gather_error(config: str) -> str:
    with pytest.raises(JobError) as err:
        run_job("gather", config)
    return str(err.value)


def test_a_shard_without_its_record_did_not_finish(shards_done):
    _root, gather, config = shards_done
    Path(gather.parts[1].meta).unlink()
    assert gather_error(config) == (
        f"{gather.parts[1].meta}: shard 2 of 3 (synthesize_q_shard2of3) has no metadata "
        "record, so it did not finish; run synthesize_q_shard2of3 again (snakemake re-runs it "
        "once its outputs are removed)")
    assert not Path(gather.output).exists()


def test_a_part_that_is_not_what_its_shard_wrote_is_refused(shards_done):
    _root, gather, config = shards_done
    part = Path(gather.parts[0].output)
    part.write_text("".join(part.read_text().splitlines(keepends=True)[:-1]))  # truncated
    assert gather_error(config) == (
        f"{part}: the part of shard 1 of 3 (synthesize_q_shard1of3) is not the file its shard "
        "wrote (sha256 differs from its metadata record); run synthesize_q_shard1of3 again "
        "(snakemake re-runs it once its outputs are removed)")


def test_a_part_from_another_cut_is_refused(shards_done, tmp_path):
    root, gather, config = shards_done
    other, _ = cut(synthesize_cfg(root), 2, str(root / "other"))
    run_job("synthesize", str(write_config(root / "other.json", other[0])))
    shutil.copy(other[0].meta, gather.parts[0].meta)
    assert gather_error(config) == (
        f"{gather.parts[0].meta}: not the record of shard 1 of 3 (synthesize_q_shard1of3); "
        "run synthesize_q_shard1of3 again (snakemake re-runs it once its outputs are removed)")


def test_shards_that_read_another_input_are_refused(shards_done):
    root, _gather, config = shards_done
    write_jsonl(root / "samples.jsonl", sample_rows(41))  # the input moved on under them
    assert gather_error(config) == (
        f"{root / 'samples.jsonl'} changed after synthesize_q_shard1of3 read it; run "
        "synthesize_q_shard1of3 again (snakemake re-runs it once its outputs are removed)")


def test_missing_items_are_found_by_position(shards_done):
    _root, gather, config = shards_done
    meta_path = Path(gather.parts[2].meta)
    part = Path(gather.parts[2].output)
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[1:]))
    meta = json.loads(meta_path.read_text())
    meta["counts"]["shard"].update(records=len(lines) - 1, assigned=len(lines) - 1,
                                   sha256=sha256_path(part))
    meta_path.write_text(json.dumps(meta))
    assert gather_error(config) == ("synthesize_q: 1 of 40 items are in no shard's part; "
                                    "run the shards again")
