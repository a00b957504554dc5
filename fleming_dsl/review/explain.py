"""`fleming explain SPEC JOB`: one job's resolved config and the spec lines it came from.

A reviewer who sees a number in `generated/<exp>/jobs/<job>.json` can trace it back: the job's
own declaration is printed with file:line on every line, then every declaration it names
(its model, data, rewards, benchmarks), and each config option is marked with the spec line
that sets it where one does.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleming_dsl.errors import FlemingError
from fleming_dsl.ir import Decl, Experiment, Span
from fleming_dsl.lower.names import SPEC_WORDS
from fleming_dsl.review.status import strings_in


class ExplainError(FlemingError):
    """An unknown job or unreadable spec; one line for the user."""


@dataclass(frozen=True)
class SpecLine:
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def span_lines(span: Span, root: Path = Path(".")) -> list[SpecLine]:
    """The spec text a span covers, line by line (whole lines, as a reviewer reads them)."""
    try:
        text = (root / span.file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    last = max(span.end_line, span.line)
    return [SpecLine(span.file, n, text[n - 1]) for n in range(span.line, min(last, len(text)) + 1)]


def referenced(decl: Decl, exp: Experiment) -> list[Decl]:
    """The declarations `decl` names (its init model, data, teacher, rewards, benchmarks...)."""
    decls = exp.declarations()
    names = dict.fromkeys(s for s in strings_in(decl.model_dump(mode="json", exclude={"name", "span"}))
                          if s in decls and s != decl.name)
    return [decls[name] for name in names]


def source_decl(exp: Experiment, source: str) -> Decl | None:
    """The declaration at `file:line` (the planner's source reference of a job)."""
    for decl in exp.declarations().values():
        if decl.span is not None and f"{decl.span.file}:{decl.span.line}" == source:
            return decl
    return None


def option_origins(config: dict[str, Any], lines: list[SpecLine]) -> dict[str, SpecLine]:
    """For each config option (`flat_config`), the first spec line that sets it (`key =` / `key(`)."""
    origins = {}
    for key in config:
        leaf = key.rsplit(".", 1)[-1]  # training.batch_size: the stage option `batch`
        word = SPEC_WORDS.get(leaf, leaf)
        pattern = re.compile(rf"(?<![\w.]){re.escape(word)}\s*(=|\()")
        for line in lines:
            if pattern.search(line.text.split("#", 1)[0]):
                origins[key] = line
                break
    return origins


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A job config's fields, with the stage options of its nested `training` model one per row
    (`training.lr`), as a reviewer looks them up."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "training" and isinstance(value, dict):
            out.update({f"training.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def explain_job(exp: Experiment, job_name: str, out_dir: str | None = None) -> str:
    """The text `fleming explain` prints for one job of the experiment's workflow."""
    from fleming_dsl.errors import PlanError
    from fleming_dsl.plan.planner import plan

    out_dir = out_dir or f"generated/{exp.name}"
    try:
        workflow = plan(exp, out_dir)
    except PlanError as err:
        raise ExplainError(str(err)) from None
    names = [job.name for job in workflow.jobs]
    if job_name not in names:
        # a declaration name: its job, or one job per sweep point of a swept stage
        by_decl = [job.name for job in workflow.jobs
                   if _declared_as(source_decl(exp, job.source), job_name)]
        if not by_decl:
            close = difflib.get_close_matches(job_name, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ExplainError(f"no job '{job_name}' in experiment '{exp.name}'{hint} "
                               f"(jobs: {', '.join(names)})")
        return "\n".join(_explain_one(exp, workflow, name) for name in by_decl)
    return _explain_one(exp, workflow, job_name)


def _declared_as(decl: Decl | None, name: str) -> bool:
    """Whether `decl` is the declaration `name`, or one sweep point of it (rl1 -> rl1_beta_0p0)."""
    if decl is None:
        return False
    return decl.name == name or (decl.name.startswith(name + "_") and bool(getattr(decl, "sweep", None)))


def _explain_one(exp: Experiment, workflow, job_name: str) -> str:
    job = workflow.job(job_name)
    config = flat_config(job.config.model_dump(mode="json"))
    decl = source_decl(exp, job.source)
    own = span_lines(decl.span) if decl is not None and decl.span is not None else []
    origins = option_origins(config, own)

    out = [f"job {job.name} ({job.kind}) from {job.source}", f"config: {workflow.config_path(job)}", ""]
    width = max(len(k) for k in config)
    for key, value in config.items():
        shown = json.dumps(value, sort_keys=True)
        where = f"  <- {origins[key].file}:{origins[key].line}" if key in origins else ""
        out.append(f"  {key:<{width}} = {shown}{where}")
    if own:
        out += ["", "spec:"] + [f"  {line}" for line in own]
    others = referenced(decl, exp) if decl is not None else []
    if others:
        out += ["", "declarations it uses:"]
        for other in others:
            lines = span_lines(other.span) if other.span is not None else []
            out += [f"  {line}" for line in lines] or [f"  {other.kind} {other.name}"]  # type: ignore[attr-defined]
    return "\n".join(out) + "\n"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "explain", help="one job's resolved config and the spec lines it came from",
        description="Print the resolved configuration of one job of SPEC's workflow and the spec "
                    "lines (file:line) each part of it came from.")
    parser.add_argument("spec", help="the .flm spec")
    parser.add_argument("job", help="a job name (e.g. grpo_rl1) or the declaration it comes from "
                                    "(rl1; a swept stage shows the job of every sweep point)")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from fleming_dsl.compiler import SpecError, load_experiment

    try:
        if not Path(args.spec).is_file():
            raise ExplainError(f"{args.spec}: no such spec file")
        exp = load_experiment(args.spec)
        sys.stdout.write(explain_job(exp, args.job))
    except SpecError as err:
        print(err, file=sys.stderr)
        return 1
    except ExplainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
