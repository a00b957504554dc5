"""Hard-sample mining: the selection is a pure function, tested without a model."""

from __future__ import annotations

import pytest

from fleming_dsl.runtime.train import mining


def test_split_counts_follows_the_ratio_and_tops_up_the_short_side() -> None:
    assert mining.split_counts(12, 1, 2, available_failed=50, available_solved=50) == (8, 4)
    assert mining.split_counts(12, 1, 2, available_failed=3, available_solved=50) == (3, 9)
    assert mining.split_counts(12, 1, 2, available_failed=50, available_solved=1) == (11, 1)
    assert mining.split_counts(12, 1, 2, available_failed=2, available_solved=3) == (2, 3)
    with pytest.raises(ValueError):
        mining.split_counts(4, 0, 0, 1, 1)


def pool(n_fail: int, n_solved: int):
    rates = {f"f{i}": 0.25 if i % 2 else 0.0 for i in range(n_fail)}
    rates.update({f"s{i}": 1.0 for i in range(n_solved)})
    buckets = {k: ("hard" if i % 3 == 0 else "easy") for i, k in enumerate(sorted(rates))}
    return rates, buckets


def test_select_mix_takes_failed_and_solved_at_one_to_two() -> None:
    rates, buckets = pool(30, 30)
    mix = mining.select_mix(rates, buckets, total=30, pass_below=0.5, solved_ratio=1, failed_ratio=2, seed=0)
    assert (mix.failed, mix.solved) == (20, 10)
    assert sum(i.startswith("f") for i in mix.ids) == 20
    assert len(set(mix.ids)) == 30


def test_select_mix_prefers_hard_failures_then_the_lowest_pass_rate() -> None:
    rates = {"easy0": 0.0, "hard25": 0.25, "hard0": 0.0, "mod0": 0.0, "ok": 0.9, "ok2": 1.0}
    buckets = {"easy0": "easy", "hard25": "hard", "hard0": "hard", "mod0": "moderate", "ok": "easy",
               "ok2": "hard"}
    mix = mining.select_mix(rates, buckets, total=3, pass_below=0.5, solved_ratio=1, failed_ratio=2, seed=1)
    assert set(mix.ids) - {"ok", "ok2"} == {"hard0", "hard25"}
    assert (mix.failed, mix.solved) == (2, 1)


def test_select_mix_is_deterministic_for_a_seed() -> None:
    rates, buckets = pool(20, 20)
    a = mining.select_mix(rates, buckets, total=12, pass_below=0.5, solved_ratio=1, failed_ratio=2, seed=4)
    b = mining.select_mix(rates, buckets, total=12, pass_below=0.5, solved_ratio=1, failed_ratio=2, seed=4)
    assert a == b


def test_prompts_per_round() -> None:
    assert mining.prompts_per_round(4, batch_size=8, grad_accum=1, generations=4) == 8
    assert mining.prompts_per_round(3, batch_size=6, grad_accum=2, generations=4) == 9


def test_to_estimate_takes_unseen_items_first_then_failures_then_the_stalest() -> None:
    pool = [f"q{i}" for i in range(6)]
    first = mining.to_estimate(pool, {}, {}, 3, pass_below=0.5, seed=1)
    assert len(first) == 3 and set(first) <= set(pool)
    known = {"q0": 0.9, "q1": 0.0, "q2": 0.25, "q3": 1.0}
    last = {"q0": 0, "q1": 1, "q2": 1, "q3": 2}
    # unseen q4, q5 (seeded order), then failures by pass rate, then solved by staleness
    chosen = mining.to_estimate(pool, known, last, 5, pass_below=0.5, seed=1)
    assert sorted(chosen[:2]) == ["q4", "q5"] and chosen[2:] == ["q1", "q2", "q0"]
    assert mining.to_estimate(pool, known, last, None, pass_below=0.5, seed=1) == pool
    assert mining.to_estimate(pool, known, last, 99, pass_below=0.5, seed=1) == pool
    assert mining.to_estimate(pool, {}, {}, 3, pass_below=0.5, seed=1) == first  # seeded
