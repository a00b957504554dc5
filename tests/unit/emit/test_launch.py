"""The launch wrapper: hostlist expansion, rank arithmetic, rendering, shellcheck, a local run."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fleming_dsl.emit.launch import (
    HostlistError,
    LaunchPlan,
    expand_hostlist,
    first_host,
    global_rank,
    main,
    node_ranks,
    render_wrapper,
    world_size,
)

GRPO = ("-m", "fleming_dsl.cli", "job", "grpo", "--config", "generated/x/jobs/rl1.json")


@pytest.mark.parametrize("nodelist, hosts", [
    ("localhost", ["localhost"]),
    ("gpu[01-03,07],cpu5", ["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("rack[1-2]-gpu[1,3]", ["rack1-gpu1", "rack1-gpu3", "rack2-gpu1", "rack2-gpu3"]),
    ("a, b[2]", ["a", "b2"]),
])
def test_expand_hostlist(nodelist: str, hosts: list[str]) -> None:
    assert expand_hostlist(nodelist) == hosts


def test_first_host_is_the_rendezvous() -> None:
    assert first_host("gpu[07,01-03],cpu5") == "gpu07"


@pytest.mark.parametrize("nodelist, message", [
    ("gpu[01-03", "nodelist 'gpu[01-03': '[' is never closed"),
    ("gpu01]", "nodelist 'gpu01]': ']' without '['"),
    ("gpu[03-01]", "nodelist 'gpu[03-01]': range '03-01' runs backwards"),
    ("gpu[a-b]", "nodelist 'gpu[a-b]': range 'a-b' is not N or N-M"),
    ("gpu[]", "nodelist 'gpu[]': empty brackets"),
    (" , ", "nodelist ' , ' names no host"),
])
def test_bad_hostlists_say_what_is_wrong(nodelist: str, message: str) -> None:
    with pytest.raises(HostlistError) as err:
        expand_hostlist(nodelist)
    assert str(err.value) == message


def test_hostlist_matches_scontrol_when_installed() -> None:
    if shutil.which("scontrol") is None:
        pytest.skip("scontrol is not installed (tests/slurm/cluster.sh start installs it)")
    nodelist = "gpu[01-03,07],cpu5,n[098-101],rack[1-2]-gpu[1,3]"
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                         text=True, check=True).stdout.split()
    assert expand_hostlist(nodelist) == out


def test_world_size_and_ranks() -> None:
    assert world_size(2, 8) == 16
    assert world_size(3, 0) == 3  # a CPU node still runs one process
    assert global_rank(1, 3, 8) == 11
    assert node_ranks("gpu[01-02]", 2) == [("gpu01", 0, [0, 1]), ("gpu02", 1, [2, 3])]
    with pytest.raises(ValueError, match="local rank 8 is outside 0..7"):
        global_rank(0, 8, 8)
    with pytest.raises(ValueError, match="nodes must be >= 1, got 0"):
        world_size(0, 8)


def test_cli_prints_first_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["first-host", "gpu[03-04]"]) == 0
    assert capsys.readouterr().out == "gpu03\n"
    assert main(["first-host", "gpu[03-"]) == 1
    assert capsys.readouterr().err == "error: nodelist 'gpu[03-': '[' is never closed\n"


def test_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="x: nodes must be >= 1, got 0"):
        LaunchPlan(name="x", python_args=GRPO, nodes=0)
    with pytest.raises(ValueError, match="x: nothing to launch"):
        LaunchPlan(name="x", python_args=())


def test_render_two_nodes_accelerate() -> None:
    plan = LaunchPlan(name="exp/rl1", python_args=GRPO, nodes=2, gpus_per_node=8,
                      accelerate_config="generated/x/accelerate/rl1.yaml")
    text = render_wrapper(plan)
    assert text == render_wrapper(plan)  # deterministic
    assert "world size 16" in text.splitlines()[1]
    assert "PROCS_PER_NODE=8\n" in text
    assert "--config_file generated/x/accelerate/rl1.yaml \\\n" in text
    assert '--machine_rank "$node_rank"' in text
    assert 'scontrol show hostnames "$1" | head -n 1' in text
    assert "PROGRAM=(-m fleming_dsl.cli job grpo --config generated/x/jobs/rl1.json)" in text
    assert 'exec srun --overlap --nodes="$num_nodes" --ntasks="$num_nodes" --ntasks-per-node=1' in text


def test_render_quotes_arguments() -> None:
    text = render_wrapper(LaunchPlan(name="a b", python_args=("x.py", "it's here")))
    assert "PROGRAM=(x.py 'it'\"'\"'s here')" in text


def _shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found is None:
        pytest.skip("shellcheck is not installed; as root, tests/slurm/cluster.sh start "
                    "installs it (apt-get install shellcheck)")
    return found


@pytest.mark.parametrize("launcher", ["accelerate", "torchrun"])
def test_two_node_wrapper_passes_shellcheck(tmp_path: Path, launcher: str) -> None:
    shellcheck = _shellcheck()
    plan = LaunchPlan(name="exp/rl1", python_args=GRPO, nodes=2, gpus_per_node=8,
                      launcher=launcher, accelerate_config="acc.yaml",
                      extra_launcher_args=("--max_restarts", "0") if launcher == "torchrun" else ())
    script = tmp_path / "train.sh"
    script.write_text(render_wrapper(plan), encoding="utf-8")
    result = subprocess.run([shellcheck, "--severity=style", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


PROBE = """
import json, os, sys
keys = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]
line = json.dumps({"env": {k: os.environ.get(k) for k in keys}, "argv": sys.argv[1:]}) + "\\n"
os.write(1, line.encode())  # one write under PIPE_BUF: two ranks' lines never interleave
"""


def _without_slurm() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "FLEMING_LAUNCH", "FLEMING_NUM", "FLEMING_MAIN"))}
    env["FLEMING_PYTHON"] = sys.executable
    return env


def test_wrapper_runs_directly_without_slurm(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    script = tmp_path / "train.sh"
    script.write_text(render_wrapper(LaunchPlan(name="t", python_args=("probe.py", "--a"))))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    result = subprocess.run(["bash", str(script), "b c"], cwd=tmp_path, env=_without_slurm(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["argv"] == ["--a", "b c"]
    assert "[launch t] no SLURM job: running directly" in result.stderr


def test_wrapper_without_slurm_starts_torchrun_for_two_processes(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    script = tmp_path / "train.sh"
    plan = LaunchPlan(name="t", python_args=("probe.py",), gpus_per_node=2, launcher="torchrun",
                      port=29617)
    script.write_text(render_wrapper(plan))
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, env=_without_slurm(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    envs = sorted((json.loads(line)["env"] for line in result.stdout.splitlines()),
                  key=lambda e: e["RANK"])
    assert [(e["RANK"], e["WORLD_SIZE"], e["MASTER_ADDR"]) for e in envs] == [
        ("0", "2", "127.0.0.1"), ("1", "2", "127.0.0.1")]


def test_all_ranks_here_runs_every_node_of_the_plan_on_this_machine(tmp_path: Path) -> None:
    """FLEMING_ALL_RANKS_HERE=1: a two-node CPU plan starts both ranks here (what the tests use)."""
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    script = tmp_path / "train.sh"
    plan = LaunchPlan(name="t", python_args=("probe.py",), nodes=2, launcher="torchrun", port=29618)
    script.write_text(render_wrapper(plan))
    alone = subprocess.run(["bash", str(script)], cwd=tmp_path, env=_without_slurm(),
                           capture_output=True, text=True, timeout=120)
    assert "no SLURM job: running directly" in alone.stderr  # one node's worth: a single process
    result = subprocess.run(["bash", str(script)], cwd=tmp_path,
                            env={**_without_slurm(), "FLEMING_ALL_RANKS_HERE": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    envs = sorted((json.loads(line)["env"] for line in result.stdout.splitlines()),
                  key=lambda e: e["RANK"])
    assert [(e["RANK"], e["WORLD_SIZE"]) for e in envs] == [("0", "2"), ("1", "2")]
    assert "node rank 0 of 1, rendezvous 127.0.0.1:29618, world size 2" in result.stderr
