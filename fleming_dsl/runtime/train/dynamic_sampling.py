"""DAPO dynamic sampling on TRL's GRPOTrainer: groups whose rewards all agree never reach the loss.

A prompt group whose rollouts all get the same reward has zero advantage everywhere: it costs a
backward pass and, under token-normalised losses, dilutes the groups that do carry signal. DAPO
drops such groups and samples replacement prompts until the batch is full. TRL has no such option
("Dynamic Sampling: not supported"), so this subclasses `GRPOTrainer` at its extension point,
`_generate_and_score_completions` (one call per generation batch, before TRL buffers and splits it
into accumulation steps), rather than forking the trainer:

1. score the batch as TRL does; find the groups whose total reward varies (max - min > 1e-6);
2. keep those, draw a fresh generation batch of prompts from the training set (seeded by the job
   seed, the step and the redraw number) and score it, at most `max_redraws` times;
3. assemble the batch from kept groups; if it is still short after the last redraw, fill it with
   dropped groups whose completion mask is zeroed (so none of their tokens reach the loss, exactly
   as TRL's `mask_truncated_completions` removes a completion) and advantage 0.

Across processes, every rank makes the same number of redraws (the decision is taken on the
gathered rewards, which every rank holds), so TRL's collective calls stay matched.

Each generation batch records the fraction of groups dropped (of all groups scored, redraws
included), the redraws used and whether the batch had to be filled; the job's metrics rows carry
them as `dynamic/dropped_frac`, `dynamic/redraws`, `dynamic/filled_groups`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.errors import JobError

SPREAD = 1e-6  # a group whose total rewards differ by no more than this has no learning signal


@dataclass
class GroupFilterLog:
    """What dynamic sampling did since the last step row (read and cleared by the step callback)."""

    groups_seen: int = 0
    groups_dropped: int = 0
    redraws: int = 0
    filled: int = 0  # dropped groups used, masked, to fill a short batch
    generations: int = 0  # generation batches assembled since the last row
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per generation batch

    def record(self, seen: int, dropped: int, redraws: int, filled: int) -> None:
        self.groups_seen += seen
        self.groups_dropped += dropped
        self.redraws += redraws
        self.filled += filled
        self.generations += 1
        self.history.append({"seen": seen, "dropped": dropped, "redraws": redraws, "filled": filled})

    def pop_row(self) -> dict[str, float]:
        """The metrics of the steps since the last call ({} when nothing was generated)."""
        if not self.generations:
            return {}
        row = {"dynamic/dropped_frac": round(self.groups_dropped / max(1, self.groups_seen), 6),
               "dynamic/redraws": self.redraws, "dynamic/filled_groups": self.filled}
        self.groups_seen = self.groups_dropped = self.redraws = self.filled = self.generations = 0
        return row


def varying_groups(totals, group_size: int):
    """Per group of `group_size` consecutive rows: True when the total rewards vary (NaN ignored)."""
    import torch

    grouped = totals.view(-1, group_size)
    finite = torch.isfinite(grouped)
    high = torch.where(finite, grouped, torch.full_like(grouped, -float("inf"))).max(dim=1).values
    low = torch.where(finite, grouped, torch.full_like(grouped, float("inf"))).min(dim=1).values
    return (high - low) > SPREAD


# Output keys of TRL 1.x's `_generate_and_score_completions` this module knows how to merge; any
# other (images, tool masks from multimodal or agentic rollouts) is refused rather than guessed.
_LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}
_RIGHT_PADDED = {"completion_ids": "pad", "completion_mask": 0, "old_per_token_logps": 0.0,
                 "ref_per_token_logps": 0.0, "sampling_per_token_logps": 0.0, "tool_mask": 1}
_PER_ROW = ("advantages",)


def _pad_to(tensor, length: int, value, left: bool):
    import torch.nn.functional as F

    missing = length - tensor.size(1)
    if missing <= 0:
        return tensor
    return F.pad(tensor, (missing, 0) if left else (0, missing), value=value)


def merge_rows(parts: list[tuple[dict[str, Any], Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate the rows `idx` of each scored output (padding prompts left, completions right)."""
    import torch

    keys = set(parts[0][0]) - {"num_items_in_batch"}
    unknown = keys - set(_LEFT_PADDED) - set(_RIGHT_PADDED) - set(_PER_ROW)
    if unknown:
        raise JobError(f"dynamic_sampling: cannot merge rollout fields {sorted(unknown)} "
                       "(multimodal or tool rollouts are not supported with dynamic sampling)")
    out: dict[str, Any] = {}
    for key in sorted(keys):
        pieces = [output[key][idx] for output, idx in parts]
        if key in _PER_ROW:
            out[key] = torch.cat(pieces)
            continue
        left = key in _LEFT_PADDED
        value = (_LEFT_PADDED if left else _RIGHT_PADDED)[key]
        value = pad_token_id if value == "pad" else value
        width = max(p.size(1) for p in pieces)
        out[key] = torch.cat([_pad_to(p, width, value, left) for p in pieces])
    return out


