"""Shared helpers for the training tests: synthetic items, the tiny model, job configs.

The tiny model is built once per test session (under pytest's base temp dir) by the real
`build_model` job and reused by every SFT/GRPO/mining test.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from fleming_dsl import ir
from fleming_dsl.ir import BUCKETS
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.jobs import run_job

DISEASES = [
    ("type 2 diabetes", "polyuria", "metformin"), ("asthma", "wheezing", "salbutamol"),
    ("hypertension", "headache", "amlodipine"), ("hypothyroidism", "cold intolerance", "levothyroxine"),
    ("gout", "acute toe pain", "colchicine"), ("migraine", "photophobia", "sumatriptan"),
    ("tuberculosis", "night sweats", "isoniazid"), ("heart failure", "orthopnea", "furosemide"),
    ("parkinson disease", "resting tremor", "levodopa"), ("epilepsy", "seizures", "valproate"),
    ("peptic ulcer", "epigastric pain", "omeprazole"), ("psoriasis", "scaly plaques", "methotrexate"),
]


def synthetic_items(n: int, seed: int = 0, with_messages: bool = True) -> list[dict]:
    """`n` four-option questions in the item shape, answers spread over A-D, buckets cycled."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        disease, symptom, drug = DISEASES[rng.randrange(len(DISEASES))]
        others = [d[2] for d in DISEASES if d[2] != drug]
        options = rng.sample(others, 3)
        letter = "ABCD"[rng.randrange(4)]
        options.insert("ABCD".index(letter), drug)
        item = items.Item(
            id=f"syn-{seed}-{i}", question=f"A patient with {disease} presents with {symptom}. "
            f"Which drug is first-line?", options=dict(zip("ABCD", options)), answer=letter,
            source="synthetic", difficulty=BUCKETS[i % 3],
        )
        if with_messages:
            reasoning = f"{symptom.capitalize()} suggests {disease}; {drug} treats it."
            item.messages = [
                {"role": "user", "content": items.user_message(item)},
                {"role": "assistant", "content": items.completion_text(reasoning, letter)},
            ]
        rows.append(item.model_dump(exclude_none=True))
    return rows


def write_items(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_config(path: Path, config: dict) -> str:
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def build_tiny_model(root: Path, hidden: int = 128, seed: int = 7, vocab: int = 600) -> str:
    """Run the real build_model job on a synthetic corpus; returns the model directory."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = write_items(root / "corpus.jsonl", synthetic_items(300, seed=99))
    config = {
        "kind": "build_model", "job": "base", "experiment": "test", "seed": seed,
        "meta": str(root / "base.meta.json"), "corpus": [corpus], "output": str(root / "base"),
        "arch": {"hidden": hidden, "layers": 2, "heads": 4, "kv_heads": 2, "vocab": vocab,
                 "max_position": 512},
    }
    run_job("build_model", write_config(root / "base.json", config))
    return str(root / "base")


def train_config(kind: str, root: Path, model: str, data: str, **overrides) -> dict:
    """A TrainCommon-shaped job config for `kind` (sft or grpo) writing under `root`."""
    config = {
        "kind": kind, "job": kind, "experiment": "test", "seed": 3,
        "meta": str(root / f"{kind}.meta.json"), "model": model, "data": data, "buckets": [],
        "lr": 3e-3, "epochs": None, "max_steps": 4, "batch_size": 8, "grad_accum": 1,
        "warmup_steps": 0, "bf16": False, "lora": None, "deepspeed_config": None,
        "accelerate_config": None, "logging_steps": 1, "save_steps": 500,
        "output": str(root / kind),
    }
    if kind == "sft":
        config["max_length"] = 256
    else:
        config.update({
            "rewards": [
                {"name": "correct", "function": "choice_match", "weight": 1.0, "options": {"tag": "answer"}},
                {"name": "form", "function": "regex", "weight": 0.2,
                 "options": {"pattern": "^<think>.*</think><answer>[A-D]</answer>$"}},
            ],
            "generations": 4, "beta": 0.0, "temperature": 1.0, "max_completion_length": 16,
            "use_vllm": False, "plateau": None, "miner": None, "lr": 5e-5,
            "metrics": str(root / f"{kind}.metrics.jsonl"),
        })
    config.update(overrides)
    # the stage's options go in the nested ir.Training, the job's own fields stay at the top
    training = {k: config.pop(k) for k in list(config) if k in ir.Training.model_fields}
    return {**config, "training": training}


def sample_completions(model, tokenizer, conversations: Sequence[list[dict]], *, n: int,
                       temperature: float, max_new_tokens: int, seed: int,
                       batch_size: int = 64) -> list[list[str]]:
    """`n` sampled completions per conversation from an in-memory model (skip_special_tokens): how
    the tests read what a trained model writes."""
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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model, built once per session however many test modules ask for it."""
    root = tmp_path_factory.getbasetemp() / "tiny-model"
    if (root / "base" / "config.json").is_file():
        return str(root / "base")
    return build_tiny_model(root)
