"""A tiny causal LM built offline for the generation and evaluation tests.

Qwen2 config (hidden 64, 2 layers, random weights) and a byte-level BPE trained with `tokenizers`
on a few hundred lines, ChatML chat template, <think>/<answer> tags as NON-special added tokens so
they survive `skip_special_tokens=True`. Saved with `save_pretrained`, loaded by path like a hub
model. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL = ["<|im_start|>", "<|im_end|>", "<pad>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]


def corpus_lines() -> list[str]:
    organs = ["heart", "lung", "liver", "kidney", "brain", "skin", "bone", "blood"]
    findings = ["fever", "cough", "rash", "pain", "fatigue", "edema", "jaundice", "anemia"]
    lines = []
    for i in range(300):
        organ, finding = organs[i % len(organs)], findings[(i * 3) % len(findings)]
        letter = "ABCD"[i % 4]
        lines.append(f"A patient with {finding} of the {organ}. Which option is best? "
                     f"A. {organ} B. {finding} C. drug D. gene")
        lines.append(f"<think>The {finding} points to the {organ}.</think><answer>{letter}</answer>")
    return lines


def build_tiny_model(directory: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus_lines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                        pad_token="<pad>", bos_token=None)
    tokenizer.add_tokens(TAGS)  # non-special: kept by skip_special_tokens=True
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
