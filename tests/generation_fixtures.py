"""A tiny causal LM built offline for the generation and evaluation tests.

Built with the workflow's own `build_model` job functions (Qwen2 config, random weights, a
byte-level BPE trained with `tokenizers`, ChatML template, <think>/<answer> as NON-special added
tokens so they survive `skip_special_tokens=True`), at test size on a few hundred lines of text.
Saved with `save_pretrained`, loaded by path like a hub model. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path


def corpus_lines() -> list[str]:
    organs = ["heart", "lung", "liver", "kidney", "brain", "skin", "bone", "blood"]
    findings = ["fever", "cough", "rash", "pain", "fatigue", "edema", "jaundice", "anemia"]
    lines = []
    for i in range(300):
        organ, finding = organs[i % len(organs)], findings[(i * 3) % len(findings)]
        letter = "ABCD"[i % 4]
        lines.append(f"A patient with {finding} of the {organ}. Which option is best? "
                     f"A. {organ} B. {finding} C. drug D. gene")
        lines.append(f"<think>The {finding} points to the {organ}.</think>"
                     f"<answer>{letter}</answer>")
    return lines


def build_tiny_model(directory: Path, seed: int = 0) -> Path:
    """The workflow's own builder (jobs/build_model.py) at test size: hidden 64, vocab 400."""
    from fleming_dsl.ir import TinyArch
    from fleming_dsl.runtime.jobs.build_model import build_model, train_tokenizer

    tokenizer = train_tokenizer(corpus_lines(), vocab_size=400)
    model = build_model(TinyArch(hidden=64, layers=2, heads=4, kv_heads=2, vocab=400), tokenizer,
                        seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
