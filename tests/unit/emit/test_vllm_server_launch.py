"""A server-mode GRPO stage's launch script, on this machine without SLURM: it starts the vLLM
server (a stand-in answering its endpoints), waits for /health, hands the address to the
trainer's GRPOConfig, and stops the server however training ends."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from vllm_fixtures import alive, compile_server_stage, standin_env, standin_records


def compiled(tmp_path: Path, options: str = "") -> Path:
    return compile_server_stage(tmp_path, options)


def run_launch(tmp_path: Path, script: Path, port: int, **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, env=standin_env(tmp_path, port, **env),
                            capture_output=True, text=True, timeout=120)
    return result, standin_records(tmp_path)


@pytest.fixture(autouse=True)
def _cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


def test_a_server_stage_is_planned_with_its_server(tmp_path: Path) -> None:
    text = compiled(tmp_path, "vllm_server_timeout = 30").read_text()
    assert ("SERVER_PROGRAM=(-m trl.cli.main vllm-serve --model runs/t/stages/sft1 --tensor_parallel_size 1 "
            "--data_parallel_size 1 --gpu_memory_utilization 0.9)\n") in text
    assert "SERVER_TIMEOUT=30\n" in text


@pytest.mark.parametrize("trainer_rc", [0, 3])
def test_server_started_used_and_stopped_however_training_ends(tmp_path: Path, trainer_rc: int) -> None:
    script = compiled(tmp_path)
    result, records = run_launch(tmp_path, script, 18431, STANDIN_HEALTHY_AFTER="1.5",
                                 STANDIN_TRAINER_RC=str(trainer_rc))
    assert result.returncode == trainer_rc, result.stderr
    server = next(r for r in records if r["role"] == "server")
    trainer = next(r for r in records if r["role"] == "trainer")
    assert server["argv"][:4] == ["-m", "trl.cli.main", "vllm-serve", "--model"]
    assert trainer["grpo_config"]["vllm_server_base_url"] == "http://127.0.0.1:18431"
    assert trainer["grpo_config"]["vllm_mode"] == "server"
    assert trainer["generated"] == {"completion_ids": [[1, 2, 3]]}
    assert "vLLM server healthy at http://127.0.0.1:18431" in result.stderr
    assert not alive(server["pid"])  # stopped with the job: no server left holding GPUs


def failed_launch(tmp_path: Path, timeout_s: int, port: int, **env: str) -> tuple[list[str], list[dict]]:
    """A launch whose server never serves: it fails (exit 1) well inside the server's timeout
    plus start-up; its log lines and the stand-ins' records."""
    script = compiled(tmp_path, f"vllm_server_timeout = {timeout_s}")
    started = time.monotonic()
    result, records = run_launch(tmp_path, script, port, **env)
    assert result.returncode == 1
    assert time.monotonic() - started < timeout_s + 30  # bounded by the timeout, not by a hang
    return result.stderr.strip().splitlines(), records


def test_a_server_never_healthy_fails_within_its_timeout(tmp_path: Path) -> None:
    lines, records = failed_launch(tmp_path, 3, 18432, STANDIN_HEALTHY_AFTER="never")
    assert lines[-2:] == [
        "[launch t/grpo_rl] error: the vLLM server at http://127.0.0.1:18432 did not answer /health "
        "within 3s (vllm_server_timeout)",
        f"[launch t/grpo_rl] stopping the vLLM server (pid {records[0]['pid']})"]
    assert [r["role"] for r in records] == ["server"]  # the trainer never started
    assert not alive(records[0]["pid"])


def test_a_server_that_dies_fails_the_job_at_once(tmp_path: Path) -> None:
    # no STANDIN_LOG directory: the stand-in exits at start-up, as a server that cannot load would
    lines, _ = failed_launch(tmp_path, 60, 18433, STANDIN_LOG="/nonexistent/log")
    assert lines[-1] == (
        "[launch t/grpo_rl] error: the vLLM server exited before answering http://127.0.0.1:18433/health")
    assert not any("did not answer /health" in line for line in lines)  # it did not wait the 60 s out


def test_training_gpus_are_the_ones_the_server_leaves(tmp_path: Path) -> None:
    """One node of 4 GPUs, a server at tensor parallel 2: it takes GPUs 0-1, training 2-3."""
    text = compiled(tmp_path, "vllm_tensor_parallel_size = 2  resources { gpus = 4 }").read_text()
    assert "2 node(s) x" not in text and "PROCS_PER_NODE=2\n" in text
    assert "SERVER_GPUS=2\nserver_pid=\"\"" in text
