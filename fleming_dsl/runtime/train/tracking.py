"""Experiment tracking that works offline: TRL's `report_to` integrations, written under the run.

`track = [tensorboard, trackio, mlflow, wandb]` in the experiment header turns on the matching
transformers callbacks for every SFT and GRPO stage. Each writes under the stage's tracking folder
(`<workdir>/tracking/<stage>/<integration>`), never to a server: TensorBoard event files,
Trackio's local SQLite store (no Space), an MLflow file store, W&B in offline mode (`wandb sync`
uploads it later from a machine with a network). The integrations read their places from
environment variables, so `tracking_env` is a pure function of the job config and `start` applies it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import TrainCommon

PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio", "mlflow": "mlflow", "wandb": "wandb"}


def folders(cfg: TrainCommon) -> dict[str, str]:
    """Where each integration of the stage writes (project-relative), by integration name."""
    if not cfg.track or cfg.tracking_dir is None:
        return {}
    return {name: f"{cfg.tracking_dir}/{name}" for name in cfg.track}


def tracking_env(cfg: TrainCommon) -> dict[str, str]:
    """The environment variables that point each integration at its folder (absolute paths)."""
    where = {name: str(Path(path).resolve()) for name, path in folders(cfg).items()}
    env: dict[str, str] = {}
    if "tensorboard" in where:
        env["TENSORBOARD_LOGGING_DIR"] = where["tensorboard"]
    if "trackio" in where:
        env["TRACKIO_DIR"] = where["trackio"]
    if "mlflow" in where:
        env["MLFLOW_TRACKING_URI"] = Path(where["mlflow"]).as_uri()
        env["MLFLOW_EXPERIMENT_NAME"] = cfg.experiment
        # MLflow 3 keeps the file store (a folder, no database) behind an opt-in
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    if "wandb" in where:
        env.update(WANDB_MODE="offline", WANDB_DIR=where["wandb"], WANDB_PROJECT=cfg.experiment,
                   WANDB_SILENT="true")
    return env


def report_args(cfg: TrainCommon) -> dict[str, Any]:
    """The TrainingArguments fields for tracking: none of them when the spec tracks nothing."""
    if not cfg.track:
        return {"report_to": []}
    return {"report_to": list(cfg.track), "run_name": cfg.job, "project": cfg.experiment}


def start(cfg: TrainCommon) -> dict[str, str]:
    """Check the integrations are installed, make their folders, point them there; the folders."""
    missing = [name for name in cfg.track if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        raise JobError(f"field 'track': {', '.join(missing)} not installed here "
                       f"(pip install {' '.join(PACKAGES[m] for m in missing)})")
    out = folders(cfg)
    for path in out.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    os.environ.update(tracking_env(cfg))
    return out
