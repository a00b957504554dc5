"""Item jobs stopped by the signal before a time limit (or a preemption) keep what they finished:
an evaluation its chunks (`<output>.progress.jsonl`), a distillation its teacher answers (the
cache). The next run does only the rest and writes the bytes of a run that was never stopped.

The scheduler's part is played by the process itself: it sends itself the real signal at a known
point, which the job's real handler then sees (as in test_preemption.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from generation_fixtures import build_tiny_model

from fleming_dsl.runtime import preemption
from fleming_dsl.runtime.jobs import distill, eval as eval_job, run_job
from fleming_dsl.runtime.journal import Journal, journal_path


@pytest.fixture(autouse=True)
def _not_under_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)


# ---------------------------------------------------------------- the journal


def test_a_journal_cut_mid_line_keeps_its_whole_lines_and_appends_after_them(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "out.json", "print-1")
    journal.add([(0, {"a": 1}), (3, {"a": "é"})])
    with open(journal.path, "a", encoding="utf-8") as handle:
        handle.write('{"pos": 5, "out": {"a"')  # a kill in the middle of a line
    assert journal.load() == {0: {"a": 1}, 3: {"a": "é"}}
    journal.add([(5, {"a": 2})])
    assert Journal(tmp_path / "out.json", "print-1").load() == {0: {"a": 1}, 3: {"a": "é"}, 5: {"a": 2}}


def test_another_jobs_journal_is_discarded_not_merged(tmp_path: Path) -> None:
    Journal(tmp_path / "out.json", "print-1").add([(0, "kept")])
    assert Journal(tmp_path / "out.json", "print-2").load() == {}
    assert not journal_path(tmp_path / "out.json").exists()


# ---------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-lm") / "model"))


def _benchmark(path: Path) -> str:
    rows = [{"id": f"q{i}", "question": f"Question {i}: which finding fits?",
             "options": {letter: f"option {letter.lower()} {i}" for letter in "ABCD"},
             "answer": "ABCD"[i % 4]} for i in range(9)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _eval_config(root: Path, model: str, bench: str, **overrides) -> str:
    root.mkdir(exist_ok=True)
    config = {"kind": "eval", "job": "eval_cold_start", "experiment": "test", "seed": 1,
              "meta": str(root / "eval.json.meta.json"), "target": "cold_start", "model": model,
              "benchmarks": [{"name": "alpha", "path": bench, "format": "items"}],
              # sampling, so a chunk generated under another seed would show in the bytes
              "samples": 2, "temperature": 1.0, "max_tokens": 12, "limit": None,
              "batch_size": 2, "output": str(root / "eval.json"), "inputs": [model, bench],
              **overrides}
    path = root / "eval.job.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def _count_chunks(monkeypatch: pytest.MonkeyPatch, signal_after: int | None = None) -> list[int]:
    """Count the chunks generated; with `signal_after`, the signal arrives during that chunk."""
    real, calls = eval_job._generate, []

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == signal_after:
            os.kill(os.getpid(), preemption.SIGNAL)
        return real(*args, **kwargs)

    monkeypatch.setattr(eval_job, "_generate", counted)
    return calls


@pytest.mark.parametrize("shard", [None, {"index": 1, "count": 2, "of": "eval_cold_start"}],
                         ids=["whole", "shard"])
def test_a_signalled_evaluation_keeps_its_chunks_and_resumes_to_the_same_bytes(
        tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shard: dict | None) -> None:
    bench = _benchmark(tmp_path / "alpha.jsonl")
    extra = {"shard": shard} if shard else {}
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_job("eval", _eval_config(whole, tiny_model, bench, **extra))
    produced = sorted(p.name for p in whole.iterdir() if p.name != "eval.job.json"
                      and not p.name.endswith(".meta.json"))
    total = json.loads((whole / "eval.json.meta.json").read_text())["counts"]["shard"][
        "assigned"] if shard else 9

    config = _eval_config(parts, tiny_model, bench, **extra)
    with monkeypatch.context() as staged:
        _count_chunks(staged, signal_after=2)
        with pytest.raises(preemption.Preempted) as stopped:
            run_job("eval", config)
    progress = parts / "eval.json.progress.jsonl"
    assert str(stopped.value) == (
        f"eval_cold_start: stopped by SIGURG (time limit near, or preempted) with 4 of {total} "
        f"items done; kept in {progress} for the next run; not under SLURM: run the workflow "
        "again to resume")
    assert sorted(p.name for p in parts.iterdir()) == ["eval.job.json", "eval.json.progress.jsonl"]

    with monkeypatch.context() as counting:
        chunks = _count_chunks(counting)
        run_job("eval", config)
    assert sum(chunks) == total - 4  # the kept chunks were not generated again
    assert json.loads((parts / "eval.json.meta.json").read_text())["counts"]["resumed_items"] == 4
    assert not progress.exists()
    assert "eval.json" in produced
    for name in produced:
        assert (parts / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_journal_left_by_other_inputs_is_not_used(tiny_model: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model = shutil.copytree(tiny_model, tmp_path / "model")
    bench = _benchmark(tmp_path / "alpha.jsonl")
    config = _eval_config(tmp_path / "run", str(model), bench)
    with monkeypatch.context() as staged:
        _count_chunks(staged, signal_after=1)
        with pytest.raises(preemption.Preempted):
            run_job("eval", config)
    os.utime(model / "config.json", ns=(0, 0))  # the model was retrained in place, as it were
    with monkeypatch.context() as counting:
        chunks = _count_chunks(counting)
        run_job("eval", config)
    assert sum(chunks) == 9
    assert "resumed_items" not in json.loads(
        (tmp_path / "run" / "eval.json.meta.json").read_text())["counts"]


# ---------------------------------------------------------------- distillation


def test_a_signalled_distillation_resumes_from_the_teacher_cache_to_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_distill import fallible, graph_items, search_job

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    config, cfg = search_job(whole, rows=graph_items(40), teacher=fallible())
    run_job("distill", str(config))
    first = json.loads(Path(cfg.meta).read_text())["counts"]

    config, stopped_cfg = search_job(parts, rows=graph_items(40), teacher=fallible())
    real, rounds = distill.complete_batched, []

    def signal_in_round_two(teacher, requests, desc, *args, **kwargs):
        responses = real(teacher, requests, desc, *args, **kwargs)
        rounds.append(len(requests))
        if len(rounds) == 2:  # the answers of round 2 are in the cache when the signal comes
            os.kill(os.getpid(), preemption.SIGNAL)
        return responses

    with monkeypatch.context() as staged:
        staged.setattr(distill, "complete_batched", signal_in_round_two)
        with pytest.raises(preemption.Preempted, match="before its work was done"):
            run_job("distill", str(config))
    assert not Path(stopped_cfg.output).exists() and not Path(stopped_cfg.meta).exists()

    run_job("distill", str(config))
    counts = json.loads(Path(stopped_cfg.meta).read_text())["counts"]
    assert counts["cache_hits"] == sum(rounds)  # rounds 1 and 2 were not asked again
    assert counts["teacher_calls"] == first["teacher_calls"] - sum(rounds)
    assert Path(stopped_cfg.output).read_bytes() == Path(cfg.output).read_bytes()


def test_a_transformers_teacher_caches_each_answer_as_it_is_made(tiny_model: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from fleming_dsl.plan.jobconfig import Backend
    from fleming_dsl.runtime.teachers import CachedTeacher, Request
    from fleming_dsl.runtime.teachers.backends.transformers import TransformersBackend
    from fleming_dsl.runtime.teachers.cache import DiskCache

    settings = Backend(kind="transformers", temperature=0.7, top_p=0.9, max_tokens=6)
    requests = [Request(task="reason", messages=({"role": "user", "content": f"q{i}?"},))
                for i in range(3)]
    whole = TransformersBackend(tiny_model, settings, seed=3).generate(requests)

    backend = TransformersBackend(tiny_model, settings, seed=3)
    real, answered = backend.generate, []

    def stopped_at_the_second(batch):
        if answered:
            raise preemption.Preempted("stopped")
        answered.append(batch)
        return real(batch)

    monkeypatch.setattr(backend, "generate", stopped_at_the_second)
    with pytest.raises(preemption.Preempted):
        CachedTeacher(backend, DiskCache(tmp_path / "cache")).complete(requests)
    again = CachedTeacher(TransformersBackend(tiny_model, settings, seed=3), DiskCache(tmp_path / "cache"))
    assert [list(r.texts) for r in again.complete(requests)] == whole
    assert again.counts() == {"teacher_calls": 2, "cache_hits": 1}


def test_a_job_process_is_timed_from_its_start(tmp_path: Path) -> None:
    """`fleming job` counts the interpreter's start and its imports in total_s (what `fleming
    cost` reads): a 2-second start-up before the job must show."""
    import subprocess
    import sys

    bench = _benchmark(tmp_path / "alpha.jsonl")
    config = _eval_config(tmp_path / "run", "scripted", bench, limit=0)
    code = ("import time, sys; time.sleep(2); from fleming_dsl.cli.main import main; "
            f"sys.exit(main(['job', 'eval', '--config', {config!r}]))")
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    timings = json.loads((tmp_path / "run" / "eval.json.meta.json").read_text())["timings"]
    assert timings["startup_s"] >= 2.0 and timings["total_s"] >= timings["startup_s"]
    assert 0 < timings["cpu_s"] < timings["total_s"]  # the sleep took no CPU
