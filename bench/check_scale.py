"""How `fleming check` scales with the number of declarations (issue 11: checking is linear).

    python bench/check_scale.py [N ...] [--only KIND]    # default 10000 100000, every kind

For each kind of large spec (many rewards, prompts, evaluations, datasets, chained stages,
unknown options, undefined names) it writes specs/tiny.flm plus N more lines into a temporary
copy of the project and times the whole front end (`fleming check` in-process): wall and CPU
seconds, and the ratio per 10x more declarations (about 10 when checking is linear).
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

KINDS = {
    "rewards": lambda n: "".join(f'reward r{i} = regex("x{i}")\n' for i in range(n)),
    "prompts": lambda n: "".join(f'prompt p{i} = template("../prompts/question.j2")\n' for i in range(n)),
    "evaluations": lambda n: "".join(f"evaluate rl2 on [medqa_test] as e{i}\n" for i in range(n)),
    "datasets": lambda n: "".join(f'dataset d{i} = medqa("../data/eval/medqa_test.jsonl")\n'
                                  for i in range(n)),
    "chained stages": lambda n: "".join(
        f"stage s{i + 1} = sft({'base' if i == 0 else f's{i}'}, clean) {{ lr = 1e-5 }}\n" for i in range(n)),
    "unknown options": lambda n: "cluster {\n" + "".join(f"  opt{i} = 1\n" for i in range(n)) + "}\n",
    "undefined names": lambda n: "".join(f"evaluate nope{i} on [medqa_test] as e{i}\n" for i in range(n)),
}


def time_check(spec: Path) -> tuple[float, float, int]:
    from fleming_dsl.cli.main import main

    wall, cpu = time.perf_counter(), time.process_time()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = main(["check", str(spec)])
    return time.perf_counter() - wall, time.process_time() - cpu, code


def main(sizes: list[int], only: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("specs", "data", "prompts"):
            shutil.copytree(REPO / folder, root / folder)
        tiny = (root / "specs" / "tiny.flm").read_text(encoding="utf-8")
        import os

        os.chdir(root)
        print("| spec | " + " | ".join(f"N={n:,} wall s | CPU s" for n in sizes) + " | exit |")
        print("|---|" + "---|---|" * len(sizes) + "---|")
        for kind, extra in KINDS.items():
            if only is not None and only not in kind:
                continue
            cells, code = [], 0
            for n in sizes:
                spec = root / "specs" / "big.flm"
                spec.write_text(tiny + extra(n), encoding="utf-8")
                wall, cpu, code = time_check(spec)
                cells += [f"{wall:.2f}", f"{cpu:.2f}"]
            print(f"| {kind} | " + " | ".join(cells) + f" | {code} |", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    pick = args[args.index("--only") + 1] if "--only" in args else None
    numbers = [int(a) for a in args if a.isdigit()]
    main(numbers or [10_000, 100_000], pick)
