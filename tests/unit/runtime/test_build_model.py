"""build_model: a tiny Qwen2 + local BPE tokenizer that later jobs load like a hub model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_fixtures import (  # noqa: F401
    build_tiny_model,
    synthetic_items,
    tiny_model,
    write_config,
)

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.jobs.build_model import corpus_texts


def test_loads_by_path_like_a_hub_model(tiny_model: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert model.config.model_type == "qwen2"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (128, 2)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<pad>"
    meta = json.loads((Path(tiny_model).parent / "base.meta.json").read_text())
    assert meta["metrics"]["vocab"] == len(tokenizer)


def test_reasoning_tags_survive_skip_special_tokens(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "<think>Fever and rash.</think><answer>C</answer>"
    ids = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert tokenizer.convert_tokens_to_ids(tag) in ids  # one token each, not split
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_template_is_chatml_with_a_generation_prompt(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    item = items.Item(id="q", question="Q?", options={"A": "x", "B": "y"}, answer="A")
    rendered = tokenizer.apply_chat_template(items.prompt_messages(item), tokenize=False,
                                             add_generation_prompt=True)
    assert rendered == (f"<|im_start|>system\n{items.SYSTEM_PROMPT}<|im_end|>\n"
                        "<|im_start|>user\nQ?\n\nA. x\nB. y<|im_end|>\n<|im_start|>assistant\n")


def test_same_seed_same_bytes_and_other_seed_other_weights(tmp_path: Path) -> None:
    a = Path(build_tiny_model(tmp_path / "a", hidden=32, seed=1, vocab=400))
    b = Path(build_tiny_model(tmp_path / "b", hidden=32, seed=1, vocab=400))
    c = Path(build_tiny_model(tmp_path / "c", hidden=32, seed=2, vocab=400))
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert not list(tmp_path.glob("*/.base.tmp-*")), "temp directory left behind"


def test_corpus_strings_are_extracted_from_csv_json_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "kg.csv").write_text("x_name,y_name\nasthma,wheezing\n", encoding="utf-8")
    (tmp_path / "d.json").write_text('{"q": ["fever", {"k": "rash"}], "n": 3}', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"question": "why"}\n\n{"answer": "B"}\n', encoding="utf-8")
    assert list(corpus_texts(tmp_path / "kg.csv")) == ["x_name", "y_name", "asthma", "wheezing"]
    assert list(corpus_texts(tmp_path / "d.json")) == ["q", "fever", "k", "rash", "n"]
    assert list(corpus_texts(tmp_path / "d.jsonl")) == ["question", "why", "answer", "B"]


def test_bad_corpus_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"ok": 1}\n{broken\n', encoding="utf-8")
    with pytest.raises(JobError, match=r"bad.jsonl:2: not valid JSON"):
        list(corpus_texts(tmp_path / "bad.jsonl"))
    config = {"kind": "build_model", "job": "m", "experiment": "t", "seed": 0,
              "meta": str(tmp_path / "m.meta.json"), "corpus": [str(tmp_path / "missing.txt")],
              "output": str(tmp_path / "m"), "arch": {"hidden": 32}}
    with pytest.raises(JobError) as err:
        run_job("build_model", write_config(tmp_path / "m.json", config))
    assert str(err.value) == f"{tmp_path / 'missing.txt'}: corpus file not found (field 'corpus')"
    assert not (tmp_path / "m").exists()
