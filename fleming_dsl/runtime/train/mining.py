"""Stage-2 adaptive hard-sample mining: which pool items the current policy keeps failing.

The stage is one GRPOTrainer (see runtime/train/miner.py): every `refresh` steps the miner
updates each pool item's pass rate and the next round trains on the items the policy fails
(pass < `pass_below`, hard bucket first) mixed with items it solves at `solved_ratio :
failed_ratio` (the paper's right:wrong 1:2).

Pass rates come first from GRPO's own rollouts: each group of `generations` completions of a
prompt estimates that prompt's pass rate at no extra cost (`Tally`). Then an `estimate` budget of
extra rollouts (`samples` each) goes to items the round did not see, chosen by `to_estimate`:
items never estimated first, then those that failed last time (lowest pass rate first), then the
longest unseen. Without `estimate` the budget is the round's own prompt count
(`default_budget`), so a refresh costs what one round trains on, not a rollout of the pool.

Everything here is pure and tested without a model: the selection, the budget and the miner's
state (`MinerState`, saved in each checkpoint so a killed stage resumes at its round with the same
selections).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.ir import BUCKETS
from fleming_dsl.runtime.data import items

# Lower rank is mined first: the paper prioritises failures on difficult items.
BUCKET_PRIORITY = {name: rank for rank, name in enumerate(reversed(BUCKETS))}


@dataclass(frozen=True)
class Mix:
    """The items of one mining round, and how many came from each side."""

    ids: tuple[str, ...]
    failed: int
    solved: int


def split_counts(total: int, solved_ratio: float, failed_ratio: float,
                 available_failed: int, available_solved: int) -> tuple[int, int]:
    """(failed, solved) counts for `total` items at the declared ratio, topped up from the
    other side when one side runs short, never more than `total` or than available."""
    if solved_ratio < 0 or failed_ratio < 0 or solved_ratio + failed_ratio == 0:
        raise ValueError("ratio terms must be non-negative and not both zero")
    want_failed = round(total * failed_ratio / (solved_ratio + failed_ratio))
    failed = min(want_failed, available_failed)
    solved = min(total - failed, available_solved)
    failed = min(total - solved, available_failed)  # top up failures if solved ran short
    return failed, solved


def select_mix(pass_rates: dict[str, float], difficulty: dict[str, str | None], *, total: int,
               pass_below: float, solved_ratio: float, failed_ratio: float, seed: int) -> Mix:
    """Pick `total` item ids: failures (hard bucket first, then lowest pass rate) and solved
    items (uniformly at random) at the declared ratio, returned shuffled."""
    rng = random.Random(seed)
    ids = sorted(pass_rates)
    failing = [i for i in ids if pass_rates[i] < pass_below]
    solved = [i for i in ids if pass_rates[i] >= pass_below]
    tiebreak = {i: rng.random() for i in failing}
    failing.sort(key=lambda i: (BUCKET_PRIORITY.get(difficulty.get(i) or "", 3), pass_rates[i], tiebreak[i]))
    n_failed, n_solved = split_counts(total, solved_ratio, failed_ratio, len(failing), len(solved))
    chosen = failing[:n_failed] + rng.sample(solved, n_solved)
    rng.shuffle(chosen)
    return Mix(ids=tuple(chosen), failed=n_failed, solved=n_solved)


def to_estimate(pool_ids: Sequence[str], known: dict[str, float], last_round: dict[str, int],
                budget: int | None, *, pass_below: float, seed: int,
                fresh: frozenset[str] = frozenset()) -> list[str]:
    """The pool items whose pass rate this round re-estimates, at most `budget` (all if None or at
    least the pool): unseen items (in a seeded random order), then previously failed ones (lowest
    rate first), then solved ones estimated longest ago; `fresh` items (just measured by GRPO's
    own rollouts) are left out of a partial budget."""
    if budget is None or budget >= len(pool_ids):
        return list(pool_ids)
    rng = random.Random(seed)
    candidates = [i for i in pool_ids if i not in fresh]
    unseen = [i for i in candidates if i not in known]
    rng.shuffle(unseen)
    failed = sorted((i for i in candidates if i in known and known[i] < pass_below),
                    key=lambda i: (known[i], last_round[i], i))
    solved = sorted((i for i in candidates if i in known and known[i] >= pass_below),
                    key=lambda i: (last_round[i], i))
    return (unseen + failed + solved)[:budget]


def mined_failures(mix: Sequence[str], rates: dict[str, float], pass_below: float) -> tuple[str, ...]:
    """The items of a round's mix that were mined as failures: their rate below the bar when the
    mix was chosen (read `rates` before the round's own rollouts are folded in)."""
    return tuple(i for i in mix if i in rates and rates[i] < pass_below)


def flips(failed: Sequence[str], rates: dict[str, float], measured: dict[str, int], since: int,
          pass_below: float) -> dict[str, int]:
    """What became of a round's mined failures by the next estimate: how many were measured
    again (in round `since` or later) and how many of those the policy now solves."""
    again = [i for i in failed if measured.get(i, -1) >= since]
    return {"mined_failed": len(failed), "remeasured": len(again),
            "flipped_to_solved": sum(rates[i] >= pass_below for i in again)}


def pool_pass_rate(rates: dict[str, float]) -> float | None:
    """Mean of the latest estimates over the items estimated so far."""
    return round(sum(rates.values()) / len(rates), 6) if rates else None


@dataclass(frozen=True)
class RoundShape:
    """How one round of `refresh` optimizer steps reads prompts: `blocks` generation batches of
    `prompts` distinct prompts each (TRL's generation batch over all ranks / generations), each
    block read `repeats` times (TRL reuses a generation for `steps_per_generation` micro-steps
    and `num_iterations` updates)."""

    blocks: int
    prompts: int
    repeats: int

    @property
    def total(self) -> int:
        """Distinct prompt slots one round trains on."""
        return self.blocks * self.prompts


def round_shape(refresh: int, *, batch_size: int, world: int, grad_accum: int, generations: int,
                steps_per_generation: int, num_iterations: int) -> RoundShape:
    """The round of `refresh` steps in TRL's sampler terms; a refresh that does not end on a
    generation boundary is refused (a round must be whole generation batches)."""
    per_block = batch_size * world * steps_per_generation
    repeats = num_iterations * steps_per_generation
    batches = refresh * grad_accum  # micro-batches each rank reads in a round
    if per_block % generations or batches % repeats:
        raise ValueError(f"a round of {refresh} steps is not a whole number of generation batches "
                         f"({batches} micro-batches, {repeats} per generation)")
    return RoundShape(blocks=batches // repeats, prompts=per_block // generations, repeats=repeats)


def default_budget(round_prompts: int, pool_size: int) -> int:
    """Items one refresh re-estimates when the spec names no `estimate`: as many as the round
    trains on, so a refresh costs one round's prompts whatever the pool's size."""
    return min(round_prompts, pool_size)


def passed(item: items.Item, completion: str, accept: str) -> bool:
    """Whether a completion names the item's right option (by letter; with accept = "text" also
    by the option's text, as the stage's choice_match grades)."""
    return items.extract_answer(completion, item.options, accept)[0] == item.answer


@dataclass
class Tally:
    """Graded rollouts per item since the last refresh: id -> [passed, total]."""

    counts: dict[str, list[int]] = field(default_factory=dict)

    def add(self, item_id: str, ok: bool) -> None:
        seen = self.counts.setdefault(item_id, [0, 0])
        seen[0] += int(ok)
        seen[1] += 1

    def merge(self, parts: Iterable[dict[str, list[int]]]) -> None:
        """Add other ranks' counts (every rank then holds the same tally)."""
        for part in parts:
            for item_id, (ok, total) in part.items():
                seen = self.counts.setdefault(item_id, [0, 0])
                seen[0] += ok
                seen[1] += total

    def rates(self) -> dict[str, float]:
        return {i: ok / total for i, (ok, total) in sorted(self.counts.items()) if total}


@dataclass
class MinerState:
    """What a resumed stage needs to pick up at its round with the same selections."""

    rates: dict[str, float] = field(default_factory=dict)  # each item's latest estimate
    measured: dict[str, int] = field(default_factory=dict)  # the round each rate was measured in
    selections: dict[int, tuple[str, ...]] = field(default_factory=dict)  # round -> its mix
    rounds: list[dict[str, Any]] = field(default_factory=list)  # one summary per round
    tally: Tally = field(default_factory=Tally)  # this round's own rollouts, not yet in `rates`

    def to_json(self) -> dict[str, Any]:
        return {"rates": self.rates, "measured": self.measured,
                "selections": {str(r): list(ids) for r, ids in sorted(self.selections.items())},
                "rounds": self.rounds, "tally": self.tally.counts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MinerState:
        return cls(rates=dict(data["rates"]), measured=dict(data["measured"]),
                   selections={int(r): tuple(ids) for r, ids in data["selections"].items()},
                   rounds=list(data["rounds"]), tally=Tally({k: list(v) for k, v in data["tally"].items()}))

    def absorb_tally(self, number: int) -> int:
        """Fold the own-rollout tally of round `number` into the rates; how many items it covered."""
        fresh = self.tally.rates()
        self.rates.update(fresh)
        self.measured.update(dict.fromkeys(fresh, number))
        self.tally = Tally()
        return len(fresh)
