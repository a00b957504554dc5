"""The one place a GRPO stage's trainer is built: its GRPOConfig, its class and its callbacks.

`grpo_config_kwargs` is pure (testable without a trainer). `build` composes the trainer class
(TRL's GRPOTrainer, with dynamic sampling and mining where the stage asks) and the callbacks in
the order they must run: the metrics row of a step, the miner's refresh and state, any callbacks
the caller adds (time limits, requeue), and last the checkpoint sealer, which marks a checkpoint
whole only after every other callback has written into it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import VLLM_SERVER_ENV, GrpoJob
from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.data import items, rubrics
from fleming_dsl.runtime.train import dynamic_sampling, miner, mining, seeding, step_log
from fleming_dsl.runtime.train import trainer_args as training
from fleming_dsl.vocabulary import batch_problem

log = logging.getLogger("fleming.grpo")


# GrpoJob fields passed to GRPOConfig under the same name (the spec uses TRL's words)
GRPO_PASSTHROUGH = ("loss_type", "scale_rewards", "epsilon", "epsilon_high", "importance_sampling_level",
                    "top_entropy_quantile", "mask_truncated_completions", "num_iterations", "top_p",
                    "top_k", "repetition_penalty")
_VLLM_COLOCATE = ("vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "vllm_enable_sleep_mode")


def server_url(cfg: GrpoJob, environ: Mapping[str, str]) -> str:
    """The vLLM server the trainer connects to: the spec's external one, else the one the stage's
    launch script started and exported (emit/launch.py)."""
    url = cfg.training.vllm_server_base_url or environ.get(VLLM_SERVER_ENV)
    if not url:
        raise JobError(f"{cfg.job}: vllm_mode = server but no vLLM server is running: start the stage "
                       f"through its launch script (it starts one and sets {VLLM_SERVER_ENV}), "
                       "or set vllm_server_base_url")
    return url


def vllm_args(cfg: GrpoJob, *, cuda: bool, vllm_installed: bool,
              environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """vLLM rollouts (the spec's mode) only where a GPU and vllm are present; plain generate otherwise."""
    if not cfg.training.use_vllm:
        return {"use_vllm": False}
    if cuda and vllm_installed:
        out: dict[str, Any] = {"use_vllm": True, "vllm_mode": cfg.training.vllm_mode,
                               "vllm_max_model_length": cfg.training.vllm_max_model_length}
        if cfg.training.vllm_mode == "colocate":
            out.update({name: getattr(cfg.training, name) for name in _VLLM_COLOCATE})
        else:
            out.update(vllm_server_base_url=server_url(cfg, environ),
                       vllm_server_timeout=cfg.training.vllm_server_timeout)
        return out
    log.warning("%s: use_vllm requested but %s; generating with transformers (%s)", cfg.job,
                "vllm is not installed" if cuda else "no CUDA device",
                "fix: pip install vllm" if cuda else "fix: run on a GPU node, or set use_vllm = false")
    return {"use_vllm": False}


def grpo_config_kwargs(cfg: GrpoJob, *, cuda: bool, bf16_ok: bool, vllm_installed: bool,
                       world: int = 1) -> dict[str, Any]:
    problem = batch_problem(cfg.training.batch_size, cfg.training.grad_accum, cfg.training.generations, world)
    if problem:
        raise JobError(f"field 'batch_size': {problem}")
    kwargs = {
        **training.common_args(cfg, cuda=cuda, bf16_ok=bf16_ok, world=world),
        "num_generations": cfg.training.generations,
        "max_completion_length": cfg.training.max_completion_length,
        "temperature": cfg.training.temperature,
        "beta": cfg.training.beta,
        "reward_weights": [t.weight for t in cfg.rewards],
        **{name: getattr(cfg.training, name) for name in GRPO_PASSTHROUGH},
        **vllm_args(cfg, cuda=cuda, vllm_installed=vllm_installed),
    }
    return kwargs


def prompt_rows(pool: Sequence[items.Item | rubrics.RubricItem]) -> list[dict[str, Any]]:
    # `options` (texts in letter order) lets choice_match(accept = text) read a named option.
    # A rubric item (HealthBench) is its own conversation, its criteria one JSON column that a
    # rubric() reward reads (a column of nested lists would need one Arrow type across rows).
    return [{"prompt": list(item.messages), "rubrics": rubrics.criteria_json(item), "difficulty": "",
             "id": item.id} if isinstance(item, rubrics.RubricItem) else
            {"prompt": items.prompt_messages(item), "answer": item.answer,
             "options": list(item.options.values()),
             "difficulty": item.difficulty or "", "id": item.id} for item in pool]




def round_shape(cfg: GrpoJob, args) -> mining.RoundShape:
    """A mined stage's round in the sampler's terms, from the resolved GRPOConfig."""
    try:
        return mining.round_shape(cfg.miner.refresh, batch_size=args.per_device_train_batch_size,
                                  world=ranks.world_size(), grad_accum=args.gradient_accumulation_steps,
                                  generations=cfg.training.generations, steps_per_generation=args.steps_per_generation,
                                  num_iterations=args.num_iterations)
    except ValueError as err:
        raise JobError(f"field 'miner.refresh': {err}") from None


def check_miner(cfg: GrpoJob) -> None:
    if cfg.miner is None:
        return
    if cfg.training.max_steps is None:
        raise JobError("field 'max_steps': stage-2 mining needs max_steps (rounds of miner.refresh steps)")
    if cfg.miner.refresh <= 0 or cfg.miner.samples <= 0:
        raise JobError("field 'miner': refresh and samples must be positive")


def build(cfg: GrpoJob, *, pool: Sequence[items.Item | rubrics.RubricItem], tokenizer,
          recorder: step_log.RewardRecorder, steps: step_log.StepLog, env: dict[str, bool],
          groups: dynamic_sampling.GroupFilterLog | None = None, callbacks: Sequence[Any] = ()):
    """The stage's one GRPOTrainer over `pool`; a mined stage's trainer carries its `miner`."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    check_miner(cfg)
    args = GRPOConfig(**grpo_config_kwargs(cfg, **env, world=ranks.world_size()))
    trainer_cls, extra = GRPOTrainer, {}
    if groups is not None:
        trainer_cls = dynamic_sampling.trainer_class()
        extra = {"max_redraws": cfg.training.max_redraws, "group_log": groups, "draw_seed": cfg.seed}
    order = [step_log.step_callback(recorder, steps, groups)]
    mined = None
    if cfg.miner is not None:
        mined = miner.Miner(cfg, pool, round_shape(cfg, args), steps)
        recorder.side = mined.side  # step rows split the reward by mined failures and solved
        trainer_cls = miner.mined_class(trainer_cls)
        order.append(miner.callback(mined))
    order += [*callbacks, training.checkpoint_sealer()]
    with seeding.vllm_engine_seed(cfg.seed):
        trainer = trainer_cls(
            model=training.model_path(cfg), reward_funcs=[recorder.wrap(t) for t in recorder.terms], args=args,
            train_dataset=Dataset.from_list(prompt_rows(pool)), processing_class=tokenizer,
            peft_config=training.lora_config(cfg), callbacks=order, **extra,
        )
    if mined is not None:
        trainer.miner, mined.trainer = mined, trainer
    return trainer
