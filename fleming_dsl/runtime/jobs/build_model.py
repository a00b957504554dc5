"""build_model: a tiny Qwen2-style causal LM with random weights and a locally trained BPE tokenizer.

The result is saved with `save_pretrained` so every later job loads it by path exactly as it
would load a hub model. No network: the tokenizer is trained with `tokenizers` on the job's
corpus files (any text: CSV, JSON, JSONL or plain), plus the prompt text the student will see.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import BuildModelJob
from fleming_dsl.runtime.data import items
from fleming_dsl.runtime.io import atomic_output
from fleming_dsl.runtime.jobs.context import JobContext

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<pad>")
# Added as NON-special tokens: decoding with skip_special_tokens=True keeps them, and the
# format/answer rewards and evaluation read them back from decoded text.
REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# ChatML. The {% generation %} markers let SFT train on assistant tokens only
# (`assistant_only_loss`); they render to nothing otherwise.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed JSON value (keys included: they are text too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def corpus_texts(path: str | Path) -> Iterator[str]:
    """The text of one corpus file, by extension; unknown extensions are read as plain text."""
    path = Path(path)
    try:
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            with open(path, encoding="utf-8", newline="") as handle:
                for row in csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","):
                    yield from (cell for cell in row if cell)
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            yield from _strings(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise JobError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        elif suffix == ".json":
            try:
                yield from _strings(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as err:
                raise JobError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        else:
            yield from path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise JobError(f"{path}: corpus file not found (field 'corpus')") from None
    except UnicodeDecodeError:
        raise JobError(f"{path}: corpus file is not UTF-8 text (field 'corpus')") from None


def _scaffold_texts() -> list[str]:
    """Text the model will always see: the system prompt, chat roles and the answer shape."""
    shapes = [items.completion_text("reasoning", letter) for letter in "ABCDEFGHIJ"]
    return [items.SYSTEM_PROMPT, "system\nuser\nassistant\n", *shapes]


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML template and reasoning tags."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    # The normaliser and pre-tokeniser are exactly Qwen2Tokenizer's: AutoTokenizer picks that class
    # from the model config (model_type "qwen2") and re-imposes them when a later job loads the
    # directory, so training under anything else would tokenise differently after reload.
    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=None, eos_token="<|im_end|>", pad_token="<pad>",
        unk_token=None, additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.add_tokens(list(REASONING_TOKENS), special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"  # generation batches pad on the left
    return tokenizer


def build_model(arch, tokenizer, seed: int):
    """A Qwen2ForCausalLM with seeded random weights sized for `tokenizer`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if arch.hidden % arch.heads or arch.heads % arch.kv_heads:
        raise JobError(f"field 'arch': hidden ({arch.hidden}) must divide by heads ({arch.heads}) "
                       f"and heads by kv_heads ({arch.kv_heads})")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=arch.hidden, intermediate_size=arch.hidden * 4,
        num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
        num_key_value_heads=arch.kv_heads, max_position_embeddings=arch.max_position,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return model


def run(cfg: BuildModelJob, ctx: JobContext) -> None:
    with ctx.timed("corpus"):
        texts = _scaffold_texts()
        for path in cfg.corpus:
            texts.extend(corpus_texts(path))
    with ctx.timed("tokenizer"):
        tokenizer = train_tokenizer(texts, cfg.arch.vocab)
    with ctx.timed("model"):
        model = build_model(cfg.arch, tokenizer, cfg.seed)
        with atomic_output(cfg.output, directory=True) as temp:
            model.save_pretrained(temp)
            tokenizer.save_pretrained(temp)
    ctx.counts = {"corpus_files": len(cfg.corpus), "corpus_strings": len(texts)}
    ctx.metrics = {"vocab": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}
