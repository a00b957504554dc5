"""A server-mode GRPO stage compiled from MINIMAL, and the environment that runs its launch script
with stand-ins (tests/standins/) for `trl vllm-serve` and the trainer."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flm_fixtures import MINIMAL, write_project

from fleming_dsl.compiler import compile_experiment, load_experiment

REPO = Path(__file__).resolve().parent.parent
STANDINS = REPO / "tests" / "standins"
RL = "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  batch = 4 }"


def server_spec(options: str = "") -> str:
    return MINIMAL.replace(RL, "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  "
                               f'batch = 4  use_vllm = true  vllm_mode = "server"  {options} }}')


def compile_server_stage(root: Path, options: str = "") -> Path:
    """The stage's launch script, compiled under `root` (which must be the cwd)."""
    exp = load_experiment(write_project(root, server_spec(options)), project_root=root)
    compile_experiment(exp, "gen")
    return root / "gen" / "launch" / "grpo_rl.sh"


def _python_wrapper(path: Path, standin: str) -> str:
    """An executable that runs a stand-in with this interpreter, as FLEMING_*PYTHON would."""
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDINS / standin} "$@"\n')
    path.chmod(0o755)
    return str(path)


def standin_env(root: Path, port: int, **extra: str) -> dict[str, str]:
    """This process's environment without SLURM's or the launch's variables, with the stand-ins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "FLEMING_"))}
    env.update({"FLEMING_PYTHON": _python_wrapper(root / "trainer", "grpo_trainer.py"),
                "FLEMING_SERVER_PYTHON": _python_wrapper(root / "server", "vllm_server.py"),
                "FLEMING_VLLM_PORT": str(port), "STANDIN_LOG": str(root / "standin.jsonl"),
                "PYTHONPATH": str(REPO), **extra})
    return env


def standin_records(root: Path) -> list[dict]:
    log = root / "standin.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
