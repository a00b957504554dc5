"""Cutting a job's input into shards, and the part files shards write and gathers read.

An item goes to shard `jump_hash(sha256(key), count)`, where the key is its id (an evaluation
prefixes the benchmark's name). It depends on nothing but the key and the count, so adding
items moves no item already there, and Lamping and Veach's jump consistent hash moves only
about 1/(N+1) of them when N shards become N+1. Every shard reads the whole input and keeps its
slice in input order, so the positions it writes let the gather restore the unsharded order.

A part file is JSONL, one `{"pos": <input position>, "out": <what the job made of the item>}`
per item of the slice, in increasing `pos`. The shard's metadata record holds, under
`counts.shard`, its index and count, how many input items there were in all (`total`), how many
it was given (`assigned`) and wrote (`records`), and the part's sha256: the gather checks all of
them before it merges (`runtime/jobs/gather.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.io import atomic_output

_JUMP_MULTIPLIER = 2862933555777941757
_MASK64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping & Veach 2014): a bucket in [0, buckets) for a 64-bit key."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def shard_of(key: str, count: int) -> int:
    """The shard (0-based) an item with this key belongs to, out of `count`."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return jump_hash(int.from_bytes(digest[:8], "big"), count)


def positions(keys: Sequence[str], shard: Any) -> list[int]:
    """Input positions of the items in `shard` (a `jobconfig.Shard`, or None for all of them)."""
    if shard is None:
        return list(range(len(keys)))
    return [pos for pos, key in enumerate(keys) if shard_of(key, shard.count) == shard.index]


def write_part(path: str | Path, records: Iterable[tuple[int, Any]]) -> tuple[int, str]:
    """Write (pos, out) records atomically; returns how many and the file's sha256."""
    digest = hashlib.sha256()
    count = 0
    with atomic_output(path) as temp, open(temp, "wb") as handle:
        for pos, out in records:
            line = (json.dumps({"pos": pos, "out": out}, ensure_ascii=False, sort_keys=True)
                    + "\n").encode("utf-8")
            handle.write(line)
            digest.update(line)
            count += 1
    return count, digest.hexdigest()


def shard_record(shard: Any, total: int, assigned: int, records: int, sha256: str) -> dict:
    """What a shard puts under `counts.shard` in its metadata record."""
    return {"index": shard.index, "count": shard.count, "of": shard.of, "total": total,
            "assigned": assigned, "records": records, "sha256": sha256}


def finish_shard(cfg: Any, ctx: Any, total: int, picked: list[int], outs: list[Any],
                 teacher_counts: dict[str, int]) -> None:
    """A shard job's last step: its part file, and its record under `ctx.counts["shard"]`."""
    if len(outs) != len(picked):
        raise JobError(f"{cfg.job}: {len(outs)} results for {len(picked)} items")
    records, sha256 = write_part(cfg.output, zip(picked, outs))
    ctx.counts.update(teacher_counts)
    ctx.counts["shard"] = shard_record(cfg.shard, total, len(picked), records, sha256)


def read_part(path: str | Path) -> list[tuple[int, Any]]:
    """The (pos, out) records of a part file; JobError naming the file and line if damaged."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
                records.append((int(row["pos"]), row["out"]))
            except (ValueError, KeyError, TypeError):
                raise JobError(f"{path}:{number}: not a shard record "
                               '({"pos": <int>, "out": ...})') from None
    return records
