"""`fleming`: the command line. Exit codes: 0 ok, 1 spec or job error, 2 usage error.

Every command imports what it needs inside its handler, so `fleming check` loads neither torch
nor transformers. Commands that live in their own module (diff, status, explain) expose
`register(subparsers)`, which adds their parser and sets `handler=<fn(args) -> int>`; they are
imported only when invoked (for `--help` a placeholder parser carries their one-line help).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fleming_dsl.errors import FlemingError

# command -> (module with register(), one-line help shown in `fleming --help`)
EXTERNAL_COMMANDS = {
    "diff": ("fleming_dsl.cli.diff", "semantic diff of two specs and the jobs it invalidates"),
    "status": ("fleming_dsl.review.status", "outputs missing, up to date, or stale against the spec"),
    "explain": ("fleming_dsl.review.explain", "one job's resolved config and the spec lines it came from"),
    "lsp": ("fleming_dsl.lsp.server", "the language server for editors (stdio)"),
    "reference": ("fleming_dsl.cli.reference", "regenerate the option tables of the language reference"),
    "init": ("fleming_dsl.cli.init", "write a minimal project for your own graph and questions"),
}


class CommandError(FlemingError):
    """A located, one-line failure of a command (exit 1)."""


def _load(path: str):
    return _load_with_warnings(path)[0]


def _load_with_warnings(path: str):
    if not os.path.isfile(path) and not os.path.islink(path):  # a link is judged by the loader
        raise CommandError(f"{path}: no such spec file")
    from fleming_dsl.compiler import check_experiment

    return check_experiment(path)


class UsageError(FlemingError):
    """A bad command-line argument found after parsing (exit 2)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, printed as one line without a traceback."""
    return (FlemingError,)


# ---------------------------------------------------------------- handlers


_WARNINGS_SHOWN = 3  # external-data warnings of a real-scale spec would bury the result


def cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.specs:
        try:
            exp, warnings = _load_with_warnings(path)
        except _user_errors() as err:
            print(str(err), file=sys.stderr)
            failed += 1
            continue
        print_warnings(path, warnings, args.verbose)
        print(f"{path}: ok (experiment '{exp.name}', {len(exp.declarations())} declarations)")
    return 1 if failed else 0


def print_warnings(path: str, warnings, verbose: bool = False) -> None:
    """A spec's warnings on stderr, the first few unless `verbose`: every command that compiles
    shows them, so a benchmark that is also training data is seen on the way to a run."""
    shown = warnings if verbose else warnings[:_WARNINGS_SHOWN]
    for warning in shown:
        print(warning.render(None), file=sys.stderr)
    if len(shown) < len(warnings):
        print(f"{path}: {len(warnings) - len(shown)} more warnings (fleming check -v lists them)",
              file=sys.stderr)


def _compile(spec: str, out: str | None):
    from fleming_dsl.compiler import compile_spec

    if not os.path.isfile(spec) and not os.path.islink(spec):  # a link is judged by the loader
        raise CommandError(f"{spec}: no such spec file")
    if out is not None:
        from fleming_dsl.compiler import project_relative

        try:
            project_relative(out)
        except ValueError as err:
            raise UsageError(f"--out {err}") from None
    result = compile_spec(spec, out)
    print_warnings(spec, list(result.warnings))
    return result


def cmd_compile(args: argparse.Namespace) -> int:
    result = _compile(args.spec, args.out)
    changed = len(result.changed)
    print(f"{result.out_dir.as_posix()}: {len(result.plan.jobs)} jobs, "
          f"{changed} file{'s' if changed != 1 else ''} written")
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    import difflib

    from fleming_dsl.spec.fmt import format_source

    status = 0
    for path in args.specs:
        if not os.path.isfile(path) and not os.path.islink(path):  # a link is judged below
            raise CommandError(f"{path}: no such spec file")
        text = _read_spec_text(path)
        formatted = format_source(text, path)
        if args.stdout:  # the canonical form for tools (the git diff driver, docs/review.md)
            sys.stdout.write(formatted)
            continue
        if formatted == text:
            continue
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), formatted.splitlines(keepends=True),
                fromfile=path, tofile=f"{path} (formatted)"))
        if args.check or args.diff:
            print(f"{path}: would reformat", file=sys.stderr)
            status = 1
        else:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(formatted)
            print(f"{path}: reformatted")
    return status


def _read_spec_text(path: str) -> str:
    """A spec's text as the checker reads it (a BOM dropped), or a located SpecError; held to
    the rule every spec a command reads is held to (spec/boundary.py `spec_problem`)."""
    from fleming_dsl.errors import Diagnostic, SpecError
    from fleming_dsl.spec.boundary import file_span, spec_problem
    from fleming_dsl.spec.text import decode_source

    problem = spec_problem(Path(os.path.abspath(path)), Path.cwd(), "spec", path)
    if problem is not None:
        raise SpecError([Diagnostic(problem[0], file_span(path), hint=problem[1])])
    with open(path, "rb") as handle:
        text, bad = decode_source(handle.read(), path)
    if bad is not None:
        raise SpecError([bad])
    return text


def cmd_graph(args: argparse.Namespace) -> int:
    from fleming_dsl.compiler import default_out_dir
    from fleming_dsl.plan.dag import RENDERERS
    from fleming_dsl.plan.planner import plan

    exp = _load(args.spec)
    sys.stdout.write(RENDERERS[args.format](plan(exp, default_out_dir(exp))))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from fleming_dsl.ir import Experiment

    print(json.dumps(Experiment.model_json_schema(), indent=2, sort_keys=True))
    return 0


def snakemake_command(snakefile: str, profile: str, cores: str | None,
                      extra: Sequence[str]) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "-s", snakefile, "--profile", profile]
    if cores is not None:
        command += ["--cores", cores]
    return command + list(extra)


def job_targets(plan, extra: Sequence[str]) -> list[str]:
    """Snakemake arguments with each job name (a target, or after --until) replaced by that
    job's main output: the Snakefile has one rule per job kind, so jobs are targeted by file."""
    outputs = {job.name: job.main_output.path for job in plan.jobs}
    return [outputs.get(arg, arg) for arg in extra]


