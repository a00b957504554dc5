"""A job signalled before its time limit (or preempted): it checkpoints, says so, asks SLURM to
requeue it, and the next run resumes to the same weights as a run that was never stopped."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from training_fixtures import (  # noqa: F401
    synthetic_items,
    tiny_model,
    train_config,
    write_config,
    write_items,
)

from fleming_dsl.runtime import preemption
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.train import preemption as train_preemption


def _signal_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The scheduler's part, at a known step: the process sends itself the real signal, which the
    job's real handler and callback then see."""
    real = train_preemption.checkpoint_on_signal

    def staged():
        callback = real()
        check = callback.on_step_end

        def on_step_end(args, state, control, **kwargs):
            if state.global_step == step:
                os.kill(os.getpid(), preemption.SIGNAL)
            return check(args, state, control, **kwargs)

        callback.on_step_end = on_step_end
        return callback

    monkeypatch.setattr(train_preemption, "checkpoint_on_signal", staged)


def _sft(root: Path, model: str) -> str:
    data = write_items(root / "train.jsonl", synthetic_items(64))
    config = train_config("sft", root, model, data, max_steps=4, save_steps=500)
    return write_config(root / "sft.json", config)


def test_a_signalled_sft_checkpoints_then_resumes_to_the_uninterrupted_weights(
        tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    run_job("sft", _sft(whole, tiny_model))

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with monkeypatch.context() as staged:
        _signal_at_step(staged, 2)
        with pytest.raises(preemption.Preempted) as stopped:
            run_job("sft", _sft(parts, tiny_model))
    assert str(stopped.value) == (
        f"sft: stopped by SIGURG (time limit near, or preempted) after step 2; saved "
        f"{parts}/sft.ckpt/checkpoint-2; not under SLURM: run the workflow again to resume")
    assert not (parts / "sft").exists() and not (parts / "sft.meta.json").exists()

    run_job("sft", _sft(parts, tiny_model))
    assert json.loads((parts / "sft.meta.json").read_text())["counts"]["resumed_from"].endswith(
        "checkpoint-2")
    assert (parts / "sft" / "model.safetensors").read_bytes() == (
        whole / "sft" / "model.safetensors").read_bytes()


def test_the_signal_outside_training_stops_the_job_at_once(tmp_path: Path) -> None:
    with pytest.raises(preemption.Preempted, match="before its work was done"):
        with preemption.on_signal():
            os.kill(os.getpid(), preemption.SIGNAL)
            raise AssertionError("the handler raises before this line")


def test_inside_a_cooperative_block_the_signal_only_raises_the_flag() -> None:
    with preemption.on_signal(), preemption.cooperative():
        assert not preemption.requested()
        os.kill(os.getpid(), preemption.SIGNAL)
        assert preemption.requested()


def _completed(returncode: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], returncode, "", stderr)


def test_requeue_names_the_array_task_and_reports_what_scontrol_said() -> None:
    calls: list[list[str]] = []
    env = {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "2"}
    said = preemption.requeue(env, lambda cmd: calls.append(cmd) or _completed(0))
    assert calls == [["scontrol", "requeue", "40_2"]]
    assert said == "requeued SLURM job 40_2: the next allocation resumes it"
    refused = preemption.requeue({"SLURM_JOB_ID": "41"},
                                 lambda cmd: _completed(1, "Requested operation is presently disabled"))
    assert refused == ("could not requeue SLURM job 41 (Requested operation is presently disabled): "
                       "run the workflow again to resume")
