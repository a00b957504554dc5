"""grpo end to end through `run_job` on the tiny model: metrics rows, plateau stop, mining rounds."""

from __future__ import annotations

import json
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
from fleming_dsl.runtime.jobs.grpo import (
    PlateauTracker,
    grpo_config_kwargs,
    plateau_metric,
)


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
    ok = config.model_copy(update={"batch_size": 8, "use_vllm": True})
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


@pytest.mark.slow
def test_mining_rounds_re_estimate_the_pool_and_keep_steps_continuous(tiny_model: str, tmp_path: Path) -> None:
    miner = {"pool": "clean", "pass_below": 0.5, "refresh": 2, "samples": 2, "solved_ratio": 1.0,
             "failed_ratio": 2.0}
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(30), max_steps=5, miner=miner)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["round"] for r in rows] == [0, 0, 1, 1, 2]
    estimated = [r for r in rows if "pool_pass_rate" in r]
    assert [r["step"] for r in estimated] == [1, 3, 5]
    assert all(0.0 <= row["pool_pass_rate"] <= 1.0 for row in estimated)
    # prompts per round: steps x batch 8 / 4 generations; the last round has one step left
    assert [r["mined"]["failed"] + r["mined"]["solved"] for r in estimated] == [4, 4, 2]
    assert len(meta["metrics"]["rounds"]) == 3
    assert meta["counts"]["steps"] == 5


@pytest.mark.slow
def test_mining_with_an_estimate_budget_rolls_out_only_that_many_items(tiny_model: str,
                                                                       tmp_path: Path) -> None:
    miner = {"pool": "clean", "pass_below": 0.5, "refresh": 2, "samples": 2, "estimate": 8,
             "solved_ratio": 1.0, "failed_ratio": 2.0}
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(30), max_steps=5, miner=miner)
    rounds = meta["metrics"]["rounds"]
    assert [(r["estimated"], r["known"]) for r in rounds] == [(8, 8), (8, 16), (8, 24)]
    estimated = [r for r in rows if "pool_pass_rate" in r]
    assert [(r["estimated"], r["known"]) for r in estimated] == [(8, 8), (8, 16), (8, 24)]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]


def test_resume_keeps_metrics_rows_up_to_the_checkpoint(tiny_model: str, tmp_path: Path) -> None:
    run_grpo(tmp_path, tiny_model, synthetic_items(24), max_steps=2, save_steps=2)
    assert (tmp_path / "grpo.ckpt" / "checkpoint-2").is_dir()
    meta, rows = run_grpo(tmp_path, tiny_model, synthetic_items(24), max_steps=3, save_steps=2)
    assert meta["counts"]["resumed_from"].endswith("checkpoint-2")
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_use_vllm_without_vllm_says_the_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fleming_dsl.runtime.jobs.grpo import vllm_args

    config = GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl", use_vllm=True))
    with caplog.at_level(logging.WARNING):
        assert vllm_args(config, cuda=True, vllm_installed=False) == {"use_vllm": False}
    assert "use_vllm requested but vllm is not installed; generating with transformers " \
           "(fix: pip install vllm)" in caplog.text
