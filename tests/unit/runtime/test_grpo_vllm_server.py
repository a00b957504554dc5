"""Server mode: the address of the vLLM server reaches GRPOConfig (the launch's, or an external one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trl
from training_fixtures import train_config

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import VLLM_SERVER_ENV, GrpoJob
from fleming_dsl.runtime.train.grpo_trainer import vllm_args


def server_job(tmp_path: Path, **options) -> GrpoJob:
    return GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl", use_vllm=True,
                                               vllm_mode="server", **options))


def test_the_launchs_server_reaches_the_config(tmp_path: Path) -> None:
    config = server_job(tmp_path, vllm_server_timeout=30.0)
    args = vllm_args(config, cuda=True, vllm_installed=True, environ={VLLM_SERVER_ENV: "http://n1:8000"})
    assert args == {"use_vllm": True, "vllm_mode": "server", "vllm_max_model_length": None,
                    "vllm_server_base_url": "http://n1:8000", "vllm_server_timeout": 30.0}
    trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **{**args, "use_vllm": False})
    # the server's memory share is vllm-serve's when the spec gives none
    assert config.training.vllm_gpu_memory_utilization == 0.9


def test_an_external_server_wins(tmp_path: Path) -> None:
    config = server_job(tmp_path, vllm_server_base_url="http://ext:8000")
    args = vllm_args(config, cuda=True, vllm_installed=True, environ={VLLM_SERVER_ENV: "http://n1:8000"})
    assert args["vllm_server_base_url"] == "http://ext:8000"


def test_no_server_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(JobError) as info:
        vllm_args(server_job(tmp_path), cuda=True, vllm_installed=True, environ={})
    assert str(info.value) == (
        "grpo: vllm_mode = server but no vLLM server is running: start the stage through its "
        f"launch script (it starts one and sets {VLLM_SERVER_ENV}), or set vllm_server_base_url")
