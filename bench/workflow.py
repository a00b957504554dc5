"""How the generated workflow scales with the experiment: sweeps of 10, 100 and 1,000 points.

    python bench/workflow.py [--points 10 100 1000] [--shards 16 64] [--no-dry-run]

For the 7B spec alone, with `sweep lr in [...]` of each size in its first stage, and with its
distill step cut into --shards shards (`shards = N`, bench/shards.py's spec edit): jobs,
`fleming compile` CPU time in process (cold: every file written), Snakefile and jobs.json bytes,
the CPU time of Snakemake parsing the Snakefile (`--list-rules`, what every SLURM job pays again)
and of a dry run (`-n`: parse + DAG of every job), and each figure's ratio to the 10-point case.
Everything runs in a scratch copy of the project under the system temp folder, with an empty
placeholder for each data file the spec reads, so the dry run sees every job.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = "specs/fleming_r1_7b.flm"
sys.path.insert(0, str(REPO / "bench"))
from compile import sweep_spec  # noqa: E402
from shards import BASE, with_shards  # noqa: E402


def child_cpu(command: list[str], cwd: Path) -> float:
    """CPU seconds (user + system) of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}"
                         f"{result.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compile_cpu(spec: str) -> tuple[float, float, int]:
    """(user, system CPU seconds of a cold in-process compile, jobs), cwd = project root."""
    from fleming_dsl.compiler import compile_spec

    before = resource.getrusage(resource.RUSAGE_SELF)
    compiled = compile_spec(spec)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
            len(compiled.plan.jobs))


def placeholders(out_dir: Path) -> None:
    """An empty file for every input no job produces (data files, prompts)."""
    rows = json.loads((out_dir / "jobs.json").read_text(encoding="utf-8"))["jobs"]
    produced = {path for row in rows for path in row["outputs"].values()}
    for row in rows:
        for path in row["inputs"]:
            if path not in produced and not Path(path).exists():
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text("")


def measure(spec: str, dry_run: bool) -> dict[str, float | int]:
    user, system, jobs = compile_cpu(spec)
    from fleming_dsl.compiler import load_experiment

    out = Path("generated") / load_experiment(spec).name
    placeholders(out)
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(out / "Snakefile")]
    row: dict[str, float | int] = {
        "jobs": jobs, "compile": user + system, "compile_sys": system,
        "snakefile": (out / "Snakefile").stat().st_size,
        "table": (out / "jobs.json").stat().st_size,
        "parse": child_cpu([*snakemake, "--list-rules"], Path.cwd()),
    }
    if dry_run:
        row["dry_run"] = child_cpu([*snakemake, "-n", "--quiet", "rules"], Path.cwd())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--shards", type=int, nargs="*", default=[16, 64],
                        help="distill shard counts to add as rows (none: --shards)")
    parser.add_argument("--no-dry-run", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="fleming-bench-workflow-"))
    here = Path.cwd()
    try:
        for folder in ("specs", "prompts"):
            shutil.copytree(REPO / folder, scratch / folder)
        text = (REPO / FLAGSHIP).read_text(encoding="utf-8")
        cases = [("7B spec", FLAGSHIP)]
        for points in args.points:
            name = f"specs/sweep_{points}.flm"
            swept = sweep_spec(text, points).replace(
                'experiment "fleming-r1-7b"', f'experiment "sweep-{points}"')
            (scratch / name).write_text(swept, encoding="utf-8")
            cases.append((f"7B + sweep lr ({points} points)", name))
        base = (REPO / "specs" / BASE).read_text(encoding="utf-8")
        for count in args.shards:
            # the 7B spec extending a copy of the base whose distill step is cut `count` ways
            (scratch / f"specs/base_shards_{count}.flm").write_text(with_shards(base, count),
                                                                  encoding="utf-8")
            name = f"specs/shards_{count}.flm"
            (scratch / name).write_text(text.replace(
                'experiment "fleming-r1-7b"', f'experiment "shards-{count}"').replace(
                f'extends "{BASE}"', f'extends "base_shards_{count}.flm"'), encoding="utf-8")
            cases.append((f"7B, distill shards = {count}", name))
        os.chdir(scratch)
        sys.path.insert(0, str(REPO))
        rows = [(label, measure(spec, not args.no_dry_run)) for label, spec in cases]
    finally:
        os.chdir(here)
        shutil.rmtree(scratch, ignore_errors=True)
    base = rows[1][1] if len(rows) > 1 else rows[0][1]
    header = (f"{'case':<32} {'jobs':>6} {'compile':>9} {'(sys)':>7} {'Snakefile':>10} "
              f"{'jobs.json':>10} {'parse':>8} {'dry run':>9}   ratios to {args.points[0]} points "
              "(jobs / compile / parse / dry run)")
    print(header)
    print("-" * len(header))
    for label, row in rows:
        dry = row.get("dry_run")
        ratios = [row["jobs"] / base["jobs"], row["compile"] / base["compile"],
                  row["parse"] / base["parse"]]
        if dry is not None:
            ratios.append(dry / base["dry_run"])
        print(f"{label:<32} {row['jobs']:>6} {row['compile']:>8.2f}s {row['compile_sys']:>6.2f}s "
              f"{row['snakefile']:>9}B "
              f"{row['table']:>9}B {row['parse']:>7.2f}s "
              f"{(f'{dry:.2f}s' if dry is not None else '-'):>9}   "
              + " / ".join(f"{r:.1f}x" for r in ratios))
    print("\nCPU seconds (user + system; '(sys)' is the system part of compile, mostly creating "
          "files, which other disk work on the machine inflates). compile is cold: every file "
          "written. parse = snakemake --list-rules; dry run = snakemake -n.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
