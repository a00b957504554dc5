"""Hard-sample mining: the selection is a pure function, tested without a model."""

from __future__ import annotations

import json

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


def test_round_shape_counts_generation_batches_as_trl_reads_them() -> None:
    # 8 rows a step over 4 generations: 2 prompts a generation batch, one batch a step
    shape = mining.round_shape(3, batch_size=8, world=1, grad_accum=1, generations=4,
                               steps_per_generation=1, num_iterations=1)
    assert (shape.blocks, shape.prompts, shape.repeats, shape.total) == (3, 2, 1, 6)
    # grad_accum 2 = steps_per_generation 2 on 2 ranks: 6 x 2 x 2 / 4 = 6 prompts, read twice
    shape = mining.round_shape(3, batch_size=6, world=2, grad_accum=2, generations=4,
                               steps_per_generation=2, num_iterations=1)
    assert (shape.blocks, shape.prompts, shape.repeats) == (3, 6, 2)
    with pytest.raises(ValueError, match=r"^a round of 3 steps is not a whole number of generation batches "
                                         r"\(3 micro-batches, 2 per generation\)$"):
        mining.round_shape(3, batch_size=8, world=1, grad_accum=1, generations=4,
                           steps_per_generation=1, num_iterations=2)


def test_default_budget_is_the_round_not_the_pool() -> None:
    assert [mining.default_budget(8, pool) for pool in (5, 100, 10_000)] == [5, 8, 8]


def test_tally_turns_own_rollouts_into_rates_and_state_round_trips() -> None:
    state = mining.MinerState(rates={"q0": 1.0}, measured={"q0": 0}, selections={0: ("q0", "q1")})
    for item_id, ok in [("q1", True), ("q1", False), ("q2", False), ("q1", True)]:
        state.tally.add(item_id, ok)
    state.tally.merge([{"q2": [1, 1]}])  # another rank's rollouts of q2
    restored = mining.MinerState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    assert restored.absorb_tally(1) == 2
    assert restored.rates == {"q0": 1.0, "q1": pytest.approx(2 / 3), "q2": 0.5}
    assert restored.measured == {"q0": 0, "q1": 1, "q2": 1} and restored.tally.counts == {}


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


def test_to_estimate_leaves_items_fresh_from_training_rollouts_out_of_a_partial_budget() -> None:
    pool = ["q0", "q1", "q2", "q3"]
    known = {"q0": 0.0, "q1": 0.0, "q2": 1.0}
    last = {"q0": 1, "q1": 0, "q2": 0}
    assert mining.to_estimate(pool, known, last, 3, pass_below=0.5, seed=0, fresh=frozenset({"q0"})) == [
        "q3", "q1", "q2"]
    assert mining.to_estimate(pool, known, last, 4, pass_below=0.5, seed=0, fresh=frozenset({"q0"})) == pool


def test_mix_sampler_lays_out_the_round_as_trl_repeat_sampler_does() -> None:
    from fleming_dsl.runtime.train.miner import MixSampler

    sampler = MixSampler(mining.RoundShape(blocks=2, prompts=2, repeats=2), generations=3, seed=0)
    sampler.set_round(0, [10, 11, 12])  # three items for four slots: the mix is cycled
    out = list(sampler)
    assert len(out) == len(sampler) == 2 * 2 * 3 * 2
    first, second = out[:12], out[12:]
    assert first[:6] == first[6:] and second[:6] == second[6:]  # each generation batch read twice
    assert first[:3] == [first[0]] * 3 and first[3:6] == [first[3]] * 3  # a group: one prompt x 3
    assert {first[0], first[3], second[0], second[3]} == {10, 11, 12}
    assert list(sampler) == out  # the same round reads the same order (a resumed run skips into it)
    sampler.set_round(1, [10, 11, 12])
    assert list(sampler) != out


def test_mined_failures_and_flips_read_the_rates_before_and_after() -> None:
    before = {"a": 0.0, "b": 0.25, "c": 1.0, "d": 0.0}
    failed = mining.mined_failures(("a", "b", "c"), before, pass_below=0.5)
    assert failed == ("a", "b")  # c was mined as a solved item; d was not mined
    after = {"a": 0.75, "b": 0.0, "c": 1.0, "d": 0.0}
    assert mining.flips(failed, after, {"a": 1, "b": 0}, since=1, pass_below=0.5) == {
        "mined_failed": 2, "remeasured": 1, "flipped_to_solved": 1}  # b was not measured again
    assert mining.pool_pass_rate({}) is None
    assert mining.pool_pass_rate(after) == 0.4375


def test_miner_records_per_round_pool_pass_rate_and_failures_that_flipped(tmp_path, monkeypatch) -> None:
    """Two rounds and the close, with recorded pass rates standing in for the policy's rollouts:
    each round reports what the next estimate found of the previous round's mined failures."""
    from training_fixtures import train_config

    from fleming_dsl.plan.jobconfig import GrpoJob
    from fleming_dsl.runtime.data.items import Item
    from fleming_dsl.runtime.train import miner as miner_module
    from fleming_dsl.runtime.train.step_log import StepLog

    cfg = GrpoJob.model_validate(train_config("grpo", tmp_path, "m", "d.jsonl", miner={
        "pool": "d.jsonl", "pass_below": 0.5, "refresh": 2, "samples": 2, "estimate": 6,
        "solved_ratio": 1.0, "failed_ratio": 2.0}))
    items = [Item(id=f"q{i}", question="?", options={"A": "x", "B": "y"}, answer="A") for i in range(6)]
    policy = {"q0": 0.0, "q1": 0.0, "q2": 1.0, "q3": 0.0, "q4": 1.0, "q5": 0.0}  # what it solves now
    monkeypatch.setattr(miner_module, "estimate_across_ranks",
                        lambda trainer, pool, **kw: {item.id: policy[item.id] for item in pool})
    miner = miner_module.Miner(cfg, items, mining.RoundShape(blocks=1, prompts=3, repeats=1),
                               StepLog(stage="grpo_rl2", metric=None, tracker=None))
    miner.refresh(0)
    assert miner.state.rounds[0] | {"previous": None} == {
        "round": 0, "pool_pass_rate": round(2 / 6, 6), "failed": 2, "solved": 1, "from_rollouts": 0,
        "estimated": 6, "known": 6, "previous": None}
    failed = [i for i in miner.state.selections[0] if policy[i] == 0.0]
    assert len(failed) == 2
    for item in miner.state.selections[0]:  # round 0's training rollouts
        miner.state.tally.add(item, item == failed[0])
    policy[failed[0]] = 1.0  # the next estimate: one mined failure is solved now
    miner.refresh(1)
    second = miner.state.rounds[1]
    assert (second["pool_pass_rate"], second["from_rollouts"]) == (0.5, 3)
    assert second["previous"] == {"mined_failed": 2, "remeasured": 2, "flipped_to_solved": 1}
    assert miner.steps.extra["pool_pass_rate"] == 0.5
    round_1_failed = [i for i in miner.state.selections[1] if policy[i] == 0.0]
    for item in miner.state.selections[1]:  # round 1's rollouts all pass: its failures flipped
        miner.state.tally.add(item, True)
    miner.close()
    assert miner.state.rounds[2] == {
        "round": 2, "closing": True, "pool_pass_rate": miner.state.rounds[2]["pool_pass_rate"],
        "known": 6, "previous": {"mined_failed": len(round_1_failed), "remeasured": len(round_1_failed),
                                 "flipped_to_solved": len(round_1_failed)}}
    miner.close()  # once only
    assert len(miner.state.rounds) == 3
