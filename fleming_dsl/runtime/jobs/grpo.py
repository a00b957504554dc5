"""grpo: TRL GRPOTrainer with verifiable rewards, plateau stop, and stage-2 hard-sample mining.

Prompts are `items.prompt_messages(item)` (conversational), or a HealthBench-format dataset's own
conversations with their criteria as a `rubrics` column (graded by a rubric() reward, see
runtime/train/rubric_reward.py); each reward term of the spec is one TRL reward function with its
weight in `reward_weights`. The job orchestrates; `runtime/train/` holds the parts: the metrics
rows and plateau (`step_log`), the trainer and its callbacks (`grpo_trainer`), and, with
`cfg.miner` set, mining inside that one trainer (`miner`): every `refresh` steps the round's mix
of failed and solved pool items becomes what the trainer's sampler reads, while optimizer,
scheduler and step count run on. A killed stage resumes from its last whole checkpoint, mining
at the round it was in with the same selection.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GrpoJob
from fleming_dsl.runtime import allocator, preemption, ranks
from fleming_dsl.runtime.data import items, rubrics
from fleming_dsl.runtime.io import write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.train import dynamic_sampling, grpo_trainer, rewards, step_log, tracking
from fleming_dsl.runtime.train import preemption as train_preemption
from fleming_dsl.runtime.train import trainer_args as training
from fleming_dsl.runtime.train.plateau import PlateauTracker

log = logging.getLogger("fleming.grpo")


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


def grader_counts(terms) -> dict[str, dict[str, int]]:
    """Rubric rewards: grader calls made and served from the cache, and unreadable verdicts."""
    graders = {t.name: {**t.fn.teacher.counts(), "unreadable_verdicts": t.fn.unreadable}
               for t in terms if hasattr(t.fn, "teacher")}
    for name, seen in graders.items():
        if seen["unreadable_verdicts"]:  # they count as "not met": a grader that cannot follow
            # the rubric prompt's JSON turns the reward into noise, so say it where it shows
            log.warning("reward %s: %d of %d grader verdicts were unreadable (counted as not met)", name,
                        seen["unreadable_verdicts"], seen["teacher_calls"] + seen["cache_hits"])
    return graders


def run(cfg: GrpoJob, ctx: JobContext) -> None:
    from transformers import AutoTokenizer

    ranks.init(deepspeed=cfg.deepspeed_config is not None)
    if not training.cuda_available():  # a third of a tiny CPU run was the kernel zeroing pages
        allocator.keep_freed_memory()
    pool = load_pool(cfg)
    tracked = tracking.start(cfg)
    terms = rewards.build_terms(cfg.rewards, seed=cfg.seed)
    recorder = step_log.RewardRecorder(terms)
    tracker = PlateauTracker(cfg.plateau.patience, cfg.plateau.min_delta) if cfg.plateau else None
    steps = step_log.StepLog(stage=cfg.job, metric=step_log.plateau_metric(cfg), tracker=tracker, path=cfg.metrics)
    tokenizer = AutoTokenizer.from_pretrained(training.model_path(cfg))
    env = {"cuda": training.cuda_available(), "bf16_ok": training.bf16_supported(),
           "vllm_installed": importlib.util.find_spec("vllm") is not None}
    groups = dynamic_sampling.GroupFilterLog() if cfg.training.dynamic_sampling else None
    on_signal = train_preemption.checkpoint_on_signal()  # a time limit or preemption coming
    trainer = grpo_trainer.build(cfg, pool=pool, tokenizer=tokenizer, recorder=recorder, steps=steps,
                                 env=env, groups=groups, callbacks=[on_signal])
    miner = getattr(trainer, "miner", None)
    resume = training.resume_checkpoint(cfg, run_key=ctx.run_key)
    if resume:
        log.info("resuming from %s", resume)
        steps.resume(cfg.metrics, int(resume.rsplit("-", 1)[1]))
        if miner is not None:
            miner.load(resume)
    with ctx.timed("train"), preemption.cooperative():
        trainer.train(resume_from_checkpoint=resume)
    train_preemption.stop_if_signalled(on_signal, trainer.args.output_dir)
    if miner is not None:
        miner.close()  # the last round's rollouts: what became of its mined failures
    with ctx.timed("save"):
        training.save_trained(trainer, tokenizer, cfg.output)
    if ranks.is_main():
        write_jsonl(cfg.metrics, steps.rows)
    rows = steps.rows
    rounds: list[dict[str, Any]] = miner.state.rounds if miner is not None else []
    ctx.counts = {"items": len(pool), "steps": trainer.state.global_step,
                  "rounds": sum(not r.get("closing") for r in rounds),
                  "resumed_from": resume or "", "parameters": int(trainer.model.num_parameters())}
    graders = grader_counts(terms)
    if graders:
        ctx.counts["grader_calls"] = graders
    ctx.metrics = {
        "steps": trainer.state.global_step,
        "stopped_by": "plateau" if steps.plateaued else "max_steps",
        "reward_first": rows[0]["reward"] if rows else None,
        "reward_last": rows[-1]["reward"] if rows else None,
        "reward_mean": step_log.mean([r["reward"] for r in rows]),
        "rounds": rounds,
        "tracking": tracked,
    }
