"""`fleming diff OLD NEW` / `fleming diff --rev REV SPEC`: the semantic diff, then the job plan.

Loads both specs through the front end, diffs their IR (`diff.py`), plans both workflows and
compares the job configs and the content of the project files each job reads (`impact.py`).
`--rev` reads the old spec, and every file the repository tracked then (included specs,
prompts, data in git), from a git revision; files git does not track are the working tree's.
Exit 0: same experiment; 1: something changed; 2: error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fleming_dsl.errors import FlemingError
from fleming_dsl.ir import Experiment
from fleming_dsl.review import diff as semantic
from fleming_dsl.review import impact as plan_impact


class DiffError(FlemingError):
    """A spec or revision that cannot be diffed; the message is one line for the user."""


# ---------------------------------------------------------------- loading a spec at a revision


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["git failed"])[-1]
        raise DiffError(f"git {' '.join(args)}: {message}")
    return result.stdout


def _git_bytes(*args: str, cwd: Path) -> bytes:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if result.returncode != 0:
        raise DiffError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def _mirror_rest(source: Path, target: Path, outputs: frozenset[Path] = frozenset()) -> None:
    """Link every non-spec entry of the working tree into `target` where the revision left a gap
    (data git does not hold, model folders), so the revision's specs find them.

    `outputs` (paths under `source`) are left out: a spec's workdir must be a folder inside the
    copy, which a link to the working tree's `runs/tiny` is not. The folders above one are made
    rather than linked, so that what else they hold is still found."""
    for entry in source.iterdir():
        if entry.name == ".git" or entry.suffix == ".flm" or entry in outputs:
            continue
        there = target / entry.name
        above_output = any(entry in out.parents for out in outputs)
        if entry.is_dir() and (above_output or (there.is_dir() and not there.is_symlink())):
            there.mkdir(exist_ok=True)
            _mirror_rest(entry, there, outputs)
        elif not there.exists() and not there.is_symlink():
            there.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())


def _extract_revision(rev: str, top: Path, root: Path) -> None:
    """Every file git tracked at `rev`, written under `root`."""
    import io
    import tarfile

    data = _git_bytes("archive", "--format=tar", rev, cwd=top)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(root, filter="data")


@contextlib.contextmanager
def checkout_specs(rev: str, outputs: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temp copy of the repository as of `rev` (what git tracked then), with links to the files
    git does not track; yields the folder matching the current working directory inside it.
    `outputs` (relative to it: the spec's workdir) are not linked."""
    top = Path(_git("rev-parse", "--show-toplevel").strip())
    _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=top)
    here = Path.cwd().resolve().relative_to(top.resolve())
    with tempfile.TemporaryDirectory(prefix="fleming-diff-") as temp:
        root = Path(temp)
        _extract_revision(rev, top, root)
        _mirror_rest(top, root, frozenset(Path.cwd() / p for p in outputs))
        (root / here).mkdir(parents=True, exist_ok=True)
        from fleming_dsl.spec.boundary import allowing

        with allowing(top):  # the copy's templates are links back into the repository
            yield root / here


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def load_spec(path: str) -> Experiment:
    from fleming_dsl.compiler import SpecError, load_experiment

    if not Path(path).is_file():
        raise DiffError(f"{path}: no such spec file")
    try:
        return load_experiment(path)
    except SpecError as err:
        raise DiffError(str(err)) from None


def load_spec_at(rev: str, path: str) -> Experiment:
    """The experiment `path` described at git revision `rev` (paths as seen from here)."""
    with checkout_specs(rev) as here, _working_directory(here):
        if not Path(path).is_file():
            raise DiffError(f"{path}: not in revision {rev}")
        return load_spec(path)


def compare_at(rev: str, path: str) -> tuple[semantic.ExperimentDiff, plan_impact.Impact]:
    """`path` at git revision `rev` against the working tree: specs and the files they read."""
    new, here = load_spec(path), Path.cwd()
    with checkout_specs(rev, outputs=(new.workdir,)) as there, _working_directory(there):
        if not Path(path).is_file():
            raise DiffError(f"{path}: not in revision {rev}")
        return compare(load_spec(path), new, old_root=there, new_root=here)


# ---------------------------------------------------------------- the report


def compare(old: Experiment, new: Experiment, old_root: Path | None = None,
            new_root: Path | None = None) -> tuple[semantic.ExperimentDiff, plan_impact.Impact]:
    """The semantic diff and the jobs that re-run; project files are read under `old_root` and
    `new_root` (both the working directory when not given)."""
    from fleming_dsl.errors import PlanError
    from fleming_dsl.plan.planner import plan

    out_dir = f"generated/{new.name}"  # one folder for both, so paths in configs line up
    try:
        before, after = plan(old, out_dir), plan(new, out_dir)
    except PlanError as err:
        raise DiffError(str(err)) from None
    old_jobs, new_jobs = plan_impact.jobs_of(before), plan_impact.jobs_of(after)
    here = Path.cwd()
    touched = plan_impact.inputs_changed(new_jobs, old_root or here, new_root or here)
    return (semantic.diff_experiments(old, new),
            plan_impact.plan_impact(old_jobs, new_jobs, touched))


def render(diff: semantic.ExperimentDiff, impact: plan_impact.Impact, form: str,
           old_label: str, new_label: str) -> str:
    if form == "json":
        return json.dumps({"old": old_label, "new": new_label, "changed": diff.changed or bool(impact.jobs),
                           **semantic.render_json(diff), "plan": plan_impact.render_json(impact)},
                          indent=2) + "\n"
    if form == "markdown":
        return (f"### fleming diff `{old_label}` -> `{new_label}`\n\n"
                + semantic.render_markdown(diff) + "\n" + plan_impact.render_markdown(impact))
    return semantic.render_text(diff) + "\n" + plan_impact.render_text(impact)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "diff", help="semantic diff of two specs and the jobs it invalidates",
        description="Compare two specs by meaning (layout, comments and order do not count), "
                    "then list the jobs that would re-run and their GPU-hours. "
                    "Exit 0: no change; 1: changed; 2: error.")
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="OLD NEW, or one SPEC with --rev")
    parser.add_argument("--rev", help="compare SPEC as of this git revision with the working tree")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", dest="form", action="store_const", const="json", help="print JSON")
    form.add_argument("--markdown", dest="form", action="store_const", const="markdown",
                      help="print markdown for a pull-request comment")
    parser.set_defaults(handler=main, form="text")
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        if args.rev is not None:
            if len(args.specs) != 1:
                raise DiffError("with --rev, give exactly one SPEC")
            spec = args.specs[0]
            labels = (f"{spec}@{args.rev}", spec)
            diff, impact = compare_at(args.rev, spec)
        else:
            if len(args.specs) != 2:
                raise DiffError("give OLD and NEW specs, or one SPEC with --rev REV")
            labels = (args.specs[0], args.specs[1])
            diff, impact = compare(load_spec(args.specs[0]), load_spec(args.specs[1]))
    except DiffError as err:
        print(err, file=sys.stderr)
        return 2
    sys.stdout.write(render(diff, impact, args.form, *labels))
    return 1 if diff.changed or impact.jobs else 0
