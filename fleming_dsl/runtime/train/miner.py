"""Stage-2 mining inside one GRPOTrainer: the mined mix is what the trainer's sampler reads.

The train dataset is the whole pool; `MixSampler` (the trainer's train sampler) yields, one
epoch per round of `refresh` steps, the round's mix laid out as TRL's `RepeatSampler` lays out
prompts (each prompt `generations` times in a generation batch, each batch repeated for
`steps_per_generation` x `num_iterations` micro-steps). At each epoch's start, before the
dataloader reads a row, `MinerCallback` refreshes the pass rates and picks the round's mix, so
optimizer, scheduler, DeepSpeed and any vLLM engine keep running across rounds.

Pass rates come from the trainer's own rollouts (`mined_class` grades each scored group as it
goes by), then from an `estimate` budget of extra rollouts generated through the trainer's own
engine (`_generate_single_turn`: vLLM colocate or server where the stage uses it, else the
in-memory policy on its device, gathered under ZeRO-3); no second copy of the policy is loaded.
Those rollouts run under a forked RNG, so they leave the training rollouts' randomness as it was.

The miner's state goes into every checkpoint (`miner_state.json`); a resumed stage reads it and
trains its round on the same selection.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GrpoJob
from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.train import mining, rewards
from fleming_dsl.runtime.train.step_log import StepLog

log = logging.getLogger("fleming.mining")
STATE_FILE = "miner_state.json"


def accept_mode(cfg: GrpoJob) -> str:
    """Mining grades rollouts as the stage's correctness reward does: by option text too when
    one of its choice_match terms accepts text."""
    accepts = {t.options.get("accept", "letter") for t in cfg.rewards if t.function == "choice_match"}
    return "text" if "text" in accepts else "letter"


class MixSampler:
    """The trainer's train sampler: one epoch is one round, read from the mix set for it."""

    def __init__(self, shape: mining.RoundShape, generations: int, seed: int) -> None:
        self.shape, self.generations, self.seed = shape, generations, seed
        self.round = 0
        self.mix: tuple[int, ...] = ()  # pool row indices of the round's mix

    def set_round(self, number: int, mix: Sequence[int]) -> None:
        if not mix:
            raise JobError(f"mining round {number}: no items to train on (field 'miner.pool')")
        self.round, self.mix = number, tuple(mix)

    def __len__(self) -> int:  # fixed: the Trainer sizes its epochs once
        return self.shape.total * self.generations * self.shape.repeats

    def prompts(self) -> list[int]:
        """The round's `shape.total` prompt slots: the mix in a seeded order, cycled when short."""
        order = list(self.mix)
        random.Random(self.seed * 1_000_003 + self.round).shuffle(order)
        return [order[i % len(order)] for i in range(self.shape.total)]

    def __iter__(self) -> Iterator[int]:
        prompts = self.prompts()  # read when the epoch's first batch is drawn, after the refresh
        size = self.shape.prompts
        for start in range(0, len(prompts), size):
            block = [i for i in prompts[start:start + size] for _ in range(self.generations)]
            for _ in range(self.shape.repeats):
                yield from block


def rollout_texts(trainer, conversations: Sequence[list[dict]], *, n: int, seed: int) -> list[list[str]]:
    """`n` completions per conversation from the trainer's own engine, with its generation
    settings. Every rank must call it with the same number of conversations (vLLM and ZeRO-3
    generation are collective)."""
    import torch

    prompts = [c for c in conversations for _ in range(n)]
    chunk = max(n, trainer.args.per_device_train_batch_size * trainer.args.steps_per_generation // n * n)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    texts: list[str] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), chunk):
            prompt_ids, _, _ = trainer._tokenize_prompts(prompts[start:start + chunk])
            completion_ids, _ = trainer._generate_single_turn(prompt_ids, None, {}, n)
            texts.extend(trainer.processing_class.batch_decode(completion_ids, skip_special_tokens=True))
    return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]