def trainer_class():
    """`GRPOTrainer` with dynamic sampling (imported lazily: trl is a job-time dependency)."""
    import torch
    from accelerate.utils import gather
    from trl import GRPOTrainer

    class DynamicSamplingGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, max_redraws: int, group_log: GroupFilterLog, draw_seed: int, **kwargs):
            super().__init__(*args, **kwargs)
            self.max_redraws = max_redraws
            self.group_log = group_log
            self.draw_seed = draw_seed
            self._rewards_seen = None

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._rewards_seen = rewards  # gathered over processes, [rows of all ranks, functions]
            return rewards

        def _totals(self):
            weights = self.reward_weights.to(self._rewards_seen.device).unsqueeze(0)
            totals = (self._rewards_seen * weights).nansum(dim=1)
            totals[torch.isnan(self._rewards_seen).all(dim=1)] = torch.nan
            return totals

        def _draw(self, count: int, redraw: int) -> list[dict[str, Any]]:
            """`count` fresh prompts from the training set, each repeated once per generation."""
            gen = torch.Generator().manual_seed(
                self.draw_seed * 1_000_003 + self.state.global_step * 1_009 + redraw * 31
                + self.accelerator.process_index)
            rows = self._redraw_rows()
            picks = torch.randint(len(rows), (count,), generator=gen).tolist()
            return [self.train_dataset[rows[i]] for i in picks for _ in range(self.num_generations)]

        def _redraw_rows(self):
            """The training-set rows a redraw picks from (a mined stage narrows it to its mix)."""
            return range(len(self.train_dataset))

        def _generate_and_score_completions(self, inputs):
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)
            size, ranks = self.num_generations, self.accelerator.num_processes
            rank = self.accelerator.process_index
            if len(inputs) % size:
                raise JobError(f"dynamic_sampling: each process's generation batch ({len(inputs)} rows) must "
                               f"hold whole groups of {size} generations")
            need = len(inputs) // size
            kept: list[list[tuple[dict, Any]]] = [[] for _ in range(ranks)]  # per rank: (output, row idx)
            dropped: list[tuple[dict, Any]] = []  # this rank's dropped groups, to fill a short batch
            seen = dropped_count = redraws = 0
            batch = inputs
            while True:
                output = super()._generate_and_score_completions(batch)
                varies = varying_groups(self._totals(), size).view(ranks, -1)
                seen += varies.numel()
                dropped_count += int((~varies).sum())
                for r in range(ranks):
                    for g in torch.nonzero(varies[r]).flatten().tolist():
                        kept[r].append((output, slice(g * size, (g + 1) * size)))
                for g in torch.nonzero(~varies[rank]).flatten().tolist():
                    dropped.append((output, slice(g * size, (g + 1) * size)))
                if min(len(k) for k in kept) >= need or redraws >= self.max_redraws:
                    break
                redraws += 1
                batch = self._draw(need, redraws)
            mine = kept[rank][:need]
            filled = dropped[: need - len(mine)]
            parts = mine + filled
            merged = merge_rows(parts, self._tokenizer.pad_token_id)
            if filled:
                rows = size * len(filled)  # the filled groups are the last rows: out of the loss
                merged["completion_mask"][-rows:] = 0
                merged["advantages"][-rows:] = 0.0
            merged["num_items_in_batch"] = gather(merged["completion_mask"].sum()).sum()
            self.group_log.record(seen=seen, dropped=dropped_count, redraws=redraws,
                                  filled=int(gather(torch.tensor([len(filled)],
                                                                 device=self.accelerator.device)).sum()))
            return merged

    return DynamicSamplingGRPOTrainer
