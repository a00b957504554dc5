"""The training launch wrapper run for real under SLURM: srun + torchrun, two ranks on one node.

Under `--executor slurm` the rule already runs inside an `srun -n1` step (the nested srun needs
`--overlap`); under `--executor cluster-generic` it runs in the plain batch script.

Both executors' runs go at once, each from its own folder and port: they mostly wait for SLURM.
Each test reports its own.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pytest
from slurm.harness import (  # noqa: F401  (slurm_cluster is a fixture)
    GENERIC_ARGS,
    SLURM_ARGS,
    job_fields,
    outcome,
    run_concurrently,
    slurm_cluster,
    snakemake,
    submitted_ids,
)

from fleming_dsl.emit.launch import LaunchPlan, render_wrapper

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROBE = """
import json, os
keys = ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_NODEID", "SLURM_JOB_ID"]
print(json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
"""

SNAKEFILE = """
rule all:
    input: "out/ranks.jsonl"

rule train:
    input: launch="train.sh"
    output: "out/ranks.jsonl"
    threads: 2
    resources: mem_mb=1000, runtime=5, nodes=1, cpus_per_task=2
    shell: "FLEMING_PYTHON={python} bash {{input.launch}} > {{output}}"
"""


PORTS = {"slurm": 29611, "cluster-generic": 29612}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory,
              slurm_cluster: str) -> dict[str, BaseException | None]:
    """Both executors' runs, at once: executor -> what its scenario raised, or None."""
    return run_concurrently({
        executor: functools.partial(_two_ranks, tmp_path_factory.mktemp(executor), slurm_cluster,
                                    executor, port) for executor, port in PORTS.items()})


@pytest.mark.parametrize("executor", PORTS)
def test_wrapper_starts_two_ranks_under_slurm(scenarios: dict, executor: str) -> None:
    outcome(scenarios, executor)


def _two_ranks(tmp_path: Path, slurm_cluster: str, executor: str, port: int) -> None:
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(python=sys.executable))
    plan = LaunchPlan(name="t/train", python_args=("probe.py",), gpus_per_node=2,
                      launcher="torchrun", port=port)
    (tmp_path / "train.sh").write_text(render_wrapper(plan), encoding="utf-8")
    if executor == "slurm":
        args = [*SLURM_ARGS, "--default-resources", f"slurm_partition={slurm_cluster}"]
    else:
        args = [*GENERIC_ARGS, "--cluster-generic-submit-cmd",
                f"sbatch --parsable --partition={slurm_cluster} --nodes={{resources.nodes}} "
                "--cpus-per-task={resources.cpus_per_task} --mem={resources.mem_mb}"]
    result = snakemake(tmp_path, *args)
    assert result.returncode == 0, result.stdout[-4000:]
    [job_id] = submitted_ids(result.stdout)
    # each rank's object, not each line: the two ranks share the file, and once (cluster-generic,
    # at load 8) one's newline came after the other's object
    ranks = sorted((json.loads(found) for found in
                    re.findall(r"\{[^{}]*\}", (tmp_path / "out" / "ranks.jsonl").read_text())),
                   key=lambda r: r["RANK"])
    node = job_fields(job_id)["NodeList"]  # one of the cluster's two nodes: the rendezvous host
    assert node in ("fleming-n1", "fleming-n2")
    assert ranks == [
        {"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": node,
         "MASTER_PORT": str(port), "SLURM_NODEID": "0", "SLURM_JOB_ID": job_id}
        for rank in (0, 1)]
