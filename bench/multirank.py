"""The tiny SFT stage on one rank and on two CPU ranks (DDP, ZeRO-2, ZeRO-3), measured in one run.

    python bench/multirank.py [--items 48] [--steps 4]

Builds the tiny model and synthetic items, compiles the tiny spec with `resources { nodes = 2 }`
(and `deepspeed = zero2/zero3`) as the multi-rank tests do, then runs the SFT job: directly in
one process (batch 8, grad_accum 2: the same 16 samples per step as two ranks of 8), and through
the emitted launch wrapper with both ranks on this machine. Prints wall time (launch to exit,
imports included), peak resident memory of each rank, and the final loss.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from multirank_fixtures import SFT_JOB, compile_project, launch
from training_fixtures import build_tiny_model, synthetic_items, write_items


def one_rank(project, root: Path) -> dict:
    config = project.config(SFT_JOB)
    config.update(grad_accum=2, output=str(root / "one" / "sft"), meta=str(root / "one" / "sft.meta.json"))
    path = root / "one.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "job", "sft", "--config", str(path)],
                          cwd=project.root, text=True, capture_output=True, check=False,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    meta = json.loads((root / "one" / "sft.meta.json").read_text())
    return {"wall": wall, "peaks": [peak], "loss": meta["metrics"]["final_loss"]}


def two_ranks(project) -> dict:
    start = time.monotonic()
    done = launch(project, SFT_JOB, timeout=1200)
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(done.stdout[-3000:])
    peaks = {int(r): float(mb) for r, mb in re.findall(r"\[rank (\d+)/2\] INFO fleming.job: peak memory (\d+) MB",
                                                        done.stdout)}
    meta = json.loads(project.path(project.config(SFT_JOB)["meta"]).read_text())
    return {"wall": wall, "peaks": [peaks[r] for r in sorted(peaks)], "loss": meta["metrics"]["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-multirank-") as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "model")
        data = write_items(root / "train.jsonl", synthetic_items(args.items, seed=4))
        projects = {mode: compile_project(root / mode, mode, model, data) for mode in ("ddp", "zero2", "zero3")}
        rows = [("1 rank (grad_accum 2)", one_rank(projects["ddp"], root))]
        for mode, label in (("ddp", "2 ranks DDP"), ("zero2", "2 ranks ZeRO-2"), ("zero3", "2 ranks ZeRO-3")):
            rows.append((label, two_ranks(projects[mode])))
    print(f"tiny SFT, {args.items} items, 4 steps of 16 samples, CPU, OMP_NUM_THREADS=1")
    print(f"| {'run':<22} | {'wall s':>7} | {'peak MB per rank':<18} | {'final loss':>10} |")
    print(f"|{'-' * 24}|{'-' * 9}|{'-' * 20}|{'-' * 12}|")
    for label, row in rows:
        peaks = " / ".join(f"{p:.0f}" for p in row["peaks"])
        print(f"| {label:<22} | {row['wall']:>7.1f} | {peaks:<18} | {row['loss']:>10.4f} |")


if __name__ == "__main__":
    main()
