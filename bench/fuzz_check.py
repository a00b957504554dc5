"""A fresh fuzz run of `fleming check` (issue 28's "done when"): N seeded cases over the shipped
specs, with seeds the suite's fuzz test does not use, and a table of what went wrong.

    PYTHONPATH=$PWD python bench/fuzz_check.py [--cases 2000] [--seed fresh-1] [-v]

Prints, per spec and in all: cases, rejected, tracebacks, unlocated errors, leaks, cases over
5 s, and the slowest case; with -v each failing case (spec, case number, what). The cases are
tests/fuzz_check.py's, so a failure reproduces there with the same seed string.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fuzz_check import copy_project, run_case  # noqa: E402

SLOW_SECONDS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", default="fresh-1", help="seed prefix (the suite uses the spec name)")
    parser.add_argument("-v", action="store_true", help="list every failing case")
    args = parser.parse_args()
    specs = sorted(p.name for p in (REPO / "specs").glob("*.flm"))
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_project(REPO, Path(tmp))
        os.chdir(root)
        os.environ["FLEMING_CACHE_DIR"] = str(root / ".cache")
        rows, failures = [], []
        for i, name in enumerate(specs):
            original = (root / "specs" / name).read_text(encoding="utf-8")
            n = args.cases // len(specs) + (i < args.cases % len(specs))
            tally = {"cases": n, "rejected": 0, "traceback": 0, "unlocated": 0, "leak": 0, "exit": 0,
                     "over 5 s": 0, "slowest s": 0.0}
            for case in range(n):
                outcome = run_case(root, name, original, random.Random(f"{args.seed}:{name}:{case}"))
                tally["rejected"] += outcome.code == 1
                tally["slowest s"] = max(tally["slowest s"], outcome.seconds)
                if outcome.seconds > SLOW_SECONDS:
                    tally["over 5 s"] += 1
                    failures.append((name, case, f"took {outcome.seconds:.1f} s"))
                if outcome.problem is not None:
                    tally[outcome.problem.split(":")[0].split(" ")[0]] += 1
                    failures.append((name, case, outcome.problem))
            rows.append((name, tally))
    columns = list(rows[0][1])
    total = {c: sum(t[c] for _, t in rows) if c != "slowest s" else max(t[c] for _, t in rows)
             for c in columns}
    print("| spec | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, tally in [*rows, ("all", total)]:
        print(f"| {name} | " + " | ".join(f"{tally[c]:.2f}" if c == "slowest s" else str(tally[c])
                                           for c in columns) + " |")
    if args.v:
        for name, case, what in failures:
            print(f"{name} case {case} (seed '{args.seed}:{name}:{case}'): {what}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
