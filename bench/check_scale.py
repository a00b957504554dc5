"""How `fleming check` scales with the number of declarations (issue 11: checking is linear).

    python bench/check_scale.py [N ...] [--only KIND]    # default 10000 100000, every kind
    python bench/check_scale.py --against DIR [N ...] [--only KIND]   # side by side

`--against DIR` times the same specs, in the same run, with the code of another checkout (e.g.
`git worktree add /tmp/before main`) and prints before, after and after/before for each, the
shipped 7B spec first (the median of REPEATS runs: it takes well under a second).

For each kind of large spec (many rewards, prompts, evaluations, datasets, models, samples,
chained stages and filters, syntheses, distillations, one stage swept over N values, an
extension of a large base or a chain of 100 bases, unknown options, undefined names) it
writes specs/tiny.flm plus N more lines into a temporary copy of the project and times
`fleming check` on it as a new process (what a user waits for): wall and CPU seconds per size,
the CPU ratio between the two largest sizes (about their size ratio when checking is linear),
and whether the largest stays under the target (TARGET_S wall; the issue's bound for 100,000
declarations).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TARGET_S = 10.0  # wall seconds for a 100,000-declaration spec

KINDS = {
    "rewards": lambda n: "".join(f'reward r{i} = regex("x{i}")\n' for i in range(n)),
    "prompts": lambda n: "".join(f'prompt p{i} = template("../prompts/question.j2")\n' for i in range(n)),
    "evaluations": lambda n: "".join(f"evaluate rl2 on [medqa_test] as e{i}\n" for i in range(n)),
    "datasets": lambda n: "".join(f'dataset d{i} = medqa("../data/eval/medqa_test.jsonl")\n'
                                  for i in range(n)),
    "models": lambda n: "".join(f'model m{i} = hf("org/model-{i}-7B")\n' for i in range(n)),
    "samples": lambda n: "".join(
        f'sample s{i} from medkg {{ path = disease -[disease_phenotype_positive]-> "effect/phenotype"'
        f"  count = {i + 1} }}\n" for i in range(n)),
    "chained stages": lambda n: "".join(
        f"stage s{i + 1} = sft({'base' if i == 0 else f's{i}'}, clean) {{ lr = 1e-5 }}\n" for i in range(n)),
    "chained filters": lambda n: "".join(
        f"filter f{i + 1} from {'clean' if i == 0 else f'f{i}'} {{ format  verify_label }}\n"
        for i in range(n)),
    "syntheses": lambda n: "".join(f"synthesize q{i} from rare_dx with teacher using ask\n"
                                   for i in range(n)),
    "distills": lambda n: "".join(f"distill c{i} from [questions] with teacher using reason\n"
                                  for i in range(n)),
    "sweep points": lambda n: ("stage swept = sft(base, clean) { sweep lr in ["
                               + ", ".join(f"{i + 1}e-6" for i in range(n)) + "] }\n"),
    "unknown options": lambda n: "cluster {\n" + "".join(f"  opt{i} = 1\n" for i in range(n)) + "}\n",
    "undefined names": lambda n: "".join(f"evaluate nope{i} on [medqa_test] as e{i}\n" for i in range(n)),
}
# a spec that extends a large base and replaces every other declaration of it
EXTENDS = "extends a base"
# a spec at the end of a chain of 100 bases, each extending the one before with N/100 rewards
CHAIN = "a chain of 100 bases"


def extends_files(root: Path, tiny: str, n: int) -> Path:
    base = root / "specs" / "big_base.flm"
    base.write_text(tiny + KINDS["rewards"](n), encoding="utf-8")
    spec = root / "specs" / "big.flm"
    spec.write_text('experiment "big" extends "big_base.flm" { seed = 1 }\n'
                    + "".join(f'reward r{i} = regex("y{i}")\n' for i in range(0, n, 2)),
                    encoding="utf-8")
    return spec


def chain_files(root: Path, tiny: str, n: int, depth: int = 100) -> Path:
    (root / "specs" / "chain0.flm").write_text(tiny, encoding="utf-8")
    for d in range(1, depth + 1):
        (root / "specs" / f"chain{d}.flm").write_text(
            f'experiment "chain{d}" extends "chain{d - 1}.flm" {{ seed = {d} }}\n'
            + "".join(f'reward c{d}_{i} = regex("y")\n' for i in range(n // depth)), encoding="utf-8")
    return root / "specs" / f"chain{depth}.flm"


REPEATS = 5  # runs of each small case in a side-by-side comparison; the median is shown


def write_spec(root: Path, tiny: str, kind: str, n: int) -> Path:
    """The spec of `kind` with n declarations (and any bases it extends) under `root`."""
    if kind == EXTENDS:
        return extends_files(root, tiny, n)
    if kind == CHAIN:
        return chain_files(root, tiny, n)
    spec = root / "specs" / "big.flm"
    spec.write_text(tiny + KINDS[kind](n), encoding="utf-8")
    return spec


def copy_project(root: Path) -> str:
    """The specs, data and prompts copied under `root`; the tiny spec's text."""
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, root / folder)
    return (root / "specs" / "tiny.flm").read_text(encoding="utf-8")


