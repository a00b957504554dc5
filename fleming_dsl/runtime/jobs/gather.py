"""gather: the parts of a sharded job -> the outputs the unsharded job would have written.

A shard job (a synthesize, distill, filter or eval config with `shard` set) takes the items a
stable hash assigns it and writes a part file of `{"pos", "out"}` records (see
`runtime/data/shards.py`). Before merging, the gather checks that the parts make the whole job:
each shard's metadata record exists, names that shard (index, count, the gather it belongs
to), agrees with the others on the input (its total and the sha256 of every input it read,
which must also be the inputs as they are now), and describes its part exactly (the part's
sha256, and as many records as items assigned); the parts' positions must cover the input
once. Files that merely exist are not enough: a shard killed half-way writes no record.

It then puts the records in input order and hands them to the task's own `finish`, the code
that ends the unsharded job, so the data is byte-identical however the job was cut. Its
metadata record is the unsharded job's too (its kind, and the sha256 of the task's config),
with the shards' teacher counts summed and a `shards` summary added.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.hashing import sha256_path
from fleming_dsl.plan.jobconfig import GatherJob, ShardPart, config_text
from fleming_dsl.runtime.data.shards import read_part
from fleming_dsl.runtime.jobs.context import JobContext

_TEACHER_COUNTS = ("teacher_calls", "cache_hits")


def _task_module(cfg: GatherJob) -> Any:
    return importlib.import_module(f"fleming_dsl.runtime.jobs.{cfg.task.kind}")


def _rerun(part: ShardPart) -> str:
    return f"run {part.job} again (snakemake re-runs it once its outputs are removed)"


def read_meta(cfg: GatherJob, index: int, part: ShardPart) -> dict[str, Any]:
    """The shard's metadata record, checked to be this shard's and finished."""
    where = f"shard {index + 1} of {len(cfg.parts)} ({part.job})"
    try:
        meta = json.loads(Path(part.meta).read_text(encoding="utf-8"))
    except OSError:
        raise JobError(f"{part.meta}: {where} has no metadata record, so it did not finish; "
                       f"{_rerun(part)}") from None
    except ValueError:
        raise JobError(f"{part.meta}: {where}: metadata record is not JSON; {_rerun(part)}") from None
    shard = (meta.get("counts") or {}).get("shard") if isinstance(meta, dict) else None
    if meta.get("job") != part.job or not isinstance(shard, dict):
        raise JobError(f"{part.meta}: not the record of {where}; {_rerun(part)}")
    expected = {"index": index, "count": len(cfg.parts), "of": cfg.job}
    for key, value in expected.items():
        if shard.get(key) != value:
            raise JobError(f"{part.meta}: {where} was cut as {key} = {shard.get(key)!r}, "
                           f"expected {value!r}; {_rerun(part)}")
    return meta


def read_records(index: int, part: ShardPart, shard: dict[str, Any],
                 count: int) -> list[tuple[int, Any]]:
    where = f"shard {index + 1} of {count} ({part.job})"
    if not Path(part.output).is_file():
        raise JobError(f"{part.output}: the part of {where} is missing; {_rerun(part)}")
    if sha256_path(part.output) != shard.get("sha256"):
        raise JobError(f"{part.output}: the part of {where} is not the file its shard wrote "
                       f"(sha256 differs from its metadata record); {_rerun(part)}")
    records = read_part(part.output)
    if not len(records) == shard.get("records") == shard.get("assigned"):
        raise JobError(f"{part.output}: {where} wrote {len(records)} records for "
                       f"{shard.get('assigned')} items; {_rerun(part)}")
    return records


def check_inputs(cfg: GatherJob, metas: list[dict[str, Any]]) -> None:
    """Every shard read the same input files, and they are the files there are now."""
    now = {path: sha256_path(path) for path in cfg.task.inputs if Path(path).exists()}
    for part, meta in zip(cfg.parts, metas):
        for path, digest in sorted((meta.get("inputs") or {}).items()):
            if path in now and now[path] != digest:
                raise JobError(f"{path} changed after {part.job} read it; {_rerun(part)}")


def merge(cfg: GatherJob, metas: list[dict[str, Any]]) -> tuple[int, list[Any]]:
    """(input size, one record per input position in order), after checking coverage."""
    totals = {meta["counts"]["shard"].get("total") for meta in metas}
    if len(totals) != 1 or not isinstance(next(iter(totals)), int):
        raise JobError(f"{cfg.job}: the shards read inputs of different sizes "
                       f"({sorted(map(str, totals))}); run them again")
    total = totals.pop()
    merged: list[Any] = [None] * total
    seen = [False] * total
    for index, (part, meta) in enumerate(zip(cfg.parts, metas)):
        for pos, out in read_records(index, part, meta["counts"]["shard"], len(cfg.parts)):
            if not 0 <= pos < total or seen[pos]:
                raise JobError(f"{part.output}: item position {pos} is out of range or "
                               f"written by two shards; {_rerun(part)}")
            seen[pos] = True
            merged[pos] = out
    missing = seen.count(False)
    if missing:
        raise JobError(f"{cfg.job}: {missing} of {total} items are in no shard's part; "
                       "run the shards again")
    return total, merged


def teacher_counts(metas: list[dict[str, Any]]) -> dict[str, int]:
    sums = {key: 0 for key in _TEACHER_COUNTS}
    for meta in metas:
        for key in _TEACHER_COUNTS:
            sums[key] += int(meta["counts"].get(key, 0))
    return sums if any(key in meta["counts"] for meta in metas for key in _TEACHER_COUNTS) else {}


def run(cfg: GatherJob, ctx: JobContext) -> None:
    with ctx.timed("check"):
        metas = [read_meta(cfg, index, part) for index, part in enumerate(cfg.parts)]
        check_inputs(cfg, metas)
        total, merged = merge(cfg, metas)
    # The record is the unsharded job's: same kind, same config hash (what `fleming status`
    # and the report compare), plus how it was cut.
    ctx.kind = cfg.task.kind
    ctx.config_sha256 = hashlib.sha256(config_text(cfg.task).encode("utf-8")).hexdigest()
    with ctx.timed("finish"):
        _task_module(cfg).finish(cfg.task, ctx, total, merged, teacher_counts(metas))
    ctx.counts["shards"] = {
        "count": len(cfg.parts),
        "items": [meta["counts"]["shard"]["assigned"] for meta in metas],
        "total_s": [meta.get("timings", {}).get("total_s") for meta in metas],
    }