RUN_EPILOG = """\
on a cluster (Snakemake 9 has no `snakemake --cluster "sbatch ..."`):
  fleming run SPEC --profile slurm           # the slurm executor plugin: arrays, requeue,
                                             #   the efficiency report; the same as
  snakemake -s generated/EXP/Snakefile --profile generated/EXP/profiles/slurm
  fleming run SPEC --profile slurm-generic   # your sbatch line, through the cluster-generic
                                             #   executor; the same as
  snakemake -s generated/EXP/Snakefile --executor cluster-generic \\
      --cluster-generic-submit-cmd "sbatch ..."   (the line is in profiles/slurm-generic)
"""

# Snakemake 7's spellings of "submit each job with this command"; Snakemake 9 has none of them.
OLD_CLUSTER_OPTIONS = ("--cluster", "--cluster-config", "--cluster-status", "--cluster-cancel")


def old_cluster_option(extra: Sequence[str]) -> str | None:
    """The first Snakemake 7 cluster option among the arguments `fleming run` passes on."""
    for arg in extra:
        if arg.split("=", 1)[0] in OLD_CLUSTER_OPTIONS:
            return arg.split("=", 1)[0]
    return None


def _no_declaration_targets(result, extra: Sequence[str]) -> None:
    """A declaration's name where a job's belongs (`fleming run spec dx`) is a CommandError that
    names the jobs, not Snakemake's MissingRuleException."""
    jobs = [job.name for job in result.plan.jobs]
    for arg in extra:
        if arg in jobs or arg not in result.experiment.declarations():
            continue
        own = [j for j in jobs if j.endswith(f"_{arg}")]
        raise CommandError(f"'{arg}' is a declaration, not a job: name one of its jobs ("
                           f"{', '.join(own)})" if own else
                           f"'{arg}' is a declaration that runs no job of its own: name a job "
                           f"({', '.join(jobs)})")


_DRY_RUN = frozenset(("-n", "--dry-run", "--dryrun"))  # Snakemake's own listing is the answer