def time_check(spec: Path, code: Path = REPO) -> tuple[float, float, int]:
    """(wall s, CPU s, exit code) of `fleming check SPEC` as a new process, as a user runs it:
    interpreter start, imports and exit included (in process, exit alone was 5 s of the 14 s a
    100,000-stage spec took before the CLI stopped the collector scanning it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(code)  # which checkout's fleming_dsl runs
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "check", str(spec)],
                            cwd=spec.parent.parent, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1) or "Traceback" in result.stderr:
        raise SystemExit(f"fleming check {spec} crashed:\n{result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.returncode


def main(sizes: list[int], only: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny = copy_project(root)
        print("| spec | " + " | ".join(f"N={n:,} wall s | CPU s" for n in sizes)
              + " | CPU ratio | exit | " + f"N={sizes[-1]:,} under {TARGET_S:g} s wall |")
        print("|---|" + "---|---|" * len(sizes) + "---|---|---|")
        for kind in [*KINDS, EXTENDS, CHAIN]:
            if only is not None and only not in kind:
                continue
            cells, cpus, code, wall = [], [], 0, 0.0
            for n in sizes:
                wall, cpu, code = time_check(write_spec(root, tiny, kind, n))
                cells += [f"{wall:.2f}", f"{cpu:.2f}"]
                cpus.append(cpu)
            ratio = f"{cpus[-1] / cpus[-2]:.1f}" if len(cpus) > 1 and cpus[-2] > 0 else "-"
            verdict = "yes" if wall < TARGET_S else "NO"
            print(f"| {kind} | " + " | ".join(cells) + f" | {ratio} | {code} | {verdict} |", flush=True)


def _median(runs: list[tuple[float, float, int]]) -> tuple[float, float]:
    walls, cpus = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
    return walls[len(walls) // 2], cpus[len(cpus) // 2]


def compare(before: Path, sizes: list[int], only: str | None = None) -> None:
    """Before (the code at `before`) and after (this checkout), side by side, in one run: the
    7B spec, then each kind of large spec at each size. Runs alternate so that a slower moment
    of the machine costs both sides alike."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny = copy_project(root)
        print(f"before: {before}\nafter:  {REPO}\n")
        print("| spec | N | before wall s | after wall s | after/before wall | before CPU s | "
              "after CPU s | after/before CPU |")
        print("|---|---|---|---|---|---|---|---|")

        def row(name: str, n: str, spec: Path, repeats: int) -> None:
            runs: dict[Path, list] = {before: [], REPO: []}
            for _ in range(repeats):
                for code in (before, REPO):
                    runs[code].append(time_check(spec, code))
            (bw, bc), (aw, ac) = _median(runs[before]), _median(runs[REPO])
            print(f"| {name} | {n} | {bw:.3f} | {aw:.3f} | {aw / bw:.2f} | {bc:.3f} | {ac:.3f} | "
                  f"{ac / bc:.2f} |", flush=True)

        if only is None or only in "7B spec":
            row("specs/fleming_r1_7b.flm", "-", root / "specs" / "fleming_r1_7b.flm", REPEATS)
        for kind in [*KINDS, EXTENDS, CHAIN]:
            if only is not None and only not in kind:
                continue
            for n in sizes:
                row(kind, f"{n:,}", write_spec(root, tiny, kind, n), 1 if n > 10_000 else 3)


if __name__ == "__main__":
    args = sys.argv[1:]
    pick = args[args.index("--only") + 1] if "--only" in args else None
    against = Path(args[args.index("--against") + 1]).resolve() if "--against" in args else None
    numbers = [int(a) for a in args if a.isdigit()]
    if against is not None:
        compare(against, numbers or [10_000], pick)
    else:
        main(numbers or [10_000, 100_000], pick)
