"""A long evaluation shard on the two-node test cluster (root; tests/slurm), preempted mid-way:
it keeps the chunks it finished, requeues itself, and the next allocation generates only the
rest, ending with the bytes of the same shard run uninterrupted (here, in this process).

The job is submitted as the generated rules submit it (`--requeue`, `--signal=URG@<lead>`) and
preempted the way a scheduler's preemption reaches it (`scancel --full --signal=URG`: a plain
sbatch job has no step but its batch one). A requeued job waits out SLURM's begin-time delay
(about 2 minutes); the test moves its begin time to now, as an operator could.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from generation_fixtures import build_tiny_model
from slurm.harness import PARTITION, job_fields, slurm_cluster  # noqa: F401

from fleming_dsl.plan.jobconfig import PREEMPT_SIGNAL
from fleming_dsl.runtime.jobs import run_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

ITEMS = 120  # 1 thread, batches of 4: about 15 chunks in the shard, preempted after 2
SHARD = {"index": 0, "count": 2, "of": "eval_cold_start"}


def _config(root: Path, model: str, bench: str) -> str:
    root.mkdir()
    config = {"kind": "eval", "job": "eval_cold_start_0", "experiment": "test", "seed": 1,
              "meta": str(root / "part.jsonl.meta.json"), "target": "cold_start", "model": model,
              "benchmarks": [{"name": "alpha", "path": bench, "format": "items"}], "samples": 2,
              "temperature": 1.0, "max_tokens": 16, "limit": None, "batch_size": 4,
              "shard": SHARD, "output": str(root / "part.jsonl"), "inputs": [model, bench]}
    path = root / "eval.job.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def _kept(journal: Path) -> int:
    return max(0, len(journal.read_text().splitlines()) - 1) if journal.exists() else 0


def test_a_preempted_eval_shard_resumes_from_its_kept_chunks(tmp_path: Path) -> None:
    model = str(build_tiny_model(tmp_path / "model"))
    bench = tmp_path / "alpha.jsonl"
    bench.write_text("".join(json.dumps({
        "id": f"q{i}", "question": f"Question {i}: which finding fits?", "answer": "ABCD"[i % 4],
        "options": {letter: f"option {letter.lower()} {i}" for letter in "ABCD"}}) + "\n"
        for i in range(ITEMS)), encoding="utf-8")
    parts = tmp_path / "parts"
    config = _config(parts, model, str(bench))
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--requeue", f"--signal={PREEMPT_SIGNAL}@60", "--time=10",
         f"--partition={PARTITION}", "--job-name=hc_eval_resume", f"--output={parts}/job.log",
         f"--chdir={parts}", "--wrap",
         f"{sys.executable} -m fleming_dsl.cli job eval --config {config}"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        check=True).stdout.strip().split(";")[0]
    journal = parts / "part.jsonl.progress.jsonl"
    try:
        deadline = time.monotonic() + 300
        while _kept(journal) < 8:  # two chunks of four items kept
            assert time.monotonic() < deadline, (parts / "job.log").read_text()[-3000:]
            time.sleep(0.5)
        subprocess.run(["scancel", "--full", f"--signal={PREEMPT_SIGNAL}", job_id], check=True)
        while True:
            assert time.monotonic() < deadline, (parts / "job.log").read_text()[-3000:]
            fields = job_fields(job_id)
            if fields["JobState"] == "PENDING" and fields.get("Reason") == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                               capture_output=True)
            if fields["JobState"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
                break
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
    assert fields["JobState"] == "COMPLETED", (parts / "job.log").read_text()[-3000:]
    assert int(fields["Restarts"]) >= 1, fields
    resumed = json.loads((parts / "part.jsonl.meta.json").read_text())["counts"]["resumed_items"]
    assert resumed >= 8 and not journal.exists()

    whole = tmp_path / "whole"
    run_job("eval", _config(whole, model, str(bench)))
    assert (parts / "part.jsonl").read_bytes() == (whole / "part.jsonl").read_bytes()
    assert resumed < json.loads((whole / "part.jsonl.meta.json").read_text())[
        "counts"]["shard"]["assigned"]  # it was stopped before it was done
