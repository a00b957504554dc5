"""Jobs that outlive their allocation, on the two-node test cluster (root; tests/slurm).

Two SFT runs of the same tiny job as a SLURM job through the slurm executor plugin, with the
options the generated profiles give every job (`--requeue`, `slurm_extra: --signal=URG@<lead>`):

- one whose time limit (3 minutes) is shorter than its work (900 steps: 6.7 steps/s on a 2-core
  EPYC beside another run, so about 2:15 of training after its start-up; 300 and 450 steps
  finished before the signal came there): SLURM signals it 90 s before the limit (SLURM may
  signal up to a minute early, so 30-90 s after the start, when the job's handler is long
  installed), it checkpoints, requeues itself, and the next allocation resumes it;
- one preempted by `scancel --signal=URG` mid-stage, the way a scheduler's preemption reaches it.

Both must finish with the weights of the same job run uninterrupted, byte for byte (one machine,
one thread: resuming restores the optimizer, scheduler, RNG and data order). A requeued job waits
out SLURM's begin-time delay (about 2 minutes); the test moves its begin time to now, as an
operator could, to keep the run short.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from slurm.harness import PARTITION, job_fields, slurm_cluster  # noqa: F401
from training_fixtures import build_tiny_model, synthetic_items, train_config, write_config, write_items

from fleming_dsl.plan.jobconfig import PREEMPT_SIGNAL

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

STEPS = 900
TWENTY = re.compile(rf"\| [2-9]\d/{STEPS} \[")  # the trainer's progress bar at step 20-99
SNAKEFILE = """\
rule sft:
    input: "sft.json"
    output: directory("out/sft")
    log: "sft.log"
    threads: 1
    resources: runtime={runtime}, mem_mb=3000, slurm_extra={extra!r}
    shell: "fleming job sft --config {{input}} >> {{log}} 2>&1"
"""


def _project(root: Path, model: str, runtime: int, lead: int) -> Path:
    root.mkdir(parents=True)
    data = write_items(root / "train.jsonl", synthetic_items(64))
    config = train_config("sft", root, model, data, max_steps=STEPS, save_steps=100_000,
                          output="out/sft", meta="out/sft.meta.json")
    config["data"] = "train.jsonl"
    write_config(root / "sft.json", config)
    extra = f"--signal={PREEMPT_SIGNAL}@{lead}"  # what the generated rules carry (slurm_extra)
    (root / "Snakefile").write_text(SNAKEFILE.format(runtime=runtime, extra=extra))
    return root


def _start(root: Path, prefix: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--executor", "slurm", "--jobs", "1",
         "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
         "--slurm-requeue", "--slurm-jobname-prefix", prefix, "--latency-wait", "10",
         "--default-resources", f"slurm_partition={PARTITION}"],
        cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _job_id(output_so_far: Path) -> str | None:
    match = re.search(r"has been submitted with SLURM jobid (\d+)", output_so_far.read_text())
    return match.group(1) if match else None


def _hurry_requeued(prefix: str, stop: threading.Event) -> None:
    """Move a requeued job's begin time (SLURM delays it ~2 minutes) to now."""
    while not stop.is_set():
        out = subprocess.run(["squeue", "--noheader", "--format=%i|%j|%T|%r"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            job_id, name, state, reason = line.strip().split("|", 3)
            if name.startswith(prefix) and state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                               capture_output=True)
        stop.wait(2)


def _drain(process: subprocess.Popen[str], into: Path) -> threading.Thread:
    def copy() -> None:
        with into.open("w") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def test_time_limited_and_preempted_training_resume_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    limited = _project(tmp_path / "limited", model, runtime=3, lead=90)
    preempted = _project(tmp_path / "preempted", model, runtime=30, lead=90)
    whole = _project(tmp_path / "whole", model, runtime=30, lead=90)

    stop = threading.Event()
    hurry = [threading.Thread(target=_hurry_requeued, args=(p, stop), daemon=True)
             for p in ("hcreq_limited", "hcreq_preempted")]
    for thread in hurry:
        thread.start()
    runs = {"limited": _start(limited, "hcreq_limited"),
            "preempted": _start(preempted, "hcreq_preempted")}
    logs = {name: tmp_path / f"{name}.snakemake.txt" for name in runs}
    drains = [_drain(runs[name], logs[name]) for name in runs]
    reference = subprocess.Popen(["fleming", "job", "sft", "--config", "sft.json"], cwd=whole,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # preempt the second mid-stage: once its progress bar passes step 20
        deadline = time.monotonic() + 600
        job_log = preempted / "sft.log"
        while not (job_log.exists() and TWENTY.search(job_log.read_text(errors="replace"))):
            assert time.monotonic() < deadline, "the preempted job never reached step 20"
            assert runs["preempted"].poll() is None, logs["preempted"].read_text()[-3000:]
            time.sleep(1)
        preempted_id = _job_id(logs["preempted"])
        subprocess.run(["scancel", "--signal=URG", preempted_id], check=True)
        for name, run in runs.items():
            assert run.wait(timeout=1500) == 0, f"{name}: {logs[name].read_text()[-4000:]}"
        assert reference.wait(timeout=600) == 0
    finally:
        stop.set()
        for run in [*runs.values(), reference]:
            if run.poll() is None:
                run.kill()
    for thread in drains:
        thread.join(timeout=10)

    weights = (whole / "out" / "sft" / "model.safetensors").read_bytes()
    for project in (limited, preempted):
        job_id = _job_id(tmp_path / f"{project.name}.snakemake.txt")
        fields = job_fields(job_id)
        assert fields["JobState"] == "COMPLETED", fields
        assert int(fields["Restarts"]) >= 1, (
            f"{project.name}: finished in one allocation (the work was shorter than the time until "
            f"the signal on this machine: raise STEPS)", fields)
        # (the job's own last line, "... requeued SLURM job N: the next allocation resumes it",
        # is gone: Snakemake empties a rule's log when the next allocation starts the rule again)
        meta = json.loads((project / "out" / "sft.meta.json").read_text())
        assert re.fullmatch(r".*/checkpoint-\d+", meta["counts"]["resumed_from"]), meta["counts"]
        assert meta["metrics"]["steps"] == STEPS
        assert (project / "out" / "sft" / "model.safetensors").read_bytes() == weights, project.name
