"""How close `fleming cost` comes: estimates from one run's records against a second run's times.

    python bench/cost_accuracy.py SPEC --a RUN_A --b RUN_B      # two finished runs of SPEC
    python bench/cost_accuracy.py SPEC --run [--cores 2]         # run SPEC twice, then compare
    python bench/cost_accuracy.py SPEC --again PROJECT [--skip JOB]  # re-run a run's jobs

Run from the project root. RUN_A and RUN_B are workdirs (folders holding the jobs'
`<output>.meta.json` records) of the same spec. With `--run` the spec runs twice with
`fleming run`, one after the other, each in its own temporary copy of the project (specs, data,
prompts: cold teacher caches both times), and the two copies' workdirs are compared. With
`--again PROJECT` (a project folder holding a finished run of SPEC: its generated/ and workdir)
run B is that run's jobs run again one at a time with `fleming job`, in plan order, in a copy of
PROJECT (each job's inputs are run A's; `--skip` leaves out a long job): a second run for the
price of the jobs you keep.

Per job of the plan: the estimate `fleming cost` makes from run A's records (the record of the
job of the same name, as after a first run), the time run B recorded, the error
(estimate / recorded - 1), and whether it is within 25%; then the share of jobs within 25%.
A job that ran with another config in B (another version of the spec) is shown, not compared.
The figures depend on the machine and on what else ran beside each job; both sides are
measured here, so print them with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOUND = 0.25
COPIED = ("specs", "data", "prompts")


def run_copy(spec: str, cores: int, scratch: Path, name: str) -> Path:
    """`fleming run SPEC` in a fresh copy of the project; returns the copy's workdir."""
    from fleming_dsl.compiler import load_experiment

    root = scratch / name
    for folder in COPIED:
        shutil.copytree(REPO / folder, root / folder)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "run", spec, "--cores", str(cores)],
                          cwd=root, text=True, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"run {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"run {name}: {time.monotonic() - start:.0f} s wall", file=sys.stderr)
    return root / load_experiment(root / spec, root).workdir


def rerun_jobs(spec: str, project: Path, scratch: Path, skip: list[str]) -> Path:
    """Each job of the finished run in `project` run again with `fleming job`, in a copy;
    returns the copy's workdir."""
    from fleming_dsl.compiler import default_out_dir, load_experiment
    from fleming_dsl.plan.planner import plan

    root = scratch / "b"
    shutil.copytree(project, root, symlinks=True)
    exp = load_experiment(root / spec, root)
    for job in plan(exp, default_out_dir(exp)).jobs:
        if job.name in skip:
            continue
        config = f"{default_out_dir(exp)}/jobs/{job.name}.json"
        done = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "job", job.config.kind,
                               "--config", config], cwd=root, text=True, capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"{job.name} failed again:\n{done.stderr[-3000:]}")
        print(f"{job.name}: run again", file=sys.stderr)
    return root / exp.workdir


def run_records(run: Path) -> dict[str, dict]:
    """Job -> its meta record, for every record under a run's workdir."""
    metas = {}
    for path in sorted(run.rglob("*.meta.json")):
        meta = json.loads(path.read_text(encoding="utf-8"))
        metas[meta["job"]] = meta
    return metas


Row = tuple[str, str, float, "float | None", "float | None", "float | None"]


