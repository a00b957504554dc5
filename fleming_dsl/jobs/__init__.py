"""The job runtime: `fleming job <kind> --config <job.json>` lands in `run_job`.

Each kind lives in its own module (`fleming_dsl.jobs.<kind>`) exposing `run(cfg, ctx)` and
`inputs(cfg)` (the input paths to hash into the metadata record). Modules are imported on
demand, so torch/trl/vllm load only inside the jobs that need them.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from fleming_dsl.jobconfig import load_job_config
from fleming_dsl.jobs.common import JobContext, JobError, exit_on_sigterm, write_json


def run_job(kind: str, config_path: str) -> None:
    """Run one job; raises JobError (one line for the user) on unusable config or input."""
    try:
        raw = Path(config_path).read_bytes()
    except OSError as err:
        raise JobError(f"{config_path}: cannot read job config ({err.strerror})") from None
    try:
        cfg = load_job_config(config_path)
    except ValueError as err:  # pydantic.ValidationError is a ValueError
        first = str(err).splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 2 else str(err)
        raise JobError(f"{config_path}: invalid job config: {detail}") from None
    if cfg.kind != kind:
        raise JobError(f"{config_path}: field 'kind' is {cfg.kind!r}, but the command asked for {kind!r}")
    module = importlib.import_module(f"fleming_dsl.jobs.{kind}")
    ctx = JobContext(config=cfg, config_sha256=hashlib.sha256(raw).hexdigest(),
                     inputs=tuple(module.inputs(cfg)))
    with exit_on_sigterm():  # scancel / time limit: unwind so no temp output is left
        module.run(cfg, ctx)
    write_json(cfg.meta, ctx.record())
