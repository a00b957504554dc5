"""Benchmark: the cost of one stage-2 mining refresh against the pool's size, both ways, one run.

    python bench/mining.py                 # pools of 16, 64 and 256 items (a few minutes on 2 cores)
    python bench/mining.py --base 8        # pools of 8, 32 and 128

On the tiny model the tests build (the real `build_model` job), a mined GRPO stage of refresh 2,
batch 8, 4 generations (4 prompts a round), 2 samples per estimate, 16-token completions:

- **one trainer** (this project now): the stage's GRPOTrainer is built once; a refresh is
  `Miner.refresh`: fold in the previous round's own rollouts, roll out the default budget (the
  round's 4 prompts) through the trainer's engine, pick the mix. Timed for round 1 (round 0
  has no own rollouts yet: its row is printed too).
- **restart per round** (the loop this replaced, reproduced here as it ran): save the policy,
  load a plain copy with `from_pretrained`, roll the whole pool out with transformers'
  `generate`, and build a new GRPOTrainer for the round.

Each cell is the median of `--repeats` refreshes (wall seconds). The table ends with the growth
from the smallest to the largest pool of each column: the one-trainer refresh stays flat, the
restart grows with the pool.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from training_fixtures import (  # noqa: E402
    build_tiny_model,
    sample_completions,
    synthetic_items,
    train_config,
    write_items,
)

from fleming_dsl.plan.jobconfig import GrpoJob  # noqa: E402
from fleming_dsl.runtime.data import items  # noqa: E402
from fleming_dsl.runtime.train import grpo_trainer, mining, rewards, step_log  # noqa: E402
from fleming_dsl.runtime.train import trainer_args as training  # noqa: E402

MINER = {"pool": "clean", "pass_below": 0.5, "refresh": 2, "samples": 2, "solved_ratio": 1.0,
         "failed_ratio": 2.0}
ENV = {"cuda": False, "bf16_ok": False, "vllm_installed": False}


def stage(folder: Path, model: str, size: int) -> tuple[GrpoJob, list[items.Item]]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = synthetic_items(size, seed=size)
    data = write_items(folder / "pool.jsonl", rows)
    cfg = GrpoJob.model_validate(train_config("grpo", folder, model, data, max_steps=8, miner=MINER))
    return cfg, [items.Item.model_validate(r) for r in rows]


def build(cfg: GrpoJob, pool: list[items.Item]):
    recorder = step_log.RewardRecorder(rewards.build_terms(cfg.rewards, seed=cfg.seed))
    steps = step_log.StepLog(stage=cfg.job, metric=None, tracker=None)
    return grpo_trainer.build(cfg, pool=pool, tokenizer=_tokenizer(cfg), recorder=recorder, steps=steps, env=ENV)


def _tokenizer(cfg: GrpoJob):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cfg.model)


def one_trainer(cfg: GrpoJob, pool: list[items.Item], repeats: int) -> tuple[float, list[float]]:
    """Round 0's refresh, and rounds 1.. each after a round's worth of own rollouts were seen."""
    trainer = build(cfg, pool)
    miner = trainer.miner
    start = time.perf_counter()
    miner.refresh(0)
    first = time.perf_counter() - start
    times = []
    for number in range(1, repeats + 1):
        for item_id in miner.state.selections[number - 1]:  # what GRPO's rollouts of the round saw
            for ok in (True, False, False, False):
                miner.state.tally.add(item_id, ok)
        start = time.perf_counter()
        miner.refresh(number)
        times.append(time.perf_counter() - start)
    del trainer, miner
    gc.collect()
    return first, times


def restart(cfg: GrpoJob, pool: list[items.Item], repeats: int, work: Path) -> list[float]:
    """The replaced loop's per-round work: save, reload a plain copy, roll out the pool, rebuild."""
    from transformers import AutoModelForCausalLM

    trainer = build(cfg, pool)
    tokenizer = _tokenizer(cfg)
    times = []
    for number in range(repeats):
        start = time.perf_counter()
        saved = work / f"round-{number}"
        training.save_trained(trainer, tokenizer, str(saved))
        policy = AutoModelForCausalLM.from_pretrained(saved)
        outs = sample_completions(policy, tokenizer, [items.prompt_messages(i) for i in pool],
                                  n=cfg.miner.samples, temperature=cfg.training.temperature,
                                  max_new_tokens=cfg.training.max_completion_length, seed=cfg.seed + number)
        rates = {i.id: sum(mining.passed(i, t, "letter") for t in o) / len(o) for i, o in zip(pool, outs)}
        mining.select_mix(rates, {i.id: i.difficulty for i in pool}, total=4, pass_below=0.5,
                          solved_ratio=1.0, failed_ratio=2.0, seed=number)
        del policy, trainer
        gc.collect()
        trainer = build(cfg.model_copy(update={"model": str(saved)}), pool)
        times.append(time.perf_counter() - start)
    del trainer
    gc.collect()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=16, help="the smallest pool (x1; then x4, x16)")
    parser.add_argument("--repeats", type=int, default=3, help="refreshes timed per cell (median)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # both sides on one thread: the comparison, not the machine
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny")
        print(f"| pool | one trainer: round 0 (s) | one trainer: refresh (s) | restart per round (s) | ratio |")
        print("|---:|---:|---:|---:|---:|")
        medians = []
        for factor in (1, 4, 16):
            size = args.base * factor
            cfg, pool = stage(root / f"pool-{size}", model, size)
            first, refreshes = one_trainer(cfg, pool, args.repeats)
            restarts = restart(cfg, pool, args.repeats, root / f"restart-{size}")
            new, old = statistics.median(refreshes), statistics.median(restarts)
            medians.append((new, old))
            print(f"| {size} | {first:.3f} | {new:.3f} | {old:.3f} | {old / new:.1f}x |", flush=True)
        (new_1, old_1), (new_16, old_16) = medians[0], medians[-1]
        print(f"\ngrowth x1 -> x16: one trainer {new_16 / new_1:.2f}x, restart per round {old_16 / old_1:.2f}x")


if __name__ == "__main__":
    main()
