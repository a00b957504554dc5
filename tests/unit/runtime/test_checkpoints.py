"""A torn checkpoint (truncated model.safetensors) is never resumed from (issue 11): the job falls
back to the previous checkpoint, or trains from the start, and says so."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from fleming_dsl.runtime.train.checkpoints import safetensors_problem, usable_checkpoint


def _safetensors(path: Path, payload: bytes = b"\0" * 16) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, len(payload)]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    _safetensors(folder / "model.safetensors")
    (folder / "trainer_state.json").write_text("{}")
    return folder


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path, caplog) -> None:
    _checkpoint(tmp_path, 2)
    torn = _checkpoint(tmp_path, 4)
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])
    with caplog.at_level(logging.WARNING, logger="fleming.checkpoints"):
        assert usable_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert f"checkpoint {torn} is torn (model.safetensors is truncated" in caplog.text


def test_no_whole_checkpoint_means_training_from_the_start(tmp_path: Path, caplog) -> None:
    (_checkpoint(tmp_path, 2) / "model.safetensors").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="fleming.checkpoints"):
        assert usable_checkpoint(tmp_path) is None
    assert "no usable checkpoint" in caplog.text and "training from the start" in caplog.text
    assert usable_checkpoint(tmp_path / "absent") is None


def test_whole_file_passes(tmp_path: Path) -> None:
    _safetensors(tmp_path / "m.safetensors")
    assert safetensors_problem(tmp_path / "m.safetensors") is None