def compare(spec: str, run_a: Path, run_b: Path, skip: list[str] = ()) -> list[Row]:
    """(job, kind, estimate from A, wall time recorded in B, CPU seconds in A and in B) per
    job of the spec's plan; a job that ran with another config in B (another version of the
    spec), or one in `skip` (not run again: B holds A's record), is not compared. CPU seconds (recorded since `timings.cpu_s` exists) show whether a
    wall-time error is the work or the load beside it."""
    from fleming_dsl.compiler import default_out_dir, load_experiment
    from fleming_dsl.plan.planner import plan
    from fleming_dsl.review import cost

    exp = load_experiment(spec)
    planned = plan(exp, default_out_dir(exp))
    estimates = cost.estimate(planned, [], own=cost.records_under([run_a]))
    metas_a, metas_b = run_records(run_a), run_records(run_b)
    rows = []
    for e in estimates:
        a, b = metas_a.get(e.job, {}), metas_b.get(e.job, {})
        if e.basis == "declared":
            continue
        if not b or a.get("config_sha256") != b.get("config_sha256") or e.job in skip:
            rows.append((e.job, e.kind, e.seconds, None, None, None))
            continue
        rows.append((e.job, e.kind, e.seconds, b["timings"]["total_s"],
                     a.get("timings", {}).get("cpu_s"), b["timings"].get("cpu_s")))
    return rows


def table(rows: list[Row]) -> str:
    width = max([len(job) for job, *_ in rows] + [3])
    lines = [f"| {'job':<{width}} | kind | estimate (A) s | recorded (B) s | error | within 25% "
             "| CPU s A / B |",
             f"|{'-' * (width + 2)}|---|---:|---:|---:|:---:|---:|"]
    within = compared = 0
    for job, kind, estimate, recorded, cpu_a, cpu_b in rows:
        if recorded is None or recorded <= 0:
            lines.append(f"| {job:<{width}} | {kind} | {estimate:.1f} | - (not run again, or "
                         "another config) | - | - | - |")
            continue
        error = estimate / recorded - 1
        ok = abs(error) <= BOUND
        within += ok
        compared += 1
        cpu = f"{cpu_a:.1f} / {cpu_b:.1f}" if cpu_a and cpu_b else "-"
        lines.append(f"| {job:<{width}} | {kind} | {estimate:.1f} | {recorded:.1f} | "
                     f"{error:+.0%} | {'yes' if ok else 'no'} | {cpu} |")
    share = within / compared if compared else 0.0
    lines.append(f"\nwithin 25%: {within} of {compared} jobs ({share:.0%}); machine: "
                 f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    return "\n".join(lines)


def _workdir(spec: str) -> str:
    from fleming_dsl.compiler import load_experiment

    return load_experiment(spec).workdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--a", type=Path, help="run A's workdir (the estimates come from it)")
    parser.add_argument("--b", type=Path, help="run B's workdir (the recorded times)")
    parser.add_argument("--run", action="store_true", help="run the spec twice in temporary copies")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="with --run: copy both workdirs here")
    parser.add_argument("--again", type=Path, metavar="PROJECT",
                        help="run B: the jobs of the run in PROJECT run again, one at a time")
    parser.add_argument("--skip", action="append", default=[], metavar="JOB",
                        help="a job not run again in B (not compared); repeatable")
    args = parser.parse_args(argv)
    if [args.run, bool(args.a and args.b), bool(args.again)].count(True) != 1:
        parser.error("give one of --a and --b, --run, or --again")
    if args.again:
        exp_workdir = args.again / _workdir(args.spec)
        with tempfile.TemporaryDirectory(prefix="cost-accuracy-") as scratch:
            run_b = rerun_jobs(args.spec, args.again, Path(scratch), args.skip)
            if args.keep:
                shutil.copytree(run_b, args.keep / "b", dirs_exist_ok=True)
            print(table(compare(args.spec, exp_workdir, run_b, args.skip)))
    elif args.run:
        with tempfile.TemporaryDirectory(prefix="cost-accuracy-") as scratch:
            runs = []
            for name in ("a", "b"):
                runs.append(run_copy(args.spec, args.cores, Path(scratch), name))
                if args.keep:  # each as soon as it is done: a run is ten minutes of two cores
                    shutil.copytree(runs[-1], args.keep / name, dirs_exist_ok=True)
            print(table(compare(args.spec, *runs)))
    else:
        print(table(compare(args.spec, args.a, args.b, args.skip)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
