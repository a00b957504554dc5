"""DAPO dynamic sampling on the tiny model: groups whose rewards all agree never reach the loss."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from training_fixtures import synthetic_items, tiny_model, train_config, write_config, write_items  # noqa: F401

from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.train import dynamic_sampling

# a reward that varies between rollouts of an untrained model: does the completion contain an "e"?
VARYING = [{"name": "has_e", "function": "regex", "weight": 1.0, "options": {"pattern": ".*e.*"}}]


def test_varying_groups() -> None:
    # NaN marks an unscorable rollout: a group with one scorable rollout has no spread
    totals = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5 + 1e-8, float("nan"), 0.2, 0.3, float("nan")])
    assert varying(totals) == [False, True, False, False, False]
    assert varying(torch.tensor([0.2, float("nan"), 0.0, 0.0, 0.0, 0.0])) == [False, False, False]


def varying(totals: torch.Tensor) -> list[bool]:
    return dynamic_sampling.varying_groups(totals, 2).tolist()


def test_varying_groups_of_three() -> None:
    assert dynamic_sampling.varying_groups(torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0, 2.0]), 3).tolist() == [True, False]


def test_merge_rows_pads_prompts_left_and_completions_right() -> None:
    a = {"prompt_ids": torch.tensor([[5, 6], [5, 6]]), "prompt_mask": torch.ones(2, 2, dtype=torch.long),
         "completion_ids": torch.tensor([[1], [2]]), "completion_mask": torch.ones(2, 1, dtype=torch.long),
         "advantages": torch.tensor([0.5, -0.5]), "num_items_in_batch": torch.tensor(2)}
    b = {"prompt_ids": torch.tensor([[7], [7]]), "prompt_mask": torch.ones(2, 1, dtype=torch.long),
         "completion_ids": torch.tensor([[3, 4], [3, 9]]), "completion_mask": torch.ones(2, 2, dtype=torch.long),
         "advantages": torch.tensor([1.0, -1.0]), "num_items_in_batch": torch.tensor(4)}
    out = dynamic_sampling.merge_rows([(a, slice(0, 2)), (b, slice(0, 2))], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[5, 6], [5, 6], [0, 7], [0, 7]]
    assert out["prompt_mask"].tolist() == [[1, 1], [1, 1], [0, 1], [0, 1]]
    assert out["completion_ids"].tolist() == [[1, 0], [2, 0], [3, 4], [3, 9]]
    assert out["completion_mask"].tolist() == [[1, 0], [1, 0], [1, 1], [1, 1]]
    assert out["advantages"].tolist() == [0.5, -0.5, 1.0, -1.0]


def test_merge_rows_refuses_fields_it_does_not_know() -> None:
    from fleming_dsl.errors import JobError

    with pytest.raises(JobError, match=r"cannot merge rollout fields \['pixel_values'\]"):
        dynamic_sampling.merge_rows([({"pixel_values": torch.zeros(1, 1), "advantages": torch.zeros(1)},
                                      slice(0, 1))], pad_token_id=0)


def _run(tmp_path: Path, model: str, monkeypatch, **overrides) -> tuple[list[dict], list[dict], dict]:
    """Run the grpo job; capture every batch dynamic sampling hands to TRL (groups still in order)."""
    batches: list[dict] = []
    base = dynamic_sampling.trainer_class()

    class Capturing(base):  # type: ignore[misc, valid-type]
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if self.model.training:
                texts = self.processing_class.batch_decode(out["completion_ids"], skip_special_tokens=True)
                batches.append({"mask": out["completion_mask"].sum(dim=1).tolist(), "texts": texts,
                                "advantages": out["advantages"].tolist()})
            return out

    monkeypatch.setattr(dynamic_sampling, "trainer_class", lambda: Capturing)
    data = write_items(tmp_path / "pool.jsonl", synthetic_items(24))
    config = train_config("grpo", tmp_path, model, data, dynamic_sampling=True, **overrides)
    run_job("grpo", write_config(tmp_path / "grpo.json", config))
    rows = [json.loads(line) for line in (tmp_path / "grpo.metrics.jsonl").read_text().splitlines()]
    return rows, batches, json.loads((tmp_path / "grpo.meta.json").read_text())


@pytest.mark.slow
def test_no_zero_variance_group_reaches_the_loss(tiny_model: str, tmp_path: Path, monkeypatch) -> None:
    rows, batches, _ = _run(tmp_path, tiny_model, monkeypatch, max_steps=2, max_redraws=2, rewards=VARYING)
    assert len(batches) == 2 and len(rows) == 2
    group, in_loss = 4, 0
    for batch in batches:
        assert len(batch["mask"]) == 8  # the batch stays full
        for g in range(0, 8, group):
            texts, mask = batch["texts"][g:g + group], batch["mask"][g:g + group]
            rewards = {1.0 if re.fullmatch(".*e.*", t, re.DOTALL) else 0.0 for t in texts}
            if any(mask):  # in the loss: its rewards differ
                assert len(rewards) == 2, texts
                in_loss += 1
            else:  # a masked filler: no advantage either
                assert batch["advantages"][g:g + group] == [0.0] * group
    assert in_loss > 0
    for row in rows:
        assert 0.0 <= row["dynamic/dropped_frac"] <= 1.0
        assert 0 <= row["dynamic/redraws"] <= 2
    assert any(row["dynamic/dropped_frac"] > 0 for row in rows)  # the filter did drop groups


@pytest.mark.slow
def test_a_batch_without_signal_is_masked_after_the_last_redraw(tiny_model: str, tmp_path: Path,
                                                               monkeypatch) -> None:
    constant = [{"name": "never", "function": "regex", "weight": 1.0, "options": {"pattern": "^NEVER$"}}]
    rows, batches, _ = _run(tmp_path, tiny_model, monkeypatch, max_steps=1, max_redraws=1, rewards=constant)
    assert rows[0]["dynamic/dropped_frac"] == 1.0
    assert (rows[0]["dynamic/redraws"], rows[0]["dynamic/filled_groups"]) == (1, 2)
    assert batches[0]["mask"] == [0] * 8  # nothing reaches the loss
