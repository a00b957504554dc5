"""The job runtime: `fleming job <kind> --config <job.json>` lands in `run_job`.

Each kind lives in its own module (`fleming_dsl.runtime.jobs.<kind>`) exposing `run(cfg, ctx)`.
Modules are imported on demand, so torch/trl/vllm load only inside the jobs that need them. What
a job reads is its config's `inputs`, the planner's list, which the workflow also declares: the
metadata record hashes exactly those (a gather records its task's, as the unsharded job would).

Under a launcher with several ranks every rank runs the same job; only the main process writes
the meta record (after the others have finished their part), and every rank leaves the process
group on the way out.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import resource
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import load_job_config
from fleming_dsl.runtime import preemption, ranks
from fleming_dsl.runtime.io import exit_on_sigterm, write_json
from fleming_dsl.runtime.jobs.context import JobContext


def _first_problem(err: ValidationError) -> str:
    """The first validation problem as `field 'a.b': message`, without the wrapper's prefix."""
    problem = err.errors()[0]
    # loc is ("config", <kind tag>, field...) for a known kind, ("config",) for a missing tag
    loc = [str(part) for part in problem["loc"][2:]]
    where = f"field '{'.'.join(loc)}': " if loc else ""
    return f"{where}{problem['msg']}"


# inputs with these suffixes are files (a model input is a folder)
_FILE_SUFFIXES = (".csv", ".tsv", ".sif", ".gz", ".jsonl", ".json", ".npz", ".parquet", ".j2", ".txt")


def _field_of(cfg: Any, path: str) -> str:
    """The top-level config field that names `path` (for 'field ...' in messages), other than the
    `inputs` list, which names every input."""
    def holds(value: Any) -> bool:
        if isinstance(value, dict):
            return any(holds(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return any(holds(v) for v in value)
        return value == path

    return next((key for key, value in cfg.model_dump().items() if key != "inputs" and holds(value)),
                "inputs")


def check_inputs(cfg: Any, paths: tuple[str, ...], empty_ok: bool = False) -> None:
    """Before any work: a folder where a file is expected, or an empty (0-byte) input file, is a
    JobError naming it (empty inputs would make an empty output that looks complete). A job whose
    module sets `EMPTY_INPUTS_OK` (the report: a stage stopped at step 0 logs no rows) skips the
    second check."""
    for path in paths:
        where = Path(path)
        if where.is_dir() and where.suffix in _FILE_SUFFIXES:
            raise JobError(f"{path}: is a folder, expected a file (field '{_field_of(cfg, path)}')")
        if not empty_ok and where.is_file() and where.stat().st_size == 0:
            raise JobError(f"{path}: is empty (0 bytes) (field '{_field_of(cfg, path)}')")


def undecodable(paths: tuple[str, ...]) -> str | None:
    """'<file>:<line>: not UTF-8 text (...)' for the first input file that is not UTF-8."""
    for path in paths:
        if not Path(path).is_file() or Path(path).suffix in (".npz", ".parquet", ".gz"):
            continue
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    return f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start} of the line)"
    return None


def recorded_inputs(cfg: Any) -> tuple[str, ...]:
    """The inputs a job hashes into its record: the planner's list in its config (a gather's,
    that of the unsharded job it stands for: its parts are temporary)."""
    task = getattr(cfg, "task", None)
    return tuple((task if task is not None else cfg).inputs)


def run_job(kind: str, config_path: str, started: float | None = None) -> None:
    """Run one job; raises JobError (one line for the user) on unusable config or input.
    `started` (`time.monotonic()`) is when the job's process began, where it began for this job
    (`fleming job`): its timings then count the start-up too."""
    try:
        raw = Path(config_path).read_bytes()
    except OSError as err:
        raise JobError(f"{config_path}: cannot read job config ({err.strerror})") from None
    try:
        cfg = load_job_config(config_path)
    except ValidationError as err:
        raise JobError(f"{config_path}: invalid job config: {_first_problem(err)}") from None
    except ValueError as err:  # not JSON at all
        raise JobError(f"{config_path}: invalid job config: {str(err).splitlines()[0]}") from None
    if cfg.kind != kind:
        raise JobError(f"{config_path}: field 'kind' is {cfg.kind!r}, but the command asked for {kind!r}")
    module = importlib.import_module(f"fleming_dsl.runtime.jobs.{kind}")
    paths = recorded_inputs(cfg)
    check_inputs(cfg, paths, empty_ok=getattr(module, "EMPTY_INPUTS_OK", False))
    ctx = JobContext(config=cfg, config_sha256=hashlib.sha256(raw).hexdigest(), inputs=paths,
                     **({"started": started} if started is not None else {}))
    if ranks.distributed():
        ranks.configure_logging()
    try:
        # scancel / time limit: unwind so no temp output is left; the signal before the limit:
        # checkpoint, then requeue (runtime/preemption.py)
        with exit_on_sigterm(), preemption.on_signal():
            module.run(cfg, ctx)
            ranks.barrier()  # the record says the job is done: every rank must be
        if ranks.is_main():
            write_json(cfg.meta, ctx.record())
    except preemption.Preempted as err:
        if not ranks.is_main():
            raise
        raise preemption.Preempted(f"{cfg.job}: {err}; {preemption.requeue()}") from None
    except UnicodeDecodeError as err:  # a reader met bytes that are not UTF-8: say where
        raise JobError(undecodable(paths) or f"{cfg.job}: an input is not UTF-8 text ({err.reason})") from None
    finally:
        if ranks.distributed():  # each rank's own figure, in its own log lines
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            logging.getLogger("fleming.job").info("peak memory %.0f MB", peak_mb)
        ranks.shutdown()
