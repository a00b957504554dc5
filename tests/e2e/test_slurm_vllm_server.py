"""A server-mode GRPO stage's launch on the two-node test cluster: the vLLM server (a stand-in
answering its endpoints) on the first node, training on the second, in one allocation."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest
from slurm.harness import slurm_cluster  # noqa: F401  (a fixture)
from vllm_fixtures import alive, compile_server_stage, standin_env, standin_records

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def sbatch(root: Path, partition: str, script: Path, port: int, **env: str) -> tuple[int, str]:
    """Run the launch script as a two-node batch job and wait for it: (exit code, its log)."""
    log = root / "job.log"
    result = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--partition={partition}", "--nodes=2",
         "--job-name=h-vllm-server-test", "--mem=1000", f"--output={log}", "--time=5",
         f"--wrap=bash {shlex.quote(str(script))}"],  # run as Snakemake runs it: bash on the file
        cwd=root, env=standin_env(root, port, **env), capture_output=True, text=True, timeout=240)
    return result.returncode, log.read_text() if log.exists() else result.stderr


@pytest.fixture
def compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return compile_server_stage(tmp_path, "vllm_server_timeout = 20  resources { nodes = 2 }")


@pytest.mark.parametrize("trainer_rc", [0, 3])
def test_server_on_the_first_node_training_on_the_second(
        tmp_path: Path, slurm_cluster: str, compiled: Path, trainer_rc: int) -> None:
    rc, log = sbatch(tmp_path, slurm_cluster, compiled, 18441 + trainer_rc,
                     STANDIN_HEALTHY_AFTER="2", STANDIN_TRAINER_RC=str(trainer_rc))
    assert rc == trainer_rc, log  # sbatch --wait exits with the job's code
    records = standin_records(tmp_path)
    server = next(r for r in records if r["role"] == "server")
    trainer = next(r for r in records if r["role"] == "trainer")
    assert (server["node"], trainer["node"]) == ("fleming-n1", "fleming-n2")
    assert trainer["grpo_config"]["vllm_server_base_url"] == f"http://fleming-n1:{18441 + trainer_rc}"
    assert trainer["generated"] == {"completion_ids": [[1, 2, 3]]}
    assert "stopping the vLLM server" in log
    time.sleep(1)  # srun forwards the stop to the server's task
    assert not alive(server["pid"]), log


def test_a_server_never_healthy_fails_the_job_within_its_timeout(
        tmp_path: Path, slurm_cluster: str, compiled: Path) -> None:
    started = time.monotonic()
    rc, log = sbatch(tmp_path, slurm_cluster, compiled, 18445, STANDIN_HEALTHY_AFTER="never")
    assert rc == 1
    assert time.monotonic() - started < 120
    assert ("error: the vLLM server at http://fleming-n1:18445 did not answer /health within 20s "
            "(vllm_server_timeout)") in log
    [server] = standin_records(tmp_path)  # no trainer started
    time.sleep(1)
    assert not alive(server["pid"]), log
