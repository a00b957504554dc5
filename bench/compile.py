"""Time `fleming check` and `fleming compile` on the flagship spec and on a 1,000-point sweep.

    python bench/compile.py [--repeat 5] [--points 1000]

Run from the project root. "check" and "compile" are the median CPU seconds (user + system)
of the library call in process (parse + check, or parse + check + plan + emit into a new folder:
a cold compile, every file written); "compile CLI" is one wall-clock run of the command.
"Snakemake parse" is the CPU time of `snakemake --list-rules` on the generated Snakefile: what
every SLURM job of the workflow pays again when Snakemake re-parses it.

A second table gives `fleming check` of the flagship spec as a new process, interpreter start
included (median CPU seconds of --repeat runs, after one run that writes the bytecode caches, as
an installed package has them), next to `python -c pass` measured the same way: the floor.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = "specs/fleming_r1_7b.flm"


def sweep_spec(text: str, points: int) -> str:
    """`text` with `sweep lr in [...]` (points values) in place of its first stage block's `lr`."""
    values = ", ".join(f"{1e-6 * (1 + i / points):.9g}" for i in range(points))
    match = re.search(r"^stage\s+\w+\s*=.*?\{", text, re.M)
    if match is None:
        raise SystemExit("the flagship spec has no `stage ... {` block to sweep")
    # the swept key may not also be set in the block (a check says so): drop its setting there
    block_end = text.find("\n}", match.end())
    body = re.sub(r"^\s*lr\s*=.*\n", "", text[match.end():block_end], count=1, flags=re.M)
    return (text[:match.end()] + f"\n  sweep lr in [{values}]\n" + body
            + text[block_end:])


CHECK_CLI_TARGET = 0.2  # CPU seconds, interpreter start included (issue 12)


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds (user + system) of `action` in this process."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return statistics.median(times)


def process_cpu(command: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one child process run to completion."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def check_cli_cpu(repeat: int) -> tuple[float, float]:
    """(median CPU-s of `fleming check FLAGSHIP` as a new process, of `python -c pass`)."""
    import os

    # Bytecode caches as an installed package has them: a PYTHONDONTWRITEBYTECODE environment
    # would otherwise recompile every module of the package on every run.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    check = [sys.executable, "-m", "fleming_dsl.cli", "check", FLAGSHIP]
    process_cpu(check, env)  # writes the caches
    checks, floors = [], []
    for _ in range(repeat):  # interleaved, so both sides see the same load
        floors.append(process_cpu([sys.executable, "-c", "pass"], env))
        checks.append(process_cpu(check, env))
    return statistics.median(checks), statistics.median(floors)


def cli_seconds(*args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", *args], cwd=REPO,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"fleming {' '.join(args)} failed:\n{result.stderr}")
    return elapsed


def snakemake_parse_cpu(snakefile: Path) -> float:
    """CPU seconds (user + system) of `snakemake --list-rules` on a generated Snakefile."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(snakefile),
                             "--list-rules"], cwd=REPO, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"snakemake --list-rules {snakefile} failed:\n{result.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(spec: str, repeat: int, scratch: Path) -> dict[str, float | int]:
    from fleming_dsl.compiler import ir_sha256, load_experiment
    from fleming_dsl.emit.workflow import emit
    from fleming_dsl.plan.planner import plan

    exp = load_experiment(spec)
    logical = f"generated/{exp.name}"
    runs = iter(range(1_000_000))

    def compile_once() -> None:
        # a cold compile into a new folder: every file written. (Not the same folder emptied
        # again: on ext4, creating files where thousands were just deleted cost 5-10x the
        # system time, which measured the file system's cleanup rather than the compiler.)
        out = scratch / f"{exp.name}-{next(runs)}"
        emit(plan(load_experiment(spec), logical), out, ir_sha256=ir_sha256(exp))

    return {
        "jobs": len(plan(exp, logical).jobs),
        "check": median_seconds(lambda: load_experiment(spec), repeat),
        "compile": median_seconds(compile_once, repeat),
        "compile_cli": cli_seconds("compile", spec, "--out",
                                   str((scratch / f"{exp.name}-cli").relative_to(REPO))),
        "parse": snakemake_parse_cpu(scratch / f"{exp.name}-cli" / "Snakefile"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    if not (REPO / FLAGSHIP).is_file():
        raise SystemExit(f"{FLAGSHIP}: missing")
    sys.path.insert(0, str(REPO))
    # The sweep spec sits in a copy of specs/ one level below the root, so its relative paths
    # (data files, `extends` of a sibling spec) resolve as the flagship's do.
    scratch = Path(tempfile.mkdtemp(prefix=".bench-", dir=REPO))
    try:
        for spec in (REPO / "specs").glob("*.flm"):
            shutil.copy(spec, scratch / spec.name)
        sweep = scratch / f"sweep_{args.points}.flm"
        sweep.write_text(sweep_spec((REPO / FLAGSHIP).read_text(encoding="utf-8"), args.points),
                         encoding="utf-8")
        rows = [(FLAGSHIP, measure(FLAGSHIP, args.repeat, scratch)),
                (f"{FLAGSHIP} + sweep lr ({args.points} points)",
                 measure(str(sweep.relative_to(REPO)), max(1, args.repeat // 2), scratch))]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    check_cli, floor = check_cli_cpu(max(args.repeat, 5))
    header = (f"{'spec':<52} {'jobs':>6} {'check':>11} {'compile':>11} "
              f"{'compile CLI':>12} {'Snakemake parse':>16}")
    print(header)
    print("-" * len(header))
    for name, row in rows:
        print(f"{name:<52} {row['jobs']:>6} {row['check']:>6.3f} CPU-s {row['compile']:>6.3f} CPU-s "
              f"{row['compile_cli']:>10.3f}s {row['parse']:>10.3f} CPU-s")
    print()
    header = f"{'new process':<52} {'CPU-s':>7}   target"
    print(header)
    print("-" * len(header))
    print(f"{'python -c pass (the floor)':<52} {floor:>7.3f}")
    verdict = "met" if check_cli < CHECK_CLI_TARGET else "NOT met"
    print(f"{'python -m fleming_dsl.cli check ' + FLAGSHIP:<52} {check_cli:>7.3f}   "
          f"< {CHECK_CLI_TARGET} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
