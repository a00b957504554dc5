"""The generated multi-node launch wrapper, for real: a tiny SFT stage on two SLURM nodes.

The test cluster (tests/slurm/cluster.sh) has two nodes, fleming-n1 and fleming-n2 (two slurmd
on this machine). The tiny spec's `cold_start` stage asks for `resources { nodes = 2 }` with no
GPUs, so `fleming compile` emits `generated/tiny/launch/sft_cold_start.sh`: one torchrun per node
with one CPU rank each. The batch job below runs that script as the Snakefile's rule does; it
re-runs itself through `srun` once per node, takes the rendezvous host from $SLURM_JOB_NODELIST,
and the two ranks train together over gloo and write one model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from multirank_fixtures import SFT_JOB, compile_project, launch_env, rank_lines
from slurm.harness import job_fields, slurm_cluster  # noqa: F401  (the session fixture)
from training_fixtures import synthetic_items, tiny_model, write_items  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_two_node_sft_through_the_generated_wrapper(
        tmp_path: Path, slurm_cluster: str, tiny_model: str) -> None:  # noqa: F811
    data = write_items(tmp_path / "train.jsonl", synthetic_items(32, seed=5))
    project = compile_project(tmp_path / "project", "ddp", tiny_model, data)
    config = project.config(SFT_JOB)
    script = project.path(f"generated/tiny/launch/{SFT_JOB}.sh")
    assert "2 node(s) x 1 process(es), world size 2" in script.read_text()
    log = tmp_path / "job.log"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--wait", f"--partition={slurm_cluster}", "--nodes=2",
         "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=2000", "--time=10",
         f"--output={log}", "--job-name=two-node-sft", "--export=ALL",
         # as the Snakefile's rule runs it: `bash <wrapper>` from the project root (a script
         # given to sbatch itself would be copied to the batch node's spool, where srun's copies
         # on the other node could not find it)
         f"--wrap=bash generated/tiny/launch/{SFT_JOB}.sh"],
        cwd=project.root, env=launch_env() | {"FLEMING_ALL_RANKS_HERE": ""}, text=True,
        capture_output=True, timeout=600, check=False)
    output = log.read_text() if log.is_file() else ""
    assert submitted.returncode == 0, submitted.stderr + output[-5000:]
    job_id = submitted.stdout.strip().split(";")[0]
    fields = job_fields(job_id)
    assert (fields["JobState"], fields["NodeList"]) == ("COMPLETED", "fleming-n[1-2]")
    # srun started one launcher per node, both meeting at the nodelist's first host
    for node in (0, 1):
        assert f"node rank {node} of 2, rendezvous fleming-n1:" in output, output[-5000:]
    joined = rank_lines(output, "joined the process group")
    assert {r: lines[0].split(" on ")[-1] for r, lines in joined.items()} == {
        0: "node fleming-n1", 1: "node fleming-n2"}, joined
    assert set(rank_lines(output, "step 4 loss")) == {0, 1}
    model = project.path(config["output"])
    assert (model / "model.safetensors").is_file()
    assert sorted(p.name for p in model.parent.iterdir() if p.name.startswith(model.name)) == [
        model.name, f"{model.name}.ckpt", f"{model.name}.meta.json"]
    meta = json.loads(project.path(config["meta"]).read_text())
    assert meta["metrics"]["steps"] == 4
