"""What the SFT and GRPO jobs share: data selection, TRL argument building, devices, saving.

Pure helpers build the keyword arguments of `SFTConfig` / `GRPOConfig` from a job config, so the
choices (CPU vs GPU, bf16, DeepSpeed, checkpoints) are testable without a trainer. torch, trl and
peft are imported inside functions only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import TrainCommon
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.io import atomic_output, read_jsonl

log = logging.getLogger("fleming.training")

BUCKETS = ("easy", "moderate", "hard")


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


def device_args(cfg: TrainCommon, *, cuda: bool, bf16_ok: bool) -> dict[str, Any]:
    """use_cpu / bf16 / deepspeed for the trainer config; logs what is ignored and why."""
    args: dict[str, Any] = {"use_cpu": not cuda, "bf16": False}
    if cfg.bf16:
        if bf16_ok:
            args["bf16"] = True
        else:
            log.warning("%s: bf16 requested but not supported here; training in fp32", cfg.job)
    if cfg.deepspeed_config:
        if cuda:
            if not Path(cfg.deepspeed_config).is_file():
                raise JobError(f"{cfg.deepspeed_config}: DeepSpeed config not found (field 'deepspeed_config')")
            args["deepspeed"] = cfg.deepspeed_config
        else:
            log.warning("%s: DeepSpeed config %s ignored: no CUDA device", cfg.job, cfg.deepspeed_config)
    return args


def common_args(cfg: TrainCommon, *, cuda: bool, bf16_ok: bool) -> dict[str, Any]:
    """The TrainingArguments fields both SFT and GRPO set from `TrainCommon`."""
    if cfg.epochs is None and cfg.max_steps is None:
        raise JobError("fields 'epochs' and 'max_steps': set at least one")
    return {
        "output_dir": checkpoint_dir(cfg),
        "learning_rate": cfg.lr,
        "num_train_epochs": cfg.epochs if cfg.epochs is not None else 1.0,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "warmup_steps": cfg.warmup_steps,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "report_to": [],
        "disable_tqdm": False,
        **device_args(cfg, cuda=cuda, bf16_ok=bf16_ok),
    }


def lora_config(cfg: TrainCommon, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig from the stage's `lora` block, or None."""
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type=task_type)


def resume_checkpoint(cfg: TrainCommon) -> str | None:
    """The last whole `checkpoint-N` a previous run left (torn ones are skipped, and logged)."""
    from fleming_dsl.runtime.train.checkpoints import usable_checkpoint

    return usable_checkpoint(checkpoint_dir(cfg))


def model_path(cfg: TrainCommon) -> str:
    """The starting model; a missing local directory is the user's error, not a hub lookup."""
    # A hub id is "name" or "org/name"; anything else that does not exist is a missing directory.
    looks_local = cfg.model.startswith((".", "/")) or cfg.model.count("/") > 1
    if Path(cfg.model).exists() or not looks_local:
        return cfg.model
    raise JobError(f"{cfg.model}: model directory not found (field 'model')")


def save_final(model, tokenizer, output: str) -> None:
    """Save a plain model (LoRA adapters merged in) and its tokenizer, atomically."""
    if hasattr(model, "merge_and_unload"):  # a peft model: later jobs load plain weights
        model = model.merge_and_unload()
    with atomic_output(output, directory=True) as temp:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
