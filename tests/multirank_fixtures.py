"""A compiled copy of the tiny spec whose SFT and GRPO stages ask for two ranks, and how to run them.

The spec is `specs/tiny.flm` with `resources { nodes = 2 }` (one CPU rank per node) and a
`deepspeed` setting added to `cold_start` and `rl1`, and smaller step counts so a run takes
seconds. It is compiled like a user would; the tests then run the emitted launch wrapper
(`generated/tiny/launch/<job>.sh`) with FLEMING_ALL_RANKS_HERE=1, so both ranks start here
through the wrapper's torchrun, with the emitted job JSON and DeepSpeed JSON. Only the job
JSON's `model` and `data` are pointed at the session's tiny model and synthetic items (the
upstream pipeline is not what these tests are about).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from paths import REPO

MODES = ("ddp", "zero2", "zero3")
SFT_JOB, GRPO_JOB, MINE_JOB = "sft_cold_start", "grpo_rl1", "grpo_rl2"


def _set_options(text: str, stage: str, options: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """`text` with stage `stage`'s block holding `options` (replaced or added) and without `drop`."""
    match = re.search(rf"^stage {stage} = .*?\{{\n(.*?)^\}}", text, re.S | re.M)
    assert match, f"specs/tiny.flm has no stage {stage}: update two_rank_spec"
    lines = [line for line in match.group(1).splitlines()
             if line.split("=")[0].strip() not in (*options, *drop)]
    lines += [f"  {key} = {value}" if not value.startswith("{") else f"  {key} {value}"
              for key, value in options.items()]
    return text[:match.start(1)] + "\n".join(lines) + "\n" + text[match.end(1):]


def two_rank_spec(mode: str) -> str:
    """specs/tiny.flm with two ranks for every training stage, `mode` for cold_start and rl1, and
    step counts small enough for seconds per run."""
    text = (REPO / "specs" / "tiny.flm").read_text(encoding="utf-8")
    deepspeed = {} if mode == "ddp" else {"deepspeed": mode}
    two = {"resources": "{ nodes = 2 }"}
    text = _set_options(text, "cold_start", {"max_steps": "4", "save_steps": "2", "lr": "3e-3",
                                             "batch": "8", **deepspeed, **two}, drop=("epochs",))
    text = _set_options(text, "rl1", {"max_steps": "2", "max_completion_length": "16", "batch": "8",
                                      "generations": "4", **deepspeed, **two})
    text = _set_options(text, "rl2", {"max_steps": "2", "max_completion_length": "16", "batch": "8",
                                      "generations": "4", **two})
    text = re.sub(r"refresh = \d+, samples = \d+", "refresh = 1, samples = 1", text)
    assert text.count("nodes = 2") == 3 and "refresh = 1, samples = 1" in text
    return text


@dataclass(frozen=True)
class Project:
    root: Path
    mode: str

    def config_path(self, job: str) -> Path:
        return self.root / "generated" / "tiny" / "jobs" / f"{job}.json"

    def config(self, job: str) -> dict:
        return json.loads(self.config_path(job).read_text(encoding="utf-8"))

    def path(self, relative: str) -> Path:
        return self.root / relative


def compile_project(root: Path, mode: str, model: str, data: str) -> Project:
    """Copy specs/data/prompts, write the two-rank spec, compile it, point jobs at the fixtures."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("data", "prompts"):
        shutil.copytree(REPO / folder, root / folder, dirs_exist_ok=True)
    (root / "specs").mkdir(exist_ok=True)
    (root / "specs" / "tiny.flm").write_text(two_rank_spec(mode), encoding="utf-8")
    compiled = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "compile", "specs/tiny.flm"],
                              cwd=root, text=True, capture_output=True, timeout=120, check=False)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    project = Project(root, mode)
    for job in (SFT_JOB, GRPO_JOB, MINE_JOB):
        config = project.config(job)
        config["model"] = model
        config["data"] = data
        if config.get("miner"):
            config["miner"]["pool"] = data
        project.config_path(job).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(port: int | None = None) -> dict[str, str]:
    env = {**os.environ, "FLEMING_ALL_RANKS_HERE": "1", "FLEMING_PYTHON": sys.executable,
           "FLEMING_MAIN_PORT": str(port or free_port()), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return env


def launch(project: Project, job: str, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    """Run the emitted wrapper for `job` from the project root (as the Snakefile's rule does)."""
    return subprocess.run(["bash", f"generated/tiny/launch/{job}.sh"], cwd=project.root,
                          env=launch_env(), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, check=False)


def start(project: Project, job: str, log: Path, port: int) -> subprocess.Popen:
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115  (closed when the process ends)
    return subprocess.Popen(["bash", f"generated/tiny/launch/{job}.sh"], cwd=project.root,
                            env=launch_env(port), text=True, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def rank_pids(port: int) -> dict[int, int]:
    """RANK -> pid of the job processes that meet at MASTER_PORT `port`."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        env = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        if b"fleming_dsl.cli" in cmdline and env.get(b"MASTER_PORT") == str(port).encode() \
                and b"RANK" in env:
            found[int(env[b"RANK"])] = int(entry.name)
    return found


def rank_lines(log: str, pattern: str) -> dict[int, list[str]]:
    """The log lines of each rank (the `[rank r/n]` prefix) that match `pattern`."""
    out: dict[int, list[str]] = {}
    for match in re.finditer(rf"\[rank (\d+)/\d+\] (.*{pattern}.*)", log):
        out.setdefault(int(match.group(1)), []).append(match.group(2))
    return out


def temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp-*"))
