"""Offline tracking: `track = [...]` writes TensorBoard, Trackio, MLflow and W&B records under the
stage's tracking folder, and the report links them and shows sampled completions per step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_fixtures import synthetic_items, tiny_model, train_config, write_config, write_items  # noqa: F401

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GrpoJob
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.train import tracking, trainer_args

ALL = ["tensorboard", "trackio", "mlflow", "wandb"]


def _cfg(tmp_path: Path, track: list[str]) -> GrpoJob:
    return GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl", track=track,
                                               tracking_dir=str(tmp_path / "tracking" / "rl")))


def test_environment_points_every_integration_under_the_stage(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ALL)
    env = tracking.tracking_env(cfg)
    root = (tmp_path / "tracking" / "rl").resolve()
    assert env["TENSORBOARD_LOGGING_DIR"] == str(root / "tensorboard")
    assert env["TRACKIO_DIR"] == str(root / "trackio")
    assert env["MLFLOW_TRACKING_URI"] == (root / "mlflow").as_uri()
    assert (env["WANDB_MODE"], env["WANDB_DIR"]) == ("offline", str(root / "wandb"))
    args = trainer_args.common_args(cfg, cuda=False, bf16_ok=False)
    assert (args["report_to"], args["run_name"], args["project"]) == (ALL, "grpo", "test")


def test_no_tracking_reports_to_nothing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [])
    assert tracking.tracking_env(cfg) == {}
    assert trainer_args.common_args(cfg, cuda=False, bf16_ok=False)["report_to"] == []


def test_missing_integration_is_a_job_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(JobError) as err:
        tracking.start(_cfg(tmp_path, ["tensorboard", "wandb"]))
    assert str(err.value) == "field 'track': wandb not installed here (pip install wandb)"


@pytest.mark.slow
def test_grpo_tracks_offline_and_the_report_links_it(tiny_model: str, tmp_path: Path) -> None:
    for name in ALL:
        pytest.importorskip(name)
    data = write_items(tmp_path / "pool.jsonl", synthetic_items(16))
    config = train_config("grpo", tmp_path, tiny_model, data, max_steps=2, track=ALL,
                          tracking_dir=str(tmp_path / "tracking" / "rl"))
    path = write_config(tmp_path / "grpo.json", config)
    # a process of its own, as under Snakemake: the integrations read their folders at import
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB", "MLFLOW", "TRACKIO", "TENSORBOARD"))}
    done = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "job", "grpo", "--config", path],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "tracking" / "rl"
    assert list((root / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((root / "mlflow").rglob("metrics/train/reward")) or list((root / "mlflow").rglob("*reward*"))
    assert list((root / "wandb").rglob("offline-run-*"))
    assert list((root / "trackio").rglob("*.db"))
    meta = json.loads((tmp_path / "grpo.meta.json").read_text())
    assert sorted(meta["metrics"]["tracking"]) == sorted(ALL)
    rows = [json.loads(line) for line in (tmp_path / "grpo.metrics.jsonl").read_text().splitlines()]
    sample = rows[0]["samples"][0]
    assert set(sample) == {"prompt", "completion", "rewards", "total"}
    assert set(sample["rewards"]) == {"correct", "form"}

    report = {"kind": "report", "job": "report", "experiment": "test", "seed": 0,
              "meta": str(tmp_path / "report.meta.json"), "metas": [str(tmp_path / "grpo.meta.json")],
              "metrics": [str(tmp_path / "grpo.metrics.jsonl")], "evals": [],
              "output": str(tmp_path / "report")}
    run_job("report", write_config(tmp_path / "report.json", report))
    html = (tmp_path / "report" / "index.html").read_text()
    assert '<a href="../tracking/rl/tensorboard">grpo: tensorboard</a>' in html
    assert "GRPO rollouts: sampled completions per step" in html
    from markupsafe import escape

    from fleming_dsl.runtime.reporting.rollouts import completions_table
    from fleming_dsl.runtime.reporting.collect import read_curve

    table = completions_table(read_curve(str(tmp_path / "grpo.metrics.jsonl")))
    assert table is not None and len(table.rows) == 2 * len(rows)  # two samples per step
    assert all(str(escape(cell)) in html for row in table.rows for cell in row)
