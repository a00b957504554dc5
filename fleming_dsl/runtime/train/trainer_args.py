"""What the SFT and GRPO jobs share: data selection, TRL argument building, devices, saving.

Pure helpers build the keyword arguments of `SFTConfig` / `GRPOConfig` from a job config, so the
choices (CPU vs GPU, bf16, DeepSpeed, checkpoints) are testable without a trainer. torch, trl and
peft are imported inside functions only.

Under several ranks (see `fleming_dsl.runtime.ranks`) every rank takes part in each checkpoint
(DeepSpeed writes one shard per rank) and in gathering the final weights; only the main process
writes the final model, once, atomically. A checkpoint counts only once every rank has finished
it: the main process then writes `COMPLETE_MARKER` into it, and resuming skips checkpoints
without one (a rank killed mid-save leaves such a folder).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import TrainCommon
from fleming_dsl.runtime import ranks
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.io import atomic_output, read_jsonl
from fleming_dsl.runtime.train import tracking

log = logging.getLogger("fleming.training")

COMPLETE_MARKER = "fleming-checkpoint-complete"
# Beside the checkpoints: which config and inputs they were trained from (JobContext.run_key)
RUN_KEY_FILE = "run-key"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(cfg: TrainCommon) -> str:
    """Checkpoints live beside the output while training, so a killed job can resume."""
    return f"{cfg.output}.ckpt"


def load_items(path: str, buckets: tuple[str, ...] = (), source: Any = None) -> list[items.Item]:
    """The items of an item JSONL, keeping only `buckets` (by `difficulty`) when given; a declared
    dataset (`source`: its format, split and limit) is read by its format's loader."""
    if not Path(path).is_file():
        raise JobError(f"{path}: training data not found (field 'data')")
    if source is not None:
        from fleming_dsl.runtime.data.formats import load_source

        return load_source(source)
    out = []
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            item = items.Item.model_validate(row)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise JobError(f"{path}:{number}: field '{field}': {first['msg']}") from None
        if not buckets or item.difficulty in buckets:
            out.append(item)
    if not out:
        which = f" in buckets {list(buckets)}" if buckets else ""
        raise JobError(f"{path}: no training items{which} (field 'buckets')")
    return out


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return False  # CPU bf16 autocast works but is slow and changes numerics: never implicitly


def device_args(cfg: TrainCommon, *, cuda: bool, bf16_ok: bool, world: int = 1) -> dict[str, Any]:
    """use_cpu / bf16 / deepspeed / ddp_backend for the trainer config; logs what is ignored and why.

    DeepSpeed runs on GPUs, and on CPU when the job has several ranks (ZeRO over gloo); a single
    CPU process has nothing to shard and trains plainly.
    """
    args: dict[str, Any] = {"use_cpu": not cuda, "bf16": False}
    if cfg.training.bf16:
        if bf16_ok:
            args["bf16"] = True
        else:
            log.warning("%s: bf16 requested but not supported here; training in fp32", cfg.job)
    if cfg.deepspeed_config:
        if cuda or world > 1:
            if not Path(cfg.deepspeed_config).is_file():
                raise JobError(f"{cfg.deepspeed_config}: DeepSpeed config not found (field 'deepspeed_config')")
            args["deepspeed"] = cfg.deepspeed_config
        else:
            log.warning("%s: DeepSpeed config %s ignored: no CUDA device", cfg.job, cfg.deepspeed_config)
    if not cuda and world > 1:
        args["ddp_backend"] = "gloo"  # NCCL needs GPUs
    return args


def common_args(cfg: TrainCommon, *, cuda: bool, bf16_ok: bool, world: int = 1) -> dict[str, Any]:
    """The TrainingArguments fields both SFT and GRPO set from `TrainCommon`."""
    if cfg.training.epochs is None and cfg.training.max_steps is None:
        raise JobError("fields 'epochs' and 'max_steps': set at least one")
    return {
        "output_dir": checkpoint_dir(cfg),
        "learning_rate": cfg.training.lr,
        "num_train_epochs": cfg.training.epochs if cfg.training.epochs is not None else 1.0,
        "max_steps": cfg.training.max_steps if cfg.training.max_steps is not None else -1,
        "per_device_train_batch_size": cfg.training.batch_size,
        "gradient_accumulation_steps": cfg.training.grad_accum,
        # transformers 5 reads a float in [0, 1) as a fraction of all steps (no warmup_ratio)
        "warmup_steps": cfg.training.warmup_ratio if cfg.training.warmup_ratio is not None else cfg.training.warmup_steps,
        "weight_decay": cfg.training.weight_decay,
        "max_grad_norm": cfg.training.max_grad_norm,
        # transformers 5.24 names it activation_checkpointing (gradient_checkpointing is deprecated)
        "activation_checkpointing": cfg.training.gradient_checkpointing,
        **({"lr_scheduler_type": cfg.training.lr_scheduler_type} if cfg.training.lr_scheduler_type else {}),
        **dict(cfg.training.trl),  # checked against TRL's field names, and kept off the ones set here
        "logging_steps": cfg.training.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.training.save_steps,
        "save_total_limit": 2,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        **tracking.report_args(cfg),
        "disable_tqdm": False,
        **device_args(cfg, cuda=cuda, bf16_ok=bf16_ok, world=world),
    }


