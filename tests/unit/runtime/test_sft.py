"""sft end to end through `run_job` on the tiny model: outputs, resume, buckets, errors, learning."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from training_fixtures import (  # noqa: F401
    sample_completions,
    synthetic_items,
    tiny_model,
    train_config,
    write_config,
    write_items,
)

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import SftJob
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.jobs.sft import sft_config_kwargs
from fleming_dsl.runtime.train.plateau import PlateauTracker
from fleming_dsl.runtime.train import trainer_args as training

FORMAT = re.compile(r"^<think>.*</think><answer>[A-D]</answer>$", re.DOTALL)


def run_sft(tmp_path: Path, model: str, rows: list[dict], **overrides) -> dict:
    data = write_items(tmp_path / "train.jsonl", rows)
    config = train_config("sft", tmp_path, model, data, **overrides)
    run_job("sft", write_config(tmp_path / "sft.json", config))
    return json.loads((tmp_path / "sft.meta.json").read_text())


def test_sft_trains_and_saves_a_plain_model(tiny_model: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    meta = run_sft(tmp_path, tiny_model, synthetic_items(48), max_steps=3)
    assert meta["metrics"]["steps"] == 3
    assert len(meta["metrics"]["loss_curve"]) == 3 and meta["metrics"]["final_loss"] > 0
    assert meta["metrics"]["samples_per_s"] > 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "sft").config.model_type == "qwen2"
    assert (tmp_path / "sft" / "tokenizer.json").is_file()


def test_buckets_select_items_by_difficulty(tiny_model: str, tmp_path: Path) -> None:
    meta = run_sft(tmp_path, tiny_model, synthetic_items(30), max_steps=1, buckets=["hard"])
    assert meta["counts"]["items"] == 10


def test_lora_adapters_are_merged_before_saving(tiny_model: str, tmp_path: Path) -> None:
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    run_sft(tmp_path, tiny_model, synthetic_items(16), max_steps=1, lora=lora)
    saved = sorted(p.name for p in (tmp_path / "sft").iterdir())
    assert "model.safetensors" in saved and "adapter_config.json" not in saved


def test_resume_continues_from_the_last_checkpoint(tiny_model: str, tmp_path: Path) -> None:
    first = run_sft(tmp_path, tiny_model, synthetic_items(64), max_steps=6, save_steps=2)
    assert first["counts"]["resumed_from"] == ""
    # as if the job was killed after checkpoint 4 and re-run as it was (same config, same inputs)
    shutil.rmtree(tmp_path / "sft.ckpt" / "checkpoint-6")
    second = run_sft(tmp_path, tiny_model, synthetic_items(64), max_steps=6, save_steps=2)
    assert second["counts"]["resumed_from"].endswith("checkpoint-4")
    assert second["metrics"]["steps"] == 6
    assert [step for step, _ in second["metrics"]["loss_curve"]] == [5, 6]
    # another budget is another run: its checkpoints are not resumed (trainer_args.resume_checkpoint)
    third = run_sft(tmp_path, tiny_model, synthetic_items(64), max_steps=4, save_steps=2)
    assert third["counts"]["resumed_from"] == "" and third["metrics"]["steps"] == 4


def test_items_without_messages_are_a_located_error(tiny_model: str, tmp_path: Path) -> None:
    with pytest.raises(JobError) as err:
        run_sft(tmp_path, tiny_model, synthetic_items(4, with_messages=False), max_steps=1)
    assert str(err.value) == (f"{tmp_path / 'train.jsonl'}: item 'syn-0-0': field 'messages' is missing "
                              "(SFT needs chat transcripts)")


def test_bad_item_row_names_line_and_field(tiny_model: str, tmp_path: Path) -> None:
    rows = synthetic_items(3)
    del rows[1]["answer"]
    with pytest.raises(JobError) as err:
        run_sft(tmp_path, tiny_model, rows, max_steps=1)
    assert str(err.value) == f"{tmp_path / 'train.jsonl'}:2: field 'answer': Field required"


def test_deepspeed_and_bf16_are_ignored_on_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = SftJob.model_validate(train_config("sft", tmp_path, "m", "d.jsonl", bf16=True,
                                                deepspeed_config="ds_zero3.json"))
    cpu = sft_config_kwargs(config, cuda=False, bf16_ok=False)
    assert (cpu["use_cpu"], cpu["bf16"], "deepspeed" in cpu) == (True, False, False)
    assert "DeepSpeed config ds_zero3.json ignored: no CUDA device" in caplog.text
    with pytest.raises(JobError, match=r"^ds_zero3.json: DeepSpeed config not found \(field 'deepspeed_config'\)$"):
        sft_config_kwargs(config, cuda=True, bf16_ok=True)
    (tmp_path / "ds.json").write_text("{}")
    gpu = sft_config_kwargs(config.model_copy(update={"deepspeed_config": str(tmp_path / "ds.json")}),
                            cuda=True, bf16_ok=True)
    assert (gpu["use_cpu"], gpu["bf16"], gpu["deepspeed"]) == (False, True, str(tmp_path / "ds.json"))
    assert training.checkpoint_dir(config) == f"{tmp_path / 'sft'}.ckpt"


@pytest.mark.slow
def test_cold_start_learns_the_answer_format(tiny_model: str, tmp_path: Path) -> None:
    """The project's "it learns" guarantee: 400 items of SFT -> >= 90% well-formed samples."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_sft(tmp_path, tiny_model, synthetic_items(400, seed=1), max_steps=None, epochs=3,
            batch_size=8, lr=3e-3)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "sft")
    held_out = [items.Item.model_validate(r) for r in synthetic_items(40, seed=555)]
    outs = sample_completions(model, tokenizer, [items.prompt_messages(i) for i in held_out],
                                     n=1, temperature=0.7, max_new_tokens=64, seed=0)
    rate = sum(bool(FORMAT.match(o[0])) for o in outs) / len(outs)
    assert rate >= 0.9, [o[0] for o in outs if not FORMAT.match(o[0])]