def cmd_run(args: argparse.Namespace) -> int:
    import subprocess

    old = old_cluster_option(args.snakemake_args)
    if old is not None:
        raise UsageError(
            f"{old} is Snakemake 7's option; Snakemake 9 submits through a profile: "
            f"fleming run {args.spec} --profile slurm (the slurm executor plugin), or --profile "
            "slurm-generic (an sbatch line through the cluster-generic executor; "
            "generated/<experiment>/README.md shows both)")

    from fleming_dsl.cli import progress

    result = _compile(args.spec, args.out)
    out = result.out_dir.as_posix()
    _no_declaration_targets(result, args.snakemake_args)
    targets = job_targets(result.plan, args.snakemake_args)
    command = snakemake_command(f"{out}/Snakefile", f"{out}/profiles/{args.profile}", args.cores,
                                targets)
    print("+ " + " ".join(command[1:]), file=sys.stderr, flush=True)
    # The rules call `fleming`: make sure the one beside this interpreter is found first.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if _DRY_RUN & set(args.snakemake_args):
        return 0 if subprocess.call(command, env=env) == 0 else 1
    raw_log = Path(result.experiment.workdir) / "logs" / "snakemake.log"
    board = progress.Board({job.log: job.name for job in result.plan.jobs}, progress.printer())
    code = progress.follow(command, env, raw_log, board)
    print(board.summary(raw_log.as_posix()), file=sys.stderr if code else sys.stdout)
    if code != 0:
        if not board.failed:  # Snakemake itself failed (a bad target, a lock): its own words
            tail = raw_log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
        return 1
    _print_report_location(result.plan)
    return 0


def _print_report_location(plan) -> None:
    """Where the run's report is, and its headline figures, so a newcomer knows what to open."""
    reports = [job.config.output for job in plan.jobs if job.config.kind == "report"]
    for folder in reports:
        summary_path = Path(folder) / "summary.json"
        if not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        print(f"report: {folder}/index.html (and {folder}/report.md)")
        for target, rate in sorted(summary.get("format_rate", {}).items()):
            accuracy = summary.get("accuracy_mean", {}).get(target)
            shown = "-" if accuracy is None else f"{accuracy:.3f}"
            print(f"  {target}: format rate {rate:.3f}, mean benchmark accuracy {shown}")


def cmd_cost(args: argparse.Namespace) -> int:
    from fleming_dsl.compiler import default_out_dir
    from fleming_dsl.plan.planner import plan
    from fleming_dsl.review import cost

    exp = _load(args.spec)
    for folder in args.runs:
        if not os.path.isdir(folder):
            raise CommandError(f"--from {folder}: no such folder")
    planned = plan(exp, default_out_dir(exp))
    estimates = cost.estimate(planned, cost.records_under(args.runs), own=cost.own_records(planned))
    sys.stdout.write(cost.render(estimates))
    return 0


def cmd_container(args: argparse.Namespace) -> int:
    from fleming_dsl.emit.container import LockError, definition

    try:
        lock = Path(args.constraints).read_text(encoding="utf-8")
    except OSError as err:
        raise CommandError(f"{args.constraints}: cannot read the lock ({err.strerror})") from None
    try:
        text = definition(lock, args.constraints)
    except LockError as err:
        raise CommandError(str(err)) from None
    if args.output is None:
        sys.stdout.write(text)
        return 0
    from fleming_dsl.emit.workflow import write_if_changed

    write_if_changed(Path(args.output), text)
    print(f"{args.output}: Apptainer definition, {text.count(chr(10))} lines "
          f"(apptainer build fleming.sif {args.output})")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    from fleming_dsl.errors import JobError
    from fleming_dsl.runtime.jobs import run_job
    from fleming_dsl.runtime.jobs.context import process_started

    try:  # timed from the process's start: `fleming cost` counts the imports a job pays for
        run_job(args.kind, args.config, started=process_started())
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- the parser


