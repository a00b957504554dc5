"""Compile and dry-run the 7B spec with its distill step cut into 1, 16 and 64 shards.

    python bench/shards.py [--shards 1 16 64] [--repeat 3] [--points 100]

Run from the project root. For each cut: the jobs planned, the in-process compile time (parse +
check + plan + emit, median of --repeat), the Snakefile's size, and the CPU time of
`snakemake -n` (parsing the Snakefile and building the DAG, children's user + system time) in a
scratch project holding empty stand-ins for every input. The last row is the compile benchmark's
sweep (`sweep temperature` with --points values on the first stage, crossed with the
7B spec's own 2-point sweep) measured the same way in the same
run: the budget a sharded compile should stay within.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = "fleming_r1_7b.flm"
BASE = "fleming_r1_base.flm"


def with_shards(base_text: str, count: int) -> str:
    """The base spec with `shards = count` in its distill block."""
    match = re.search(r"^distill\s+cot\s+from.*?\{\n", base_text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"{BASE} has no `distill cot ... {{` block")
    return base_text[:match.end()] + f"  shards = {count}\n" + base_text[match.end():]


def with_sweep(text: str, points: int) -> str:
    """`sweep temperature` over `points` values in the first stage (crossed with its own sweep)."""
    values = ", ".join(f"{0.5 + i / points:.9g}" for i in range(points))
    match = re.search(r"^stage\s+\w+\s*=.*?\{", text, re.MULTILINE)
    if match is None:
        raise SystemExit("no `stage ... {` block to sweep")
    return text[:match.end()] + f"\n  sweep temperature in [{values}]\n" + text[match.end():]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(spec: Path, project: Path, repeat: int) -> dict[str, float | int]:
    """Compile `spec` (inside `project`) and dry-run the workflow it writes there."""
    from fleming_dsl.compiler import ir_sha256, load_experiment
    from fleming_dsl.emit.workflow import emit
    from fleming_dsl.plan.planner import plan

    os.chdir(project)
    rel = str(spec.relative_to(project))
    exp = load_experiment(rel)
    out = f"generated/{exp.name}"
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        workflow = plan(load_experiment(rel), out)
        shutil.rmtree(project / out, ignore_errors=True)  # a cold compile: every file written
        emit(workflow, project / out, ir_sha256=ir_sha256(exp))
        times.append(time.perf_counter() - start)
    written = {o.path for job in workflow.jobs for o in job.outputs}
    for path in {p for job in workflow.jobs for p in job.inputs} - written:
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("x\n")
    before = children_cpu()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", f"{out}/Snakefile", "-n",
                             "--quiet", "rules"], cwd=project, capture_output=True, text=True,
                            check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed for {rel}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return {"jobs": len(workflow.jobs), "compile": statistics.median(times),
            "snakefile": (project / out / "Snakefile").stat().st_size,
            "dry_cpu": children_cpu() - before, "dry_wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--points", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    base_text = (REPO / "specs" / BASE).read_text(encoding="utf-8")
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="fleming-bench-shards-"))
    try:
        for label, base, flagship in (
                *((f"7B, distill shards = {n}", with_shards(base_text, n), None)
                  for n in args.shards),
                (f"7B, sweep temperature ({args.points} pts), unsharded", base_text, args.points)):
            project = scratch / re.sub(r"\W+", "_", label)
            (project / "specs").mkdir(parents=True)
            shutil.copytree(REPO / "prompts", project / "prompts")  # the specs check they exist
            for spec in (REPO / "specs").glob("*.flm"):
                shutil.copy(spec, project / "specs" / spec.name)
            (project / "specs" / BASE).write_text(base, encoding="utf-8")
            if flagship is not None:
                text = (REPO / "specs" / FLAGSHIP).read_text(encoding="utf-8")
                (project / "specs" / FLAGSHIP).write_text(with_sweep(text, flagship),
                                                          encoding="utf-8")
            rows.append((label, measure(project / "specs" / FLAGSHIP, project, args.repeat)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    header = (f"{'workflow':<44} {'jobs':>6} {'compile':>9} {'Snakefile':>11} "
              f"{'snakemake -n CPU':>17} {'(wall)':>9}")
    print(header)
    print("-" * len(header))
    for label, row in rows:
        print(f"{label:<44} {row['jobs']:>6} {row['compile']:>8.3f}s {row['snakefile']:>10,}B "
              f"{row['dry_cpu']:>16.2f}s {row['dry_wall']:>8.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