def test_loss_plateau_stops_when_the_loss_stops_falling() -> None:
    plateau = PlateauTracker(patience=2, min_delta=0.05, higher_is_better=False)
    assert [plateau.update(v) for v in (2.0, 1.5, 1.48, 1.47, 1.2, 1.19, 1.18)] == [
        False, False, False, True, False, False, True]


def test_sft_stops_at_a_loss_plateau(tiny_model: str, tmp_path: Path) -> None:
    """`until = plateau(loss, ...)` on an SFT stage takes effect (issue 11): with lr = 0 the loss
    cannot fall, so training stops after `patience` stale logged steps, well before max_steps."""
    meta = run_sft(tmp_path, tiny_model, synthetic_items(64), max_steps=20, lr=1e-12,
                   plateau={"metric": "loss", "patience": 2, "min_delta": 1.0})
    assert meta["metrics"]["stopped_by"] == "plateau"
    assert meta["metrics"]["steps"] == 3


def test_prompt_tokens_carry_no_loss(tiny_model: str, tmp_path: Path) -> None:
    """With a chat template without {% generation %} markers (Qwen2.5's and Qwen3's have none;
    the tiny model's markers are taken out) every token up to the assistant's answer is masked
    out of the loss, and every token of the answer is in it."""
    from transformers import AutoTokenizer

    from fleming_dsl.runtime.jobs.sft import build_trainer, training_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert "{% generation %}" in tokenizer.chat_template
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", "")
    config = SftJob.model_validate(train_config("sft", tmp_path, tiny_model, str(tmp_path / "d.jsonl"),
                                                batch_size=4))
    data = [items.Item.model_validate(r) for r in synthetic_items(4)]
    trainer = build_trainer(config, data, tokenizer, [])
    rows = [trainer.train_dataset[i] for i in range(len(data))]
    batch = trainer.data_collator(rows)  # what the loss sees: labels, -100 where no loss
    for item, row, ids, labels in zip(data, rows, batch["input_ids"].tolist(), batch["labels"].tolist()):
        messages = training_messages(item, "d.jsonl")
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True,
                                               return_dict=False)
        end = len(row["input_ids"])
        assert ids[:len(prompt)] == prompt
        assert set(labels[:len(prompt)]) == {-100}  # the system and user turns: no loss
        assert labels[len(prompt):end] == ids[len(prompt):end]  # every answer token: in the loss
        assert messages[-1]["content"] in tokenizer.decode(ids[len(prompt):end])
