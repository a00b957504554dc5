"""sft: supervised fine-tuning on items' chat transcripts with TRL's SFTTrainer.

Trains on the assistant's tokens only, whatever the chat template: each transcript becomes
prompt-completion data (the conversation up to the last assistant message, and that message), so
TRL's completion-only loss masks every prompt token (Qwen2.5's and Qwen3's templates carry no
{% generation %} markers, which TRL's assistant_only_loss would need). Earlier assistant turns of
a multi-turn transcript are context, not targets. Checkpoints under `<output>.ckpt/`, resumes
from the last whole checkpoint a killed run left, merges LoRA adapters, and saves a plain model
to `output`.
Under several ranks (DDP or DeepSpeed ZeRO) every rank trains its share of each batch and the
main process alone writes the model.
"""

from __future__ import annotations

import logging
import time

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import SftJob
from fleming_dsl.runtime import allocator, preemption, ranks
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.train import preemption as train_preemption
from fleming_dsl.runtime.train import tracking
from fleming_dsl.runtime.train.plateau import PlateauTracker
from fleming_dsl.runtime.train import trainer_args as training

log = logging.getLogger("fleming.sft")


def training_messages(item: items.Item, path: str) -> list[dict[str, str]]:
    """The item's transcript, under the same system prompt the student sees in GRPO and eval."""
    if not item.messages:
        raise JobError(f"{path}: item {item.id!r}: field 'messages' is missing (SFT needs chat transcripts)")
    if item.messages[-1].get("role") != "assistant":
        raise JobError(f"{path}: item {item.id!r}: field 'messages' must end with an assistant message")
    messages = [dict(m) for m in item.messages]
    if messages[0].get("role") != "system":
        messages.insert(0, items.prompt_messages(item)[0])
    return messages


def prompt_completion(messages: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """A transcript as TRL prompt-completion data: the loss falls on the last assistant message."""
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def sft_config_kwargs(cfg: SftJob, *, cuda: bool, bf16_ok: bool, world: int = 1) -> dict:
    return {
        "lr_scheduler_type": "cosine",  # an sft stage's schedule unless it sets lr_scheduler_type
        **training.common_args(cfg, cuda=cuda, bf16_ok=bf16_ok, world=world),
        "max_length": cfg.training.max_length,
        "completion_only_loss": True,
        "packing": cfg.training.packing,
        "dataset_num_proc": None,
    }


def _loss_logger(plateau: PlateauTracker | None = None):
    from transformers import TrainerCallback

    class LossLogger(TrainerCallback):
        """Keeps each logged loss (the job's metrics), prints one line per logged step, and stops
        training at a loss plateau when the stage asks for one."""

        def __init__(self) -> None:
            self.losses: list[tuple[int, float]] = []
            self.plateaued = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append((state.global_step, float(logs["loss"])))
                log.info("step %d loss %.4f", state.global_step, logs["loss"])
                if plateau is not None and plateau.update(float(logs["loss"])):
                    log.info("plateau of loss at step %d: stopping", state.global_step)
                    self.plateaued = True
                    control.should_training_stop = True
            return control

    return LossLogger()


def build_trainer(cfg: SftJob, data: list[items.Item], tokenizer, callbacks: list):
    """The stage's SFTTrainer on the items' transcripts as prompt-completion rows."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [prompt_completion(training_messages(item, cfg.data)) for item in data]
    args = SFTConfig(**sft_config_kwargs(
        cfg, cuda=training.cuda_available(), bf16_ok=training.bf16_supported(), world=ranks.world_size()))
    return SFTTrainer(model=training.model_path(cfg), args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=tokenizer, peft_config=training.lora_config(cfg),
                      callbacks=[*callbacks, training.checkpoint_sealer()])


def run(cfg: SftJob, ctx: JobContext) -> None:
    from transformers import AutoTokenizer

    ranks.init(deepspeed=cfg.deepspeed_config is not None)
    if not training.cuda_available():  # a third of a tiny CPU run was the kernel zeroing pages
        allocator.keep_freed_memory()
    tracked = tracking.start(cfg)
    with ctx.timed("load"):
        data = training.load_items(cfg.data, cfg.buckets, cfg.data_source)
        tokenizer = AutoTokenizer.from_pretrained(training.model_path(cfg))
        if cfg.plateau is not None and cfg.plateau.metric != "loss":
            raise JobError(f"field 'plateau.metric': an sft stage logs only 'loss', got {cfg.plateau.metric!r}")
        losses = _loss_logger(PlateauTracker(cfg.plateau.patience, cfg.plateau.min_delta, higher_is_better=False)
                              if cfg.plateau is not None else None)
        on_signal = train_preemption.checkpoint_on_signal()
        trainer = build_trainer(cfg, data, tokenizer, [losses, on_signal])
    resume = training.resume_checkpoint(cfg, run_key=ctx.run_key)
    if resume:
        log.info("resuming from %s", resume)
    with ctx.timed("train"):
        start = time.monotonic()
        with preemption.cooperative():
            result = trainer.train(resume_from_checkpoint=resume)
        seconds = time.monotonic() - start
    train_preemption.stop_if_signalled(on_signal, trainer.args.output_dir)
    with ctx.timed("save"):
        training.save_trained(trainer, tokenizer, cfg.output)
    ctx.counts = {"items": len(data), "resumed_from": resume or "",
                  "parameters": int(trainer.model.num_parameters())}
    ctx.metrics = {
        "final_loss": losses.losses[-1][1] if losses.losses else float(result.training_loss),
        "train_loss": float(result.training_loss),
        "steps": int(result.global_step),
        "samples_per_s": float(result.metrics.get("train_samples_per_second", 0.0)),
        "train_s": round(seconds, 3),
        "stopped_by": "plateau" if losses.plateaued else "schedule",
        "loss_curve": losses.losses,
        "tracking": tracked,
    }
