"""Stage-2 adaptive hard-sample mining: which pool items the current policy keeps failing.

Every `refresh` GRPO steps the job re-estimates each pool item's pass rate under the current
policy (`samples` sampled rollouts per item, real generation with the in-memory model), then
trains the next round on the items it fails (pass < `pass_below`, hard bucket first) mixed with
items it solves at `solved_ratio : failed_ratio` (the paper's right:wrong 1:2).

With `estimate = N` only N items are re-estimated per refresh, chosen by `to_estimate`: items
never estimated first, then those that failed last time (lowest pass rate first), then the
longest unseen; the others keep their last estimate. Mining then costs what the budget says,
not a rollout of the whole pool per round.

`select_mix` and `to_estimate` are pure and tested without a model; `estimate_pass_rates` needs
torch. Under several ranks `estimate_pass_rates_across_ranks` rolls out each rank's share of the
chosen items and gathers the estimates, so every rank holds the same rates and `select_mix`
picks the same items on each.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.data import items

# Lower rank is mined first: the paper prioritises failures on difficult items.
BUCKET_PRIORITY = {"hard": 0, "moderate": 1, "easy": 2}


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
                budget: int | None, *, pass_below: float, seed: int) -> list[str]:
    """The pool items whose pass rate this round re-estimates, at most `budget` (all if None):
    unseen items (in a seeded random order), then previously failed ones (lowest rate first),
    then solved ones estimated longest ago."""
    if budget is None or budget >= len(pool_ids):
        return list(pool_ids)
    rng = random.Random(seed)
    unseen = [i for i in pool_ids if i not in known]
    rng.shuffle(unseen)
    failed = sorted((i for i in pool_ids if i in known and known[i] < pass_below),
                    key=lambda i: (known[i], last_round[i], i))
    solved = sorted((i for i in pool_ids if i in known and known[i] >= pass_below),
                    key=lambda i: (last_round[i], i))
    return (unseen + failed + solved)[:budget]


def prompts_per_round(refresh: int, batch_size: int, grad_accum: int, generations: int) -> int:
    """Distinct prompts one round of `refresh` steps consumes (each prompt has `generations` rollouts)."""
    return max(1, math.ceil(refresh * batch_size * grad_accum / generations))


def sample_completions(model, tokenizer, conversations: Sequence[list[dict]], *, n: int,
                       temperature: float, max_new_tokens: int, seed: int,
                       batch_size: int = 64) -> list[list[str]]:
    """`n` sampled completions per conversation from an in-memory model (skip_special_tokens)."""
    import torch
    from tqdm import tqdm

    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
             for c in conversations]
    flat = [t for t in texts for _ in range(n)]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    outputs: list[str] = []
    try:
        for start in tqdm(range(0, len(flat), batch_size), desc="rollouts", leave=False):
            batch = tokenizer(flat[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with torch.no_grad():
                generated = model.generate(
                    **batch, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                    top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                )
            new = generated[:, batch["input_ids"].shape[1]:]
            outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [outputs[i * n:(i + 1) * n] for i in range(len(conversations))]


def estimate_pass_rates(model, tokenizer, pool: Sequence[items.Item], *, samples: int,
                        temperature: float, max_new_tokens: int, seed: int,
                        accept: str = "letter") -> dict[str, float]:
    """Each pool item's fraction of `samples` rollouts that name the right option (by letter;
    with accept = "text" also by the option's text, as the stage's choice_match grades)."""
    completions = sample_completions(
        model, tokenizer, [items.prompt_messages(item) for item in pool], n=samples,
        temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
    )
    return {
        item.id: sum(items.extract_answer(text, item.options, accept)[0] == item.answer
                     for text in outs) / samples
        for item, outs in zip(pool, completions)
    }


def estimate_pass_rates_across_ranks(model, tokenizer, pool: Sequence[items.Item], *, samples: int,
                                     temperature: float, max_new_tokens: int,
                                     seed: int, accept: str = "letter") -> dict[str, float]:
    """`estimate_pass_rates` with the pool split across ranks (every world_size-th item each) and
    the estimates gathered: 1/N of the rollouts per rank, the same dict on every rank."""
    mine = estimate_pass_rates(model, tokenizer, ranks.shard(list(pool)), samples=samples,
                               temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                               accept=accept)
    merged: dict[str, float] = {}
    for part in ranks.all_gather(mine):
        merged.update(part)
    return {item.id: merged[item.id] for item in pool}
