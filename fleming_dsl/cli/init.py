"""`fleming init DIR`: a minimal project for one's own data, which checks and runs as written.

    DIR/specs/own.flm                 the spec: graph -> sample -> synthesize -> distill -> filter
                                      -> sft -> evaluate, on a 1-layer model, in minutes on a CPU
    DIR/prompts/question.j2, reason.j2  the synthesize and distill prompts (their variables named)
    DIR/data/graph.tsv                typed triples: head, head_type, relation, tail, tail_type
    DIR/data/questions/train.jsonl, test.jsonl  multiple-choice questions (the mcq format)

The files are the package's `templates/init/`; an existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from fleming_dsl.cli.main import CommandError
from fleming_dsl.resources import resource_dir


def scaffold_files() -> dict[str, Path]:
    """Each file of the scaffold, by its path inside the project."""
    root = resource_dir("templates") / "init"
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def write_scaffold(target: Path) -> list[str]:
    """Copy the scaffold into `target`; the paths written. CommandError if any already exists."""
    files = scaffold_files()
    taken = [name for name in files if (target / name).exists()]
    if taken:
        raise CommandError(f"{target}: {taken[0]} already exists; fleming init writes a new project "
                        "and overwrites nothing (name another folder)")
    for name, source in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / name)
    return list(files)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "init", help="write a minimal project for your own graph and questions",
        description="Write a minimal project into DIR (created if needed): a spec, its prompts "
                    "and tiny example data in the layout the spec reads. It checks and runs as "
                    "written; replace the example data with yours.")
    parser.add_argument("dir", metavar="DIR")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    written = write_scaffold(target)
    for name in written:
        print(f"wrote {(target / name).as_posix()}")
    print(f"next: cd {target} && fleming check specs/own.flm && fleming run specs/own.flm",
          file=sys.stderr)
    return 0
