"""grpo end to end through `run_job` on the tiny model: metrics rows, plateau stop, mining rounds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from training_fixtures import (  # noqa: F401
    synthetic_items,
    tiny_model,
    train_config,
    write_config,
    write_items,
)

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GrpoJob
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.train.grpo_trainer import grpo_config_kwargs
from fleming_dsl.runtime.train.plateau import PlateauTracker
from fleming_dsl.runtime.train.step_log import plateau_metric


def run_grpo(tmp_path: Path, model: str, rows: list[dict], **overrides) -> tuple[dict, list[dict]]:
    data = write_items(tmp_path / "pool.jsonl", rows)
    config = train_config("grpo", tmp_path, model, data, **overrides)
    run_job("grpo", write_config(tmp_path / "grpo.json", config))
    meta = json.loads((tmp_path / "grpo.meta.json").read_text())
    metrics = [json.loads(line) for line in (tmp_path / "grpo.metrics.jsonl").read_text().splitlines()]
    return meta, metrics


def test_grpo_writes_one_metrics_row_per_step(tiny_model: str, tmp_path: Path) -> None:
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(24), max_steps=3)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert row["stage"] == "grpo"
        assert {"reward", "rewards/correct", "rewards/form"} <= set(row)
        assert row["reward"] == pytest.approx(row["rewards/correct"] + 0.2 * row["rewards/form"], abs=1e-5)
        buckets = [k for k in row if k.startswith("bucket/")]
        assert buckets and set(buckets) <= {"bucket/easy", "bucket/moderate", "bucket/hard"}
    assert meta["metrics"]["stopped_by"] == "max_steps" and meta["counts"]["steps"] == 3
    assert (tmp_path / "grpo" / "model.safetensors").is_file()


def test_plateau_stops_training(tiny_model: str, tmp_path: Path) -> None:
    # nothing improves by 100, so the second step is the first stale one
    plateau = {"metric": "reward", "patience": 1, "min_delta": 100.0}
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(24), max_steps=6, plateau=plateau)
    assert [r["step"] for r in rows] == [1, 2]
    assert meta["metrics"]["stopped_by"] == "plateau"


def test_plateau_tracker() -> None:
    tracker = PlateauTracker(patience=2, min_delta=0.1)
    assert [tracker.update(v) for v in (0.5, 0.55, 0.7, 0.75, 0.6)] == [False, False, False, False, True]


def test_bucket_selection_and_batch_checks(tmp_path: Path) -> None:
    config = GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl", batch_size=6))
    with pytest.raises(JobError, match=r"^field 'batch_size': batch x grad_accum x ranks = 6 x 1 x 1 = 6 "
                                       r"is not a multiple of generations \(4\)$"):
        grpo_config_kwargs(config, cuda=False, bf16_ok=False, vllm_installed=False)
    # TRL's rule is over all ranks: 6 per rank x 2 ranks = 12 rollouts, three groups of 4
    assert grpo_config_kwargs(config, cuda=False, bf16_ok=False, vllm_installed=False, world=2)
    with pytest.raises(JobError, match=r"^field 'batch_size': batch x grad_accum x ranks = 6 x 1 x 3 = 18 "
                                       r"is not a multiple of generations \(4\)$"):
        grpo_config_kwargs(config, cuda=False, bf16_ok=False, vllm_installed=False, world=3)
    ok = config.model_copy(update={"training": config.training.model_copy(update={"batch_size": 8, "use_vllm": True})})
    assert grpo_config_kwargs(ok, cuda=False, bf16_ok=False, vllm_installed=True)["use_vllm"] is False
    gpu = grpo_config_kwargs(ok, cuda=True, bf16_ok=False, vllm_installed=True)
    assert (gpu["use_vllm"], gpu["vllm_mode"], gpu["use_cpu"]) == (True, "colocate", False)
    assert grpo_config_kwargs(ok, cuda=False, bf16_ok=False, vllm_installed=False)["reward_weights"] == [1.0, 0.2]


def test_unknown_plateau_metric_lists_the_known_ones(tmp_path: Path) -> None:
    config = GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl",
                                                 plateau={"metric": "acc", "patience": 2}))
    with pytest.raises(JobError) as err:
        plateau_metric(config)
    assert str(err.value) == ("field 'plateau.metric': unknown metric 'acc'; one of reward, correct, "
                              "form, bucket/easy, bucket/moderate, bucket/hard")
    named = config.model_copy(update={"plateau": config.plateau.model_copy(update={"metric": "form"})})
    assert plateau_metric(named) == "rewards/form"


def test_unknown_reward_function_fails_before_training(tiny_model: str, tmp_path: Path) -> None:
    bad = [{"name": "x", "function": "nope", "weight": 1.0, "options": {}}]
    with pytest.raises(JobError, match=r"^unknown reward function 'nope'; registered: choice_match"):
        run_grpo(tmp_path, tiny_model, synthetic_items(8), rewards=bad)


MINER = {"pool": "clean", "pass_below": 0.5, "refresh": 2, "samples": 2, "solved_ratio": 1.0,
         "failed_ratio": 2.0}


def test_mining_runs_three_rounds_in_one_trainer(tiny_model: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from trl import GRPOTrainer

    built = []
    init = GRPOTrainer.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "__init__", counted)
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(30), max_steps=6, miner=MINER)
    assert len(built) == 1
    trainer = built[0]
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert {int(s["step"]) for s in optimizer.state.values()} == {6}  # one optimizer, never restarted
    assert trainer.lr_scheduler.last_epoch == 6
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["round"] for r in rows] == [0, 0, 1, 1, 2, 2]
    *rounds, closing = meta["metrics"]["rounds"]
    # each round trains on 2 steps x 8 rows / 4 generations = 4 prompts; the default budget
    # re-estimates as many, and from round 1 on the previous round's own rollouts come free
    assert [(r["from_rollouts"], r["estimated"], r["known"]) for r in rounds] == [(0, 4, 4), (4, 4, 8), (4, 4, 12)]
    assert [r["failed"] + r["solved"] for r in rounds] == [4, 4, 4]
    assert [r["step"] for r in rows if "pool_pass_rate" in r] == [1, 3, 5]
    assert meta["counts"]["rounds"] == 3
    # what became of each round's mined failures: re-measured by the next round's estimate
    # (round 0 had none before it), the last round's by its own rollouts after training
    assert rounds[0]["previous"]["mined_failed"] == 0
    for before, after in zip(rounds, [*rounds[1:], closing]):
        flips = after["previous"]
        assert flips["mined_failed"] == before["failed"]
        assert flips["flipped_to_solved"] <= flips["remeasured"] == flips["mined_failed"]
    assert (closing["round"], closing["closing"], closing["known"]) == (3, True, 12)
    # every step's reward split by the side of the mix its items were mined for
    for row in rows:
        assert set(k for k in row if k.startswith("mined/")) <= {"mined/failed", "mined/solved"}
        assert any(k.startswith("mined/") for k in row)


def test_mining_with_an_estimate_budget_rolls_out_only_that_many_items(tiny_model: str,
                                                                       tmp_path: Path) -> None:
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(30), max_steps=4, miner={**MINER, "estimate": 6})
    assert [(r["estimated"], r["known"]) for r in meta["metrics"]["rounds"] if not r.get("closing")] == [
        (6, 6), (6, 12)]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_a_stage_2_killed_in_round_2_resumes_there_with_the_same_weights(
        tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from fleming_dsl.runtime.train import trainer_args

    whole = tmp_path / "whole"
    whole.mkdir()
    expected_meta, expected_rows = run_grpo(whole, tiny_model, synthetic_items(30), max_steps=6, miner=MINER,
                                            save_steps=5)
    killed = tmp_path / "killed"
    killed.mkdir()
    sealer = trainer_args.checkpoint_sealer

    def dies_after_step_5():
        from transformers import TrainerCallback

        seal = sealer()

        class Kill(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                seal.on_save(args, state, control, **kwargs)
                raise KeyboardInterrupt("killed after checkpoint 5")

        return Kill()

    monkeypatch.setattr(trainer_args, "checkpoint_sealer", dies_after_step_5)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(killed, tiny_model, synthetic_items(30), max_steps=6, miner=MINER, save_steps=5)
    monkeypatch.setattr(trainer_args, "checkpoint_sealer", sealer)
    assert not (killed / "grpo").exists()
    meta, rows = run_grpo(killed, tiny_model, synthetic_items(30), max_steps=6, miner=MINER, save_steps=5)
    assert meta["counts"]["resumed_from"].endswith("checkpoint-5")
    assert meta["metrics"]["rounds"] == expected_meta["metrics"]["rounds"]  # round 2 kept its selection
    assert [(r["step"], r["round"]) for r in rows] == [(r["step"], r["round"]) for r in expected_rows]
    assert rows[-1]["reward"] == expected_rows[-1]["reward"]
    want, got = _weights(whole / "grpo"), _weights(killed / "grpo")
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[name], want[name]) for name in want)


PEAK_RSS = ("import resource, sys; from fleming_dsl.runtime.jobs import run_job; run_job('grpo', sys.argv[1]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


@pytest.mark.slow
def test_stage_2_peak_memory_stays_within_1_2x_of_stage_1(tiny_model: str, tmp_path: Path) -> None:
    """Mining holds no second copy of the policy: the whole job's peak memory, each stage in its
    own process, on the same pool and steps."""
    import subprocess
    import sys

    peaks = {}
    for stage, miner in (("stage1", None), ("stage2", MINER)):
        folder = tmp_path / stage
        folder.mkdir()
        data = write_items(folder / "pool.jsonl", synthetic_items(30))
        config = write_config(folder / "grpo.json", train_config("grpo", folder, tiny_model, data, max_steps=6,
                                                                 miner=miner))
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, config], capture_output=True, text=True,
                              check=True, timeout=600)
        peaks[stage] = int(done.stdout.split()[-1])
    assert peaks["stage2"] <= 1.2 * peaks["stage1"], peaks


def test_resume_keeps_metrics_rows_up_to_the_checkpoint(tiny_model: str, tmp_path: Path) -> None:
    run_grpo(tmp_path, tiny_model, synthetic_items(24), max_steps=3, save_steps=2)
    assert (tmp_path / "grpo.ckpt" / "checkpoint-2").is_dir()
    # as if killed after checkpoint 2 and re-run as it was (another config would start afresh)
    shutil.rmtree(tmp_path / "grpo.ckpt" / "checkpoint-3", ignore_errors=True)
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(24), max_steps=3, save_steps=2)
    assert meta["counts"]["resumed_from"].endswith("checkpoint-2")
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_use_vllm_without_vllm_says_the_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fleming_dsl.runtime.train.grpo_trainer import vllm_args

    config = GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl", use_vllm=True))
    with caplog.at_level(logging.WARNING):
        assert vllm_args(config, cuda=True, vllm_installed=False) == {"use_vllm": False}
    assert "use_vllm requested but vllm is not installed; generating with transformers " \
           "(fix: pip install vllm)" in caplog.text