def lora_config(cfg: TrainCommon, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig from the stage's `lora` block, or None."""
    if cfg.training.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.training.lora.r, lora_alpha=cfg.training.lora.alpha, lora_dropout=cfg.training.lora.dropout,
                      target_modules=list(cfg.training.lora.target_modules), task_type=task_type)


def complete_checkpoints(folder: str | Path) -> list[Path]:
    """`checkpoint-N` folders every rank finished (they hold COMPLETE_MARKER), by step."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _CHECKPOINT.match(p.name)) and p.is_dir() and (p / COMPLETE_MARKER).is_file()]
    return [p for _, p in sorted(found)]


def resume_checkpoint(cfg: TrainCommon, folder: str | None = None,
                      run_key: Callable[[], str] | None = None) -> str | None:
    """The last whole `checkpoint-N` a previous run left, if any; every rank must call it.

    With `run_key` (the job's config and input hashes, `JobContext.run_key`), checkpoints a run
    with another key left are removed, not resumed: after an upstream stage or the config
    changed, Snakemake re-runs the job, and resuming would finish the old run's training instead
    of starting the new one. Only the main process computes the key (it hashes the inputs, which
    its record needs anyway) and decides; the others see the folder after the barrier.

    Whole means sealed by every rank (`checkpoint_sealer`) and with weight files that read back
    whole (`checkpoints.checkpoint_problem`): a torn one is passed over, and the log says so.

    Checkpoint folders without the marker (a run killed while saving) are removed by the main
    process once every rank has looked, so the trainer never mistakes one for a checkpoint.
    """
    from fleming_dsl.runtime.train.checkpoints import checkpoint_problem

    folder = folder or checkpoint_dir(cfg)
    if ranks.is_main() and run_key is not None:
        key, key_file = run_key(), Path(folder) / RUN_KEY_FILE
        written_for = key_file.read_text(encoding="utf-8").strip() if key_file.is_file() else None
        if complete_checkpoints(folder) and written_for != key:
            log.warning("checkpoints under %s were written for another config or other inputs: "
                        "training from the start", folder)
            shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)
        key_file.write_text(key + "\n", encoding="utf-8")
    ranks.barrier()
    whole = complete_checkpoints(folder)
    last = None
    for path in reversed(whole):  # sealed, but a weight file may still be torn on disk
        problem = checkpoint_problem(path)
        if problem is None:
            last = path
            break
        log.warning("checkpoint %s is torn (%s): falling back to an earlier one", path, problem)
    if whole and last is None:
        log.warning("no usable checkpoint under %s: training from the start", folder)
    ranks.barrier()
    if ranks.is_main() and Path(folder).is_dir():
        for path in Path(folder).iterdir():
            if _CHECKPOINT.match(path.name) and path.is_dir() and not (path / COMPLETE_MARKER).is_file():
                log.warning("removing incomplete checkpoint %s", path)
                shutil.rmtree(path, ignore_errors=True)
    ranks.barrier()
    return str(last) if last else None


def checkpoint_sealer():
    """A TrainerCallback that marks a checkpoint complete once every rank has saved its part."""
    from transformers import TrainerCallback

    class SealCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            ranks.barrier()  # DeepSpeed: every rank has written its shards and states
            if ranks.is_main():
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    (path / COMPLETE_MARKER).write_text(f"{state.global_step}\n", encoding="utf-8")
            ranks.barrier()
            return control

    return SealCheckpoint()


def model_path(cfg: TrainCommon) -> str:
    """The starting model; a missing local directory is the user's error, not a hub lookup."""
    # A hub id is "name" or "org/name"; anything else that does not exist is a missing directory.
    looks_local = cfg.model.startswith((".", "/")) or cfg.model.count("/") > 1
    if Path(cfg.model).exists() or not looks_local:
        return cfg.model
    raise JobError(f"{cfg.model}: model directory not found (field 'model')")


def _zero3(trainer) -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(trainer.is_deepspeed_enabled and is_deepspeed_zero3_enabled())


@contextlib.contextmanager
def _full_parameters(trainer, model) -> Iterator[None]:
    """Under ZeRO-3, every parameter gathered whole on every rank for the block (a collective)."""
    if _zero3(trainer):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            yield
    else:
        yield


def _write_model(model, tokenizer, output: str, state_dict=None) -> None:
    with atomic_output(output, directory=True) as temp:
        model.save_pretrained(temp, state_dict=state_dict)
        tokenizer.save_pretrained(temp)


def save_trained(trainer, tokenizer, output: str) -> None:
    """Write the trained model once as plain full weights (LoRA merged), atomically.

    Every rank must call it: under ZeRO-3 each rank holds a slice of every parameter and the
    gather is a collective. Only the main process writes; the others wait until it has.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # a peft model: later jobs load plain weights
        with _full_parameters(trainer, model):
            if ranks.is_main():
                _write_model(model.merge_and_unload(), tokenizer, output)
    else:
        # under ZeRO-3 accelerate consolidates the shards on the main process (stage3_gather_16bit_
        # weights_on_model_save); elsewhere every rank holds the whole model already
        state = (trainer.accelerator.get_state_dict(trainer.model_wrapped)
                 if _zero3(trainer) else None)
        if ranks.is_main():
            _write_model(model, tokenizer, output, state_dict=state)
    ranks.barrier()
