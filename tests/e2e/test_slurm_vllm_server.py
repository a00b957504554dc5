"""A server-mode GRPO stage's launch on the two-node test cluster: the vLLM server (a stand-in
answering its endpoints) on the first node, training on the second, in one allocation.

The three jobs run at once, each from its own folder and port: they mostly wait (for the stand-in
server's health, for SLURM). Each test reports its own."""

from __future__ import annotations

import contextlib
import functools
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from slurm.harness import outcome, run_concurrently, slurm_cluster  # noqa: F401  (a fixture)
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


TRAINER_RCS = (0, 3)


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory,
              slurm_cluster: str) -> dict[str, BaseException | None]:
    """Every job of this file, submitted at once: name -> what its scenario raised, or None."""
    runs = {}
    for name in [*(f"trainer-rc-{rc}" for rc in TRAINER_RCS), "never-healthy"]:
        root = tmp_path_factory.mktemp(name)
        with contextlib.chdir(root):  # compiling needs the project as the cwd; running does not
            runs[name] = (root, compile_server_stage(root, "vllm_server_timeout = 20  "
                                                           "resources { nodes = 2 }"))
    return run_concurrently({
        **{f"trainer-rc-{rc}": functools.partial(_server_and_trainer, *runs[f"trainer-rc-{rc}"],
                                                 slurm_cluster, rc) for rc in TRAINER_RCS},
        "never-healthy": functools.partial(_never_healthy, *runs["never-healthy"], slurm_cluster),
    })


@pytest.mark.parametrize("trainer_rc", TRAINER_RCS)
def test_server_on_the_first_node_training_on_the_second(scenarios: dict, trainer_rc: int) -> None:
    outcome(scenarios, f"trainer-rc-{trainer_rc}")


def test_a_server_never_healthy_fails_the_job_within_its_timeout(scenarios: dict) -> None:
    outcome(scenarios, "never-healthy")


def _server_and_trainer(tmp_path: Path, compiled: Path, slurm_cluster: str, trainer_rc: int) -> None:
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


def _never_healthy(tmp_path: Path, compiled: Path, slurm_cluster: str) -> None:
    started = time.monotonic()
    rc, log = sbatch(tmp_path, slurm_cluster, compiled, 18445, STANDIN_HEALTHY_AFTER="never")
    assert rc == 1
    assert time.monotonic() - started < 120
    assert ("error: the vLLM server at http://fleming-n1:18445 did not answer /health within 20s "
            "(vllm_server_timeout)") in log
    [server] = standin_records(tmp_path)  # no trainer started
    time.sleep(1)
    assert not alive(server["pid"]), log
