"""The metrics rows of a GRPO stage: one row per optimizer step, and the plateau stop.

A recorder wraps each reward term so every step writes one row: total and per-term mean reward,
the mean total per difficulty bucket (items' `difficulty`; a pool without one logs none), in a
mined stage the mean total on the round's mined failures and mined solved items
(`mined/failed`, `mined/solved`), and a few completions. Under several ranks TRL splits each
batch's rollouts across them and every rank scores its own share: the recorder gathers all ranks'
rewards at each step, so every rank computes the same row (and the same plateau decision) and the
main process alone writes it.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GrpoJob
from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.io import read_jsonl, write_jsonl
from fleming_dsl.runtime.train import dynamic_sampling, rewards
from fleming_dsl.runtime.train.plateau import PlateauTracker
from fleming_dsl.vocabulary import plateau_metrics

log = logging.getLogger("fleming.grpo")


SAMPLES_PER_STEP = 2  # completions kept per step in the metrics rows (for the report)
SAMPLE_CHARS = 600  # of each prompt (its end) and completion (its start)


@dataclass
class RewardRecorder:
    """Sees every reward call (per-sample values and each sample's bucket) between two steps."""

    terms: Sequence[rewards.RewardTerm]
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    buckets: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # a mined stage: the side ("failed" / "solved") the miner picked an item id for this round
    side: Callable[[str], str | None] | None = None
    sides: list[str] = field(default_factory=list)  # the first term's calls, like `texts`
    texts: list[tuple[str, str]] = field(default_factory=list)  # (prompt, completion), first term's calls
    samples_per_step: int = SAMPLES_PER_STEP

    def wrap(self, term: rewards.RewardTerm):
        def reward(prompts, completions, **kwargs):
            out = [float(v) for v in term.fn(prompts, completions, **kwargs)]
            if term is self.terms[0]:
                self.texts.extend((_prompt_text(p), rewards.completion_text(c)) for p, c in zip(prompts, completions))
                if self.side is not None:
                    self.sides.extend(self.side(str(i)) or "" for i in kwargs.get("id") or [""] * len(out))
            self.values[term.name].extend(out)
            self.buckets[term.name].extend(str(d or "") for d in kwargs.get("difficulty") or [""] * len(out))
            return out

        reward.__name__ = term.name  # TRL logs each function as rewards/<__name__>
        return reward

    def flush(self) -> dict[str, float] | None:
        """Mean total, per-term and per-bucket reward of every rank's samples since the last
        flush (every rank must call it: the samples are gathered)."""
        mine = ({t.name: list(self.values[t.name]) for t in self.terms},
                {t.name: list(self.buckets[t.name]) for t in self.terms}, list(self.sides))
        self.values.clear()
        self.buckets.clear()
        self.sides = []
        texts, self.texts = self.texts, []
        per_term: dict[str, list[float]] = {t.name: [] for t in self.terms}
        per_bucket: dict[str, list[str]] = {t.name: [] for t in self.terms}
        sides: list[str] = []
        for values, buckets, their_sides in ranks.all_gather(mine):  # rank order: the same row on every rank
            for name in per_term:
                per_term[name].extend(values[name])
                per_bucket[name].extend(buckets[name])
            sides.extend(their_sides)
        if any(not per_term[t.name] for t in self.terms):
            return None
        totals = rewards.weighted_total(per_term, self.terms)
        row = {"reward": mean(totals)}
        row.update({f"rewards/{name}": mean(v) for name, v in per_term.items()})
        row.update({f"bucket/{b}": mean(v) for b, v in grouped(per_bucket[self.terms[0].name], totals).items()})
        row.update({f"mined/{side}": mean(v) for side, v in grouped(sides, totals).items()})
        # the sample is this rank's own rollouts (only rank 0 writes the rows)
        local_totals = rewards.weighted_total(mine[0], self.terms) if all(mine[0].values()) else []
        row["samples"] = self.samples(mine[0], local_totals, texts)
        return row

    def samples(self, per_term: dict[str, list[float]], totals: list[float],
                texts: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """A few completions of the step with their reward terms (as TRL's log_completions shows),
        spread over the step's rollouts so one group does not fill the sample."""
        count = min(self.samples_per_step, len(texts), len(totals))
        stride = max(1, len(totals) // max(1, count))
        picks = list(range(0, len(totals), stride))[:count]
        return [{"prompt": texts[i][0][-SAMPLE_CHARS:], "completion": texts[i][1][:SAMPLE_CHARS],
                 "rewards": {name: v[i] for name, v in per_term.items()}, "total": round(totals[i], 6)}
                for i in picks]


def grouped(labels: Sequence[str], values: Sequence[float]) -> dict[str, list[float]]:
    """Values by their label, labels sorted; unlabelled ("") values left out."""
    out: dict[str, list[float]] = defaultdict(list)
    for label, value in zip(labels, values):
        if label:
            out[label].append(value)
    return dict(sorted(out.items()))


def _prompt_text(prompt: Any) -> str:
    """The last user message of a conversational prompt, or the prompt text."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else rewards.completion_text(prompt)


def mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0


def plateau_metric(cfg: GrpoJob) -> str | None:
    """The metrics-row key the plateau watches ("reward", or a term as `rewards/<name>`)."""
    if cfg.plateau is None:
        return None
    names = [t.name for t in cfg.rewards]
    metric = cfg.plateau.metric
    if metric in names:
        return f"rewards/{metric}"
    allowed = plateau_metrics(names)  # the rule `fleming check` applies to the spec
    if metric not in allowed and metric not in (f"rewards/{n}" for n in names):
        raise JobError(f"field 'plateau.metric': unknown metric {cfg.plateau.metric!r}; "
                       f"one of {', '.join(allowed)}")
    return metric


@dataclass
class StepLog:
    """The metrics rows of the whole job and the plateau state."""

    stage: str
    metric: str | None
    tracker: PlateauTracker | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # the miner's round info for the next row
    plateaued: bool = False
    path: str | None = None  # rewritten (atomically) after every step, so a killed job keeps its rows

    def add(self, step: int, values: dict[str, float]) -> bool:
        """Record one step's row; True when the plateau says stop."""
        row = {"stage": self.stage, "step": step, **values, **self.extra}
        self.extra = {k: v for k, v in self.extra.items() if k == "round"}  # a round's estimate once
        self.rows.append(row)
        if self.path and ranks.is_main():
            write_jsonl(self.path, self.rows)
        log.info("step %d reward %.4f", row["step"], row["reward"])
        if self.tracker and self.metric in row:
            self.plateaued = self.tracker.update(row[self.metric])
        return self.plateaued


    def resume(self, path: str, step: int) -> None:
        """Take the rows a killed run wrote up to the checkpoint it resumes from; the plateau sees
        the history it would have seen."""
        self.rows = rows_before(path, step)
        for row in self.rows:
            if self.tracker and self.metric in row:
                self.plateaued = self.tracker.update(row[self.metric])


def rows_before(path: str, step: int) -> list[dict[str, Any]]:
    """Metrics rows a killed run wrote up to the checkpoint it is resumed from."""
    if not os.path.isfile(path):
        return []
    return [row for row in read_jsonl(path) if row.get("step", 0) <= step]


def step_callback(recorder: RewardRecorder, steps: StepLog, groups: dynamic_sampling.GroupFilterLog | None):
    """The TrainerCallback that writes one row per optimizer step and stops at a plateau."""
    from transformers import TrainerCallback

    class StepMetrics(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            values = recorder.flush()
            if values is not None and groups is not None:
                values.update(groups.pop_row())
            if values is not None and steps.add(state.global_step, values):
                log.info("plateau of %s at step %d: stopping", steps.metric, state.global_step)
                control.should_training_stop = True
            return control

    return StepMetrics()
