"""Rank helpers on one process, and which checkpoints count as whole (no torch needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from training_fixtures import train_config

from fleming_dsl.plan.jobconfig import SftJob
from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.train import trainer_args as training


def test_a_job_started_directly_is_rank_0_of_1(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert (ranks.rank(), ranks.world_size(), ranks.is_main(), ranks.distributed()) == (0, 1, True, False)
    assert ranks.all_gather({"a": 1}) == [{"a": 1}]
    assert ranks.broadcast(3) == 3
    assert ranks.shard(list(range(5))) == [0, 1, 2, 3, 4]
    ranks.barrier()
    ranks.init()  # nothing to join
    ranks.shutdown()


def test_launcher_environment_names_the_rank_and_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert (ranks.rank(), ranks.world_size(), ranks.is_main(), ranks.distributed()) == (1, 3, False, True)
    assert ranks.shard(list(range(8))) == [1, 4, 7]
    record = logging.LogRecord("fleming.x", logging.INFO, __file__, 1, "hi", (), None)
    ranks.RankFilter().filter(record)
    assert record.rank == "[rank 1/3] "


def _checkpoint(folder: Path, step: int, whole: bool) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text("{}")
    (path / f"global_step{step}").mkdir()  # DeepSpeed's weight shards live here
    if whole:
        (path / training.COMPLETE_MARKER).write_text(f"{step}\n")
    return path


def test_resume_takes_the_last_whole_checkpoint_and_removes_unfinished_ones(tmp_path: Path) -> None:
    cfg = SftJob.model_validate(train_config("sft", tmp_path, "m", "d.jsonl"))
    folder = Path(training.checkpoint_dir(cfg))
    assert training.resume_checkpoint(cfg) is None  # no folder yet
    _checkpoint(folder, 2, whole=True)
    _checkpoint(folder, 10, whole=True)
    unfinished = _checkpoint(folder, 12, whole=False)  # a rank was killed while it was written
    (folder / "checkpoint-x").mkdir()  # not a checkpoint: left alone
    assert [p.name for p in training.complete_checkpoints(folder)] == ["checkpoint-2", "checkpoint-10"]
    assert training.resume_checkpoint(cfg) == str(folder / "checkpoint-10")
    assert not unfinished.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-x"]


def test_checkpoints_another_run_left_are_removed_not_resumed(tmp_path: Path, caplog) -> None:
    """A requeued run (same config, same inputs: same key) resumes; a run Snakemake started
    because an upstream stage or the config changed (another key) starts from the beginning:
    resuming there finished the old run's training (rl2 "trained" in 9 s after rl1 changed)."""
    cfg = SftJob.model_validate(train_config("sft", tmp_path, "m", "d.jsonl"))
    folder = Path(training.checkpoint_dir(cfg))
    assert training.resume_checkpoint(cfg, run_key=lambda: "run-a") is None
    _checkpoint(folder, 4, whole=True)
    assert training.resume_checkpoint(cfg, run_key=lambda: "run-a") == str(folder / "checkpoint-4")
    with caplog.at_level(logging.WARNING):
        assert training.resume_checkpoint(cfg, run_key=lambda: "run-b") is None
    assert "were written for another config or other inputs: training from the start" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == [training.RUN_KEY_FILE]
    assert (folder / training.RUN_KEY_FILE).read_text() == "run-b\n"
    _checkpoint(folder, 2, whole=True)  # a folder from before run keys: not known to be this run's
    (folder / training.RUN_KEY_FILE).unlink()
    assert training.resume_checkpoint(cfg, run_key=lambda: "run-b") is None


def test_deepspeed_and_gloo_on_cpu_only_with_several_ranks(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text("{}")
    cfg = SftJob.model_validate(train_config("sft", tmp_path, "m", "d.jsonl",
                                             deepspeed_config=str(tmp_path / "ds.json")))
    one = training.device_args(cfg, cuda=False, bf16_ok=False, world=1)
    two = training.device_args(cfg, cuda=False, bf16_ok=False, world=2)
    gpus = training.device_args(cfg, cuda=True, bf16_ok=True, world=2)
    assert "deepspeed" not in one and "ddp_backend" not in one
    assert (two["deepspeed"], two["ddp_backend"], two["use_cpu"]) == (str(tmp_path / "ds.json"), "gloo", True)
    assert gpus["deepspeed"] == str(tmp_path / "ds.json") and "ddp_backend" not in gpus
