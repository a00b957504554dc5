"""grpo: TRL GRPOTrainer with verifiable rewards, plateau stop, and stage-2 hard-sample mining.

Prompts are `items.prompt_messages(item)` (conversational), or a HealthBench-format dataset's own
conversations with their criteria as a `rubrics` column (graded by a rubric() reward, see
runtime/train/rubric_reward.py); each reward term of the spec is one
TRL reward function with its weight in `reward_weights`. A recorder wraps the terms so every step
writes one metrics row: total and per-term mean reward and the mean total per difficulty bucket.

With `cfg.miner` set, training runs in rounds of `refresh` steps: before each round the pool's
pass rates are re-estimated under the current policy (real sampled rollouts) and the round trains
on failures mixed with solved items at the declared ratio. Each round is a fresh GRPOTrainer
continuing from the previous round's weights (the optimizer restarts per round); the metrics
step counter and `max_steps` are global across rounds.

Under several ranks TRL splits each batch's rollouts across them and every rank scores its own
share: the recorder gathers all ranks' rewards at each step, so every rank computes the same
row (and the same plateau decision) and the main process alone writes it. Mining splits the
pool's rollouts across ranks and gathers the estimates, so all ranks train on the same mix;
between rounds the policy is gathered to full weights and saved, and the next round (and its
estimate) starts from that file.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.check.predicates import batch_problem, plateau_metrics
from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import VLLM_SERVER_ENV, GrpoJob
from fleming_dsl.runtime import allocator, preemption, ranks
from fleming_dsl.runtime.data import items, rubrics
from fleming_dsl.runtime.io import atomic_output, read_jsonl, write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.train import (
    dynamic_sampling,
    mining,
    rewards,
    seeding,
    tracking,
)
from fleming_dsl.runtime.train import preemption as train_preemption
from fleming_dsl.runtime.train import trainer_args as training

log = logging.getLogger("fleming.grpo")


def inputs(cfg: GrpoJob) -> list[str]:
    return [cfg.data]


# ---------------------------------------------------------------- metrics and stop conditions


SAMPLES_PER_STEP = 2  # completions kept per step in the metrics rows (for the report)
SAMPLE_CHARS = 600  # of each prompt (its end) and completion (its start)


@dataclass
class RewardRecorder:
    """Sees every reward call (per-sample values and each sample's bucket) between two steps."""

    terms: Sequence[rewards.RewardTerm]
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    buckets: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    texts: list[tuple[str, str]] = field(default_factory=list)  # (prompt, completion), first term's calls
    samples_per_step: int = SAMPLES_PER_STEP

    def wrap(self, term: rewards.RewardTerm):
        def reward(prompts, completions, **kwargs):
            out = [float(v) for v in term.fn(prompts, completions, **kwargs)]
            if term is self.terms[0]:
                self.texts.extend((_prompt_text(p), rewards.completion_text(c)) for p, c in zip(prompts, completions))
            self.values[term.name].extend(out)
            self.buckets[term.name].extend(str(d or "") for d in kwargs.get("difficulty") or [""] * len(out))
            return out

        reward.__name__ = term.name  # TRL logs each function as rewards/<__name__>
        return reward

    def flush(self) -> dict[str, float] | None:
        """Mean total, per-term and per-bucket reward of every rank's samples since the last
        flush (every rank must call it: the samples are gathered)."""
        mine = ({t.name: list(self.values[t.name]) for t in self.terms},
                {t.name: list(self.buckets[t.name]) for t in self.terms})
        self.values.clear()
        self.buckets.clear()
        texts, self.texts = self.texts, []
        per_term: dict[str, list[float]] = {t.name: [] for t in self.terms}
        per_bucket: dict[str, list[str]] = {t.name: [] for t in self.terms}
        for values, buckets in ranks.all_gather(mine):  # rank order: the same row on every rank
            for name in per_term:
                per_term[name].extend(values[name])
                per_bucket[name].extend(buckets[name])
        if any(not per_term[t.name] for t in self.terms):
            return None
        totals = rewards.weighted_total(per_term, self.terms)
        row = {"reward": _mean(totals)}
        row.update({f"rewards/{name}": _mean(v) for name, v in per_term.items()})
        by_bucket: dict[str, list[float]] = defaultdict(list)
        for bucket, total in zip(per_bucket[self.terms[0].name], totals):
            if bucket:
                by_bucket[bucket].append(total)
        row.update({f"bucket/{b}": _mean(v) for b, v in sorted(by_bucket.items())})
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


def _prompt_text(prompt: Any) -> str:
    """The last user message of a conversational prompt, or the prompt text."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else rewards.completion_text(prompt)


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0


class PlateauTracker:
    """Stop when `metric` has not improved on its best by more than `min_delta` for `patience` steps."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.stale = 0

    def update(self, value: float) -> bool:
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.stale >= self.patience


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
    """The metrics rows of the whole job (all rounds) and the plateau state across them."""

    stage: str
    metric: str | None
    tracker: PlateauTracker | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0  # steps done by earlier rounds
    extra: dict[str, Any] = field(default_factory=dict)  # round info for the next row
    plateaued: bool = False
    path: str | None = None  # rewritten (atomically) after every step, so a killed job keeps its rows

    def add(self, step: int, values: dict[str, float]) -> bool:
        """Record one step's row; True when the plateau says stop."""
        row = {"stage": self.stage, "step": self.offset + step, **values, **self.extra}
        self.extra = {k: v for k, v in self.extra.items() if k == "round"}  # re-estimates once
        self.rows.append(row)
        if self.path and ranks.is_main():
            write_jsonl(self.path, self.rows)
        log.info("step %d reward %.4f", row["step"], row["reward"])
        if self.tracker and self.metric in row:
            self.plateaued = self.tracker.update(row[self.metric])
        return self.plateaued


def _step_callback(recorder: RewardRecorder, steps: StepLog, groups: dynamic_sampling.GroupFilterLog | None):
    from transformers import TrainerCallback

    class StepMetrics(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            values = recorder.flush()
            if values is not None and groups is not None:
                values.update(groups.pop_row())
            if values is not None and steps.add(state.global_step, values):
                log.info("plateau of %s at step %d: stopping", steps.metric, steps.offset + state.global_step)
                control.should_training_stop = True
            return control

    return StepMetrics()


# ---------------------------------------------------------------- trainer construction


# GrpoJob fields passed to GRPOConfig under the same name (the spec uses TRL's words)
GRPO_PASSTHROUGH = ("loss_type", "scale_rewards", "epsilon", "epsilon_high", "importance_sampling_level",
                    "top_entropy_quantile", "mask_truncated_completions", "num_iterations", "top_p",
                    "top_k", "repetition_penalty")
_VLLM_COLOCATE = ("vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "vllm_enable_sleep_mode")


def server_url(cfg: GrpoJob, environ: Mapping[str, str]) -> str:
    """The vLLM server the trainer connects to: the spec's external one, else the one the stage's
    launch script started and exported (emit/launch.py)."""
    url = cfg.vllm_server_base_url or environ.get(VLLM_SERVER_ENV)
    if not url:
        raise JobError(f"{cfg.job}: vllm_mode = server but no vLLM server is running: start the stage "
                       f"through its launch script (it starts one and sets {VLLM_SERVER_ENV}), "
                       "or set vllm_server_base_url")
    return url


def vllm_args(cfg: GrpoJob, *, cuda: bool, vllm_installed: bool,
              environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """vLLM rollouts (the spec's mode) only where a GPU and vllm are present; plain generate otherwise."""
    if not cfg.use_vllm:
        return {"use_vllm": False}
    if cuda and vllm_installed:
        out: dict[str, Any] = {"use_vllm": True, "vllm_mode": cfg.vllm_mode,
                               "vllm_max_model_length": cfg.vllm_max_model_length}
        if cfg.vllm_mode == "colocate":
            out.update({name: getattr(cfg, name) for name in _VLLM_COLOCATE})
        else:
            out.update(vllm_server_base_url=server_url(cfg, environ),
                       vllm_server_timeout=cfg.vllm_server_timeout)
        return out
    log.warning("%s: use_vllm requested but %s; generating with transformers (%s)", cfg.job,
                "vllm is not installed" if cuda else "no CUDA device",
                "fix: pip install vllm" if cuda else "fix: run on a GPU node, or set use_vllm = false")
    return {"use_vllm": False}


def grpo_config_kwargs(cfg: GrpoJob, *, cuda: bool, bf16_ok: bool, vllm_installed: bool,
                       max_steps: int | None = None, output_dir: str | None = None,
                       world: int = 1) -> dict[str, Any]:
    problem = batch_problem(cfg.batch_size, cfg.grad_accum, cfg.generations, world)
    if problem:
        raise JobError(f"field 'batch_size': {problem}")
    kwargs = {
        **training.common_args(cfg, cuda=cuda, bf16_ok=bf16_ok, world=world),
        "num_generations": cfg.generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "beta": cfg.beta,
        "reward_weights": [t.weight for t in cfg.rewards],
        **{name: getattr(cfg, name) for name in GRPO_PASSTHROUGH},
        **vllm_args(cfg, cuda=cuda, vllm_installed=vllm_installed),
    }
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if output_dir is not None:
        kwargs["output_dir"] = output_dir
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


def load_pool(cfg: GrpoJob) -> list[items.Item] | list[rubrics.RubricItem]:
    """The stage's prompts: items, or the rows of a HealthBench-format dataset (graded by a
    rubric() reward; `fleming check` keeps buckets and mining off such data)."""
    source = cfg.data_source
    if source is None or source.format != "healthbench":
        return training.load_items(cfg.data, cfg.buckets, source)
    if cfg.miner is not None or cfg.buckets:
        raise JobError(f"{source.path}: HealthBench rows have no answer to mine or bucket by "
                       "(fields 'miner', 'buckets')")
    if any(t.function == "choice_match" for t in cfg.rewards):
        raise JobError(f"{source.path}: HealthBench rows have no options for choice_match to grade "
                       "(field 'rewards'; grade them with a rubric() reward)")
    pool = rubrics.load_rubric_items(source.path)
    return pool[:source.limit] if source.limit is not None else pool


@dataclass
class Setup:
    """What every round of the job shares."""

    cfg: GrpoJob
    tokenizer: Any
    funcs: list
    recorder: RewardRecorder
    steps: StepLog
    env: dict[str, bool]
    groups: dynamic_sampling.GroupFilterLog | None = None  # set when the stage uses dynamic sampling
    parameters: int = 0  # of the policy, recorded for `fleming cost`


def _train(setup: Setup, model, pool: Sequence[items.Item], *, max_steps: int | None = None,
           output_dir: str | None = None, resume: str | None = None):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(**grpo_config_kwargs(setup.cfg, **setup.env, max_steps=max_steps, output_dir=output_dir,
                                           world=ranks.world_size()))
    trainer_cls, extra = GRPOTrainer, {}
    if setup.groups is not None:
        trainer_cls = dynamic_sampling.trainer_class()
        extra = {"max_redraws": setup.cfg.max_redraws, "group_log": setup.groups, "draw_seed": setup.cfg.seed}
    on_signal = train_preemption.checkpoint_on_signal()
    with seeding.vllm_engine_seed(setup.cfg.seed):
        trainer = trainer_cls(
            model=model, reward_funcs=setup.funcs, args=args, train_dataset=Dataset.from_list(prompt_rows(pool)),
            processing_class=setup.tokenizer, peft_config=training.lora_config(setup.cfg),
            callbacks=[_step_callback(setup.recorder, setup.steps, setup.groups), training.checkpoint_sealer(),
                       on_signal],
            **extra,
        )
    setup.parameters = int(trainer.model.num_parameters())
    with preemption.cooperative():
        trainer.train(resume_from_checkpoint=resume)
    train_preemption.stop_if_signalled(on_signal, args.output_dir)
    return trainer


def _release(trainer) -> None:
    """Drop a finished round's trainer (and its DeepSpeed engine) before the next one starts."""
    trainer.accelerator.free_memory()
    del trainer
    gc.collect()


# ---------------------------------------------------------------- the job


def rows_before(path: str, step: int) -> list[dict[str, Any]]:
    """Metrics rows a killed run wrote up to the checkpoint it is resumed from."""
    if not os.path.isfile(path):
        return []
    return [row for row in read_jsonl(path) if row.get("step", 0) <= step]



def mining_accept(cfg: GrpoJob) -> str:
    """Mining grades rollouts as the stage's correctness reward does: by option text too when
    one of its choice_match terms accepts text."""
    accepts = {t.options.get("accept", "letter") for t in cfg.rewards if t.function == "choice_match"}
    return "text" if "text" in accepts else "letter"


def _run_mining(setup: Setup, pool: list[items.Item], ctx: JobContext):
    cfg, miner = setup.cfg, setup.cfg.miner
    if cfg.max_steps is None:
        raise JobError("field 'max_steps': stage-2 mining needs max_steps (rounds of miner.refresh steps)")
    if miner.refresh <= 0 or miner.samples <= 0:
        raise JobError("field 'miner': refresh and samples must be positive")
    by_id = {item.id: item for item in pool}
    difficulty = {item.id: item.difficulty for item in pool}
    model = training.model_path(cfg)  # each round starts from the previous round's saved weights
    rounds = []
    rates: dict[str, float] = {}  # each item's latest estimate (items never estimated: absent)
    last_round: dict[str, int] = {}
    for number in range(math.ceil(cfg.max_steps / miner.refresh)):
        if setup.steps.plateaued or setup.steps.offset >= cfg.max_steps:
            break
        chosen = mining.to_estimate([item.id for item in pool], rates, last_round,
                                    miner.estimate, pass_below=miner.pass_below,
                                    seed=cfg.seed + number)
        with ctx.timed("mining"):
            policy = training.load_plain_model(model)
            rates.update(mining.estimate_pass_rates_across_ranks(
                policy, setup.tokenizer, [by_id[i] for i in chosen], samples=miner.samples,
                temperature=cfg.temperature, max_new_tokens=cfg.max_completion_length,
                seed=cfg.seed + number, accept=mining_accept(cfg)))
            del policy
        last_round.update(dict.fromkeys(chosen, number))
        steps = min(miner.refresh, cfg.max_steps - setup.steps.offset)
        want = mining.prompts_per_round(steps, cfg.batch_size * ranks.world_size(), cfg.grad_accum,
                                        cfg.generations)
        mix = mining.select_mix(rates, difficulty, total=min(want, len(pool)), pass_below=miner.pass_below,
                                solved_ratio=miner.solved_ratio, failed_ratio=miner.failed_ratio,
                                seed=cfg.seed + number)
        pool_pass = round(sum(rates.values()) / len(rates), 6)
        log.info("round %d: pool pass rate %.3f, mined %d failed + %d solved", number, pool_pass,
                 mix.failed, mix.solved)
        setup.steps.extra = {"round": number, "pool_pass_rate": pool_pass,
                             "mined": {"failed": mix.failed, "solved": mix.solved},
                             "estimated": len(chosen), "known": len(rates)}
        rounds.append({"round": number, "pool_pass_rate": pool_pass, "failed": mix.failed,
                       "solved": mix.solved, "estimated": len(chosen), "known": len(rates)})
        round_dir = f"{training.checkpoint_dir(cfg)}/round-{number}"
        with ctx.timed("train"):
            trainer = _train(setup, model, [by_id[i] for i in mix.ids], max_steps=steps,
                             output_dir=round_dir)
        setup.steps.offset += trainer.state.global_step
        last = setup.steps.plateaued or setup.steps.offset >= cfg.max_steps
        model = cfg.output if last else f"{round_dir}/model"
        with ctx.timed("save"):
            training.save_trained(trainer, setup.tokenizer, model)
        _release(trainer)
    if model != cfg.output:  # rounds ran out before max_steps: the last round's model is the output
        if ranks.is_main():
            with atomic_output(cfg.output, directory=True) as temp:
                shutil.copytree(model, temp, dirs_exist_ok=True)
        ranks.barrier()
    return rounds


def run(cfg: GrpoJob, ctx: JobContext) -> None:
    from transformers import AutoTokenizer

    ranks.init(deepspeed=cfg.deepspeed_config is not None)
    if not training.cuda_available():  # a third of a tiny CPU run was the kernel zeroing pages
        allocator.keep_freed_memory()
    pool = load_pool(cfg)
    tracked = tracking.start(cfg)
    terms = rewards.build_terms(cfg.rewards, seed=cfg.seed)
    recorder = RewardRecorder(terms)
    metric = plateau_metric(cfg)
    tracker = PlateauTracker(cfg.plateau.patience, cfg.plateau.min_delta) if cfg.plateau else None
    setup = Setup(
        cfg=cfg, tokenizer=AutoTokenizer.from_pretrained(training.model_path(cfg)),
        funcs=[recorder.wrap(t) for t in terms], recorder=recorder,
        steps=StepLog(stage=cfg.job, metric=metric, tracker=tracker, path=cfg.metrics),
        env={"cuda": training.cuda_available(), "bf16_ok": training.bf16_supported(),
             "vllm_installed": importlib.util.find_spec("vllm") is not None},
        groups=dynamic_sampling.GroupFilterLog() if cfg.dynamic_sampling else None,
    )
    rounds: list[dict[str, Any]] = []
    resume = None
    if cfg.miner is not None:
        rounds = _run_mining(setup, pool, ctx)
    else:
        resume = training.resume_checkpoint(cfg)
        if resume:
            setup.steps.rows = rows_before(cfg.metrics, int(resume.rsplit("-", 1)[1]))
            for row in setup.steps.rows:  # the plateau sees the history it would have seen
                if tracker and metric in row:
                    tracker.update(row[metric])
        with ctx.timed("train"):
            trainer = _train(setup, training.model_path(cfg), pool, resume=resume)
        setup.steps.offset = trainer.state.global_step
        with ctx.timed("save"):
            training.save_trained(trainer, setup.tokenizer, cfg.output)
    if ranks.is_main():
        write_jsonl(cfg.metrics, setup.steps.rows)
    rows = setup.steps.rows
    ctx.counts = {"items": len(pool), "steps": setup.steps.offset, "rounds": len(rounds),
                  "resumed_from": resume or "", "parameters": setup.parameters}
    graders = {t.name: {**t.fn.teacher.counts(), "unreadable_verdicts": t.fn.unreadable}
               for t in terms if hasattr(t.fn, "teacher")}
    if graders:  # rubric rewards: grader calls made and served from the cache
        ctx.counts["grader_calls"] = graders
    for name, seen in graders.items():
        if seen["unreadable_verdicts"]:  # they count as "not met": a grader that cannot follow
            # the rubric prompt's JSON turns the reward into noise, so say it where it shows
            log.warning("reward %s: %d of %d grader verdicts were unreadable (counted as not met)", name,
                        seen["unreadable_verdicts"], seen["teacher_calls"] + seen["cache_hits"])
    ctx.metrics = {
        "steps": setup.steps.offset,
        "stopped_by": "plateau" if setup.steps.plateaued else "max_steps",
        "reward_first": rows[0]["reward"] if rows else None,
        "reward_last": rows[-1]["reward"] if rows else None,
        "reward_mean": _mean([r["reward"] for r in rows]),
        "rounds": rounds,
        "tracking": tracked,
    }