def estimate_across_ranks(trainer, pool: Sequence[items.Item], *, samples: int, seed: int,
                          accept: str) -> dict[str, float]:
    """Each item's pass rate over `samples` rollouts, the items split across ranks (each rank's
    share padded to the same length) and the estimates gathered: the same dict on every rank."""
    share = -(-len(pool) // ranks.world_size())
    mine = ranks.shard(list(pool))
    padded = mine + [pool[0]] * (share - len(mine))  # fillers keep the collective calls matched
    outs = rollout_texts(trainer, [items.prompt_messages(i) for i in padded], n=samples, seed=seed)
    found = {item.id: sum(mining.passed(item, t, accept) for t in texts) / samples
             for item, texts in zip(mine, outs)}
    merged: dict[str, float] = {}
    for part in ranks.all_gather(found):
        merged.update(part)
    return {item.id: merged[item.id] for item in pool}


class Miner:
    """The pool, the miner's state and the round logic; the callback and trainer call into it."""

    def __init__(self, cfg: GrpoJob, pool: Sequence[items.Item], shape: mining.RoundShape,
                 steps: StepLog) -> None:
        self.cfg, self.spec, self.shape, self.steps = cfg, cfg.miner, shape, steps
        self.pool = list(pool)
        self.by_id = {item.id: item for item in pool}
        self.row = {item.id: index for index, item in enumerate(pool)}
        self.accept = accept_mode(cfg)
        self.state = mining.MinerState()
        self.sampler = MixSampler(shape, cfg.training.generations, cfg.seed)
        self.trainer = None  # the trainer whose engine rolls out the estimates (set once built)
        self.failing: frozenset[str] = frozenset()  # the current round's mined failures
        self.sampler_ids: frozenset[str] = frozenset()  # the current round's mix

    def side(self, item_id: str) -> str | None:
        """Which side of the current round's mix an item was mined for (the step rows' rewards
        on mined failures and mined solved items)."""
        if item_id in self.failing:
            return "failed"
        return "solved" if item_id in self.sampler_ids else None

    def observe(self, rows: Sequence[dict[str, Any]], completions: Sequence[Any]) -> None:
        """Grade the trainer's own rollouts of a scored batch (its rows carry the item id)."""
        for row, completion in zip(rows, completions):
            item = self.by_id.get(row.get("id"))
            if item is not None:
                self.state.tally.add(item.id, mining.passed(item, rewards.completion_text(completion), self.accept))

    def budget(self) -> int:
        if self.spec.estimate is not None:
            return self.spec.estimate
        return mining.default_budget(self.shape.total, len(self.pool))

    def refresh(self, number: int) -> None:
        """Make round `number`'s mix the sampler's (every rank, at the round's first step)."""
        state = self.state
        if number not in state.selections:
            self._select(number)
        else:  # a resumed stage: the round its checkpoint was in, as it was chosen
            self.steps.extra = {"round": number}
        self.sampler.set_round(number, [self.row[i] for i in state.selections[number]])
        # rates are still the ones the mix was chosen by (the round's rollouts fold in at the next)
        self.sampler_ids = frozenset(state.selections[number])
        self.failing = frozenset(mining.mined_failures(state.selections[number], state.rates, self.spec.pass_below))

    def _absorb(self, number: int) -> tuple[int, tuple[str, ...]]:
        """Fold the training rollouts of round `number` into the rates (every rank: the tallies
        are gathered): (items they covered, the round's mined failures, read before the fold)."""
        state = self.state
        failed = mining.mined_failures(state.selections.get(number, ()), state.rates, self.spec.pass_below)
        parts = ranks.all_gather(state.tally.counts)  # every rank graded its own share of rollouts
        state.tally = mining.Tally()
        state.tally.merge(parts)
        return state.absorb_tally(number), failed

    def _select(self, number: int) -> None:
        state, spec, seed = self.state, self.spec, self.cfg.seed + number
        seen, failed_before = self._absorb(number - 1)
        fresh = frozenset(i for i, r in state.measured.items() if r == number - 1)
        chosen = mining.to_estimate([i.id for i in self.pool], state.rates, state.measured, self.budget(),
                                    pass_below=spec.pass_below, seed=seed, fresh=fresh)
        state.rates.update(estimate_across_ranks(self.trainer, [self.by_id[i] for i in chosen],
                                                 samples=spec.samples, seed=seed, accept=self.accept)
                           if chosen else {})
        state.measured.update(dict.fromkeys(chosen, number))
        difficulty = {item.id: item.difficulty for item in self.pool}
        mix = mining.select_mix(state.rates, difficulty, total=min(self.shape.total, len(self.pool)),
                                pass_below=spec.pass_below, solved_ratio=spec.solved_ratio,
                                failed_ratio=spec.failed_ratio, seed=seed)
        state.selections[number] = mix.ids
        pool_pass = mining.pool_pass_rate(state.rates)
        # the previous round's mined failures, measured again by its rollouts and this estimate
        flipped = mining.flips(failed_before, state.rates, state.measured, number - 1, spec.pass_below)
        summary = {"round": number, "pool_pass_rate": pool_pass, "failed": mix.failed, "solved": mix.solved,
                   "from_rollouts": seen, "estimated": len(chosen), "known": len(state.rates),
                   "previous": flipped}
        state.rounds.append(summary)
        log.info("round %d: pool pass rate %.3f (%d items from training rollouts, %d estimated), "
                 "mined %d failed + %d solved; %d of round %d's %d mined failures now solved", number,
                 pool_pass, seen, len(chosen), mix.failed, mix.solved, flipped["flipped_to_solved"],
                 number - 1, flipped["mined_failed"])
        self.steps.extra = {"round": number, "pool_pass_rate": pool_pass,
                            "mined": {"failed": mix.failed, "solved": mix.solved},
                            "from_rollouts": seen, "estimated": len(chosen), "known": len(state.rates)}

    def close(self) -> None:
        """After training (every rank): the last round's own rollouts are its mined failures'
        next estimate; a closing summary (`"closing": true`) records them and the pool's rate."""
        state = self.state
        if not state.selections:
            return
        last = max(state.selections)
        if any(r.get("closing") for r in state.rounds):  # a resumed stage that had finished
            return
        _, failed = self._absorb(last)
        state.rounds.append({"round": last + 1, "closing": True,
                             "pool_pass_rate": mining.pool_pass_rate(state.rates), "known": len(state.rates),
                             "previous": mining.flips(failed, state.rates, state.measured, last,
                                                      self.spec.pass_below)})

    def save(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(json.dumps(self.state.to_json(), sort_keys=True) + "\n", encoding="utf-8")

    def load(self, checkpoint: str) -> None:
        path = Path(checkpoint) / STATE_FILE
        if not path.is_file():
            raise JobError(f"{checkpoint}: checkpoint has no {STATE_FILE} (a stage-2 checkpoint written "
                           "before mining ran in one trainer); remove the checkpoint folder to restart")
        self.state = mining.MinerState.from_json(json.loads(path.read_text(encoding="utf-8")))


def mined_class(base):
    """`base` (a GRPOTrainer class) reading its prompts from the miner's sampler and showing the
    miner every scored batch."""

    class MinedGRPOTrainer(base):
        miner: Miner

        def _get_train_sampler(self, dataset=None):
            return self.miner.sampler

        def _redraw_rows(self) -> Sequence[int]:  # dynamic sampling redraws from the round's mix
            return self.miner.sampler.mix

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            if self.model.training:
                self.miner.observe(inputs, completions)
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    return MinedGRPOTrainer


def callback(miner: Miner):
    """Refresh at each round's first step; write the miner's state into every checkpoint (before
    the checkpoint is sealed: list this callback before `checkpoint_sealer`)."""
    from transformers import TrainerCallback

    class MinerCallback(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            miner.refresh(state.global_step // miner.spec.refresh)
            return control

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ranks.is_main() and folder.is_dir():
                miner.save(folder)
            return control

    return MinerCallback()
