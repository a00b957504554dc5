"""The job runtime: `fleming job <kind> --config <job.json>` lands in `run_job`.

Each kind lives in its own module (`fleming_dsl.runtime.jobs.<kind>`) exposing `run(cfg, ctx)` and
`inputs(cfg)` (the input paths to hash into the metadata record). Modules are imported on
demand, so torch/trl/vllm load only inside the jobs that need them.

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

from pydantic import ValidationError

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import load_job_config
from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.io import exit_on_sigterm, write_json
from fleming_dsl.runtime.jobs.context import JobContext


def _first_problem(err: ValidationError) -> str:
    """The first validation problem as `field 'a.b': message`, without the wrapper's prefix."""
    problem = err.errors()[0]
    # loc is ("config", <kind tag>, field...) for a known kind, ("config",) for a missing tag
    loc = [str(part) for part in problem["loc"][2:]]
    where = f"field '{'.'.join(loc)}': " if loc else ""
    return f"{where}{problem['msg']}"


def run_job(kind: str, config_path: str) -> None:
    """Run one job; raises JobError (one line for the user) on unusable config or input."""
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
    ctx = JobContext(config=cfg, config_sha256=hashlib.sha256(raw).hexdigest(),
                     inputs=tuple(module.inputs(cfg)))
    if ranks.distributed():
        ranks.configure_logging()
    try:
        with exit_on_sigterm():  # scancel / time limit: unwind so no temp output is left
            module.run(cfg, ctx)
            ranks.barrier()  # the record says the job is done: every rank must be
        if ranks.is_main():
            write_json(cfg.meta, ctx.record())
    finally:
        if ranks.distributed():  # each rank's own figure, in its own log lines
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            logging.getLogger("fleming.job").info("peak memory %.0f MB", peak_mb)
        ranks.shutdown()
