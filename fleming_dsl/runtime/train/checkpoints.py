"""Checkpoints are verified before a job resumes from one.

A job killed while saving leaves a torn `checkpoint-N` (a truncated `model.safetensors`), and
resuming from it fails on every retry. `usable_checkpoint` walks the checkpoints newest first,
keeps the first whose weight files read back whole, says which torn ones it passed over, and
returns None (train from the start) when none is usable.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path

log = logging.getLogger("fleming.checkpoints")
_NUMBERED = re.compile(r"^checkpoint-(\d+)$")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole, or None: its header must parse and its tensors must
    end exactly at the end of the file (cheap: reads the header, not the weights)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                return f"{path.name} is {size} bytes, shorter than a header"
            (length,) = struct.unpack("<Q", raw)
            if length > size - 8:
                return f"{path.name} header claims {length} bytes, the file has {size - 8}"
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as err:
        return f"{path.name} cannot be read ({err})"
    ends = [t["data_offsets"][1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t]
    if 8 + length + max(ends, default=0) != size:
        return f"{path.name} is truncated ({size} bytes, its header needs {8 + length + max(ends, default=0)})"
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None."""
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("*.bin")) and not any(folder.glob("global_step*")):
        return "no weight files"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return problem
    if not (folder / "trainer_state.json").is_file():
        return "no trainer_state.json"
    return None


def usable_checkpoint(directory: str | Path) -> str | None:
    """The newest whole `checkpoint-N` under `directory`, or None; torn ones are logged."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    numbered = sorted(((int(m.group(1)), p) for p in directory.iterdir()
                       if p.is_dir() and (m := _NUMBERED.match(p.name))), reverse=True)
    for _, folder in numbered:
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        log.warning("checkpoint %s is torn (%s): falling back to an earlier one", folder, problem)
    if numbered:
        log.warning("no usable checkpoint under %s: training from the start", directory)
    return None