def _add_builtin(sub: argparse._SubParsersAction, invoked: str | None = None) -> None:
    p = sub.add_parser("check", help="parse and check specs; located errors",
                       description="Parse and check each spec; errors as file:line:col.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("-v", "--verbose", action="store_true",
                   help=f"list every warning (default: the first {_WARNINGS_SHOWN} per spec)")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("compile", help="write the Snakemake workflow of a spec",
                       description="Check SPEC and write its workflow (Snakefile, job configs, "
                                   "profiles, manifest); unchanged files are left untouched.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--out", metavar="DIR",
                   help="output folder inside the project (default: generated/<experiment>)")
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("fmt", help="rewrite specs in canonical layout (comments kept)",
                       description="Format specs in place; --check/--diff only report.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--check", action="store_true", help="exit 1 if a spec would change")
    p.add_argument("--diff", action="store_true", help="print the change as a unified diff")
    p.add_argument("--stdout", action="store_true",
                   help="print the canonical form instead of rewriting (git diff textconv)")
    p.set_defaults(handler=cmd_fmt)

    p = sub.add_parser("graph", help="the job DAG as DOT or Mermaid",
                       description="Print the job DAG of SPEC's workflow.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("schema", help="the IR's JSON Schema",
                       description="Print the JSON Schema of the experiment IR.")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("run", help="compile, then run the workflow with Snakemake",
                       description="Compile SPEC, then run Snakemake from the project root with "
                                   "the generated profile. Unknown options go to Snakemake "
                                   "(e.g. `fleming run specs/tiny.flm -n`); a job name among "
                                   "them (a target, or after --until) stands for that job's "
                                   "main output (`fleming run specs/tiny.flm filter_clean`).")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--cores", metavar="N", help="cores for local runs (default: all)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: generated/<experiment>)")
    p.epilog = RUN_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--profile", choices=("local", "slurm", "slurm-generic"), default="local",
                   help="which generated profile to use (default: local)")
    p.set_defaults(handler=cmd_run, snakemake_args=[])

    p = sub.add_parser("cost", help="each job's wall time and GPU-hours, from earlier runs",
                       description="Estimate each job's wall time and GPU-hours from the records "
                                   "(<output>.meta.json) earlier runs left: a job's own record "
                                   "from this spec's last run, else a recorded job of the same "
                                   "kind scaled by steps, model size and GPUs (naming the run; "
                                   "from another run only one on the same kind of hardware), "
                                   "else its declared time limit, saying why. Warns when an "
                                   "estimate exceeds the job's time limit.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--from", dest="runs", action="append", default=[], metavar="DIR",
                   help="also scale from the records under DIR (another run's workdir); repeatable")
    p.set_defaults(handler=cmd_cost)

    p = sub.add_parser("container", help="an Apptainer definition file pinned to constraints.txt",
                       description="Write an Apptainer definition file that installs fleming-dsl "
                                   "with every library at the version constraints.txt pins (the "
                                   "lock the goldens and figures were made with). Build it from "
                                   "the project root: `apptainer build fleming.sif fleming.def`, "
                                   "then set `container = \"fleming.sif\"` in the spec.")
    p.add_argument("--constraints", default="constraints.txt", metavar="FILE",
                   help="the lock to pin to (default: constraints.txt)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(handler=cmd_container)

    p = sub.add_parser("job", help="run one job (what the generated rules call)",
                       description="Run one job of a compiled workflow from its JSON config.")
    # The job kinds live with the job-config models (pydantic, slow to build): only `fleming job`
    # loads them, so `fleming check` starts fast.
    kinds = None
    if invoked == "job":
        from fleming_dsl.plan.jobconfig import JOB_KINDS as kinds
    p.add_argument("kind", choices=kinds, metavar="KIND",
                   help=", ".join(kinds) if kinds else "a job kind")
    p.add_argument("--config", required=True, metavar="FILE", help="the job's JSON config")
    p.set_defaults(handler=cmd_job)


def _add_external(sub: argparse._SubParsersAction, invoked: str | None) -> None:
    import importlib

    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        if name == invoked:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)


def build_parser(invoked: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleming", description="Compile .flm experiment specs to Snakemake workflows.")
    from fleming_dsl import __version__

    parser.add_argument("--version", action="version", version=f"fleming-dsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_builtin(sub, invoked)
    _add_external(sub, invoked)
    return parser


def _invoked(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


# Commands that read specs, write their answer and end the process. For a spec of 100,000
# declarations their millions of AST and IR objects are all alive until exit, and the cycle
# collector's passes over them (most of all the full collection at interpreter exit) cost as
# much as checking did: such a process neither collects nor scans them at exit.
_ONE_SHOT = frozenset(("check", "compile", "fmt", "graph", "schema", "diff", "explain", "status",
                       "reference", "cost"))


def main(argv: Sequence[str] | None = None) -> int:
    whole_process = argv is None  # the `fleming` command itself, not a call from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_invoked(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "run":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.snakemake_args = extra
    handler: Callable[[argparse.Namespace], int] = args.handler
    if whole_process and args.command in _ONE_SHOT:
        gc.disable()
        atexit.register(gc.freeze)  # what is alive at exit is freed without a last full scan
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except UsageError as err:
        parser.error(str(err))
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        # SpecError/PlanError already read `file:line:col: error: ...`
        print(f"error: {err}" if isinstance(err, CommandError) else str(err), file=sys.stderr)
        return 1
    return 2  # unreachable: parser.error exits


def _stdout_closed() -> int:
    """The reader of our output went away (`fleming schema | head`): stop quietly. Later
    writes, including the interpreter's own flush at exit, go to /dev/null instead of raising."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass
    finally:
        os.close(devnull)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
