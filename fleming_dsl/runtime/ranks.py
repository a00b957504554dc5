"""Which rank of a multi-process job this process is, and the few collectives the jobs need.

Launchers (torchrun, `accelerate launch`, the generated SLURM wrapper) export RANK, WORLD_SIZE
and LOCAL_RANK before the job starts, so every job knows its rank before torch is imported; a job
started directly is rank 0 of 1 and every helper here is then a no-op. Only global rank 0 (the
main process) writes outputs, metrics rows and the meta record; the others compute and wait.

torch is imported only when the job really has several ranks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("fleming.ranks")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Global rank 0: the one process that writes what the job leaves behind."""
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def _group() -> Any | None:
    """torch.distributed when a process group is up, else None (never imports torch itself)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def init(deepspeed: bool = False) -> None:
    """Join the job's process group (gloo on CPU, NCCL on GPUs) if there are several ranks.

    Started here rather than by the trainer so the ranks can talk before the first trainer exists
    (mining estimates pass rates before round 0); accelerate, the HF Trainer and DeepSpeed all
    reuse a group that is already initialised. With `deepspeed`, DeepSpeed's own communication
    layer is bound to the same group: on CPU the HF Trainer does not do it, and DeepSpeed then
    sizes ZeRO-3 for one rank.
    """
    if not distributed():
        return
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if _group() is None:
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend)
        node = os.environ.get("SLURMD_NODENAME")
        log.info("rank %d of %d joined the process group (%s)%s", rank(), world_size(), backend,
                 f" on node {node}" if node else "")
    if deepspeed:
        import importlib

        import deepspeed as ds

        # not `import deepspeed.comm.torch as ...`: deepspeed.comm's attribute `torch` is torch
        ds_torch = importlib.import_module("deepspeed.comm.torch")
        if backend == "gloo":
            # On CPU DeepSpeed JIT-compiles a shared-memory all-reduce (~1 min on 2 cores) into
            # ~/.cache/torch_extensions the first time; a build killed half-way leaves a lock that
            # hangs every later run. gloo does the same reductions without it.
            ds_torch.build_shm_op = lambda: None
        ds.init_distributed(dist_backend=backend)


def shutdown() -> None:
    """Leave the process group: without it a gloo/DeepSpeed job can abort at interpreter exit."""
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (a one-element list without a process group)."""
    dist = _group()
    if dist is None:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast(value: Any) -> Any:
    """The main process's `value`, on every rank."""
    dist = _group()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(values: list[Any]) -> list[Any]:
    """This rank's share of `values`: every world_size-th item starting at its rank."""
    return values[rank()::world_size()]


@contextlib.contextmanager
def main_first() -> Iterator[bool]:
    """Run the block on the main process; the others wait for it (yields whether this is main)."""
    try:
        yield is_main()
    finally:
        barrier()


class RankFilter(logging.Filter):
    """Adds `rank` ("[rank 1/2] ") to records, so the ranks' lines in one log tell apart."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = f"[rank {rank()}/{world_size()}] " if distributed() else ""
        return True


def configure_logging() -> None:
    """Job logs on stderr, one line per record, prefixed with the rank when there are several."""
    root = logging.getLogger("fleming")
    if any(getattr(h, "_fleming", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._fleming = True  # type: ignore[attr-defined]
    handler.addFilter(RankFilter())
    handler.setFormatter(logging.Formatter("%(rank)s%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
