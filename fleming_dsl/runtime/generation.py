"""Local generation from chat conversations: transformers on any machine, vLLM where installed.

`generate_chat` is the one entry point (evaluation, teachers, graders, difficulty sampling).
It returns, for each conversation, `n` completions decoded with `skip_special_tokens=True`.
torch/transformers/vllm are imported inside functions only: the compiler imports nothing heavy.

Sampling: temperature 0 is greedy (one decode, repeated `n` times, since greedy has one answer);
otherwise nucleus sampling with `num_return_sequences=n`, seeded, so a run is repeatable for a
seed and a batch size on the same hardware. With `seeds` (one per conversation) each
conversation is generated as if alone, under its own seed: transformers decodes it in a batch of
one (no padding, its own RNG stream), vLLM gives it its own `SamplingParams.seed`. Its answer
then does not depend on which other conversations share the call, which is what lets a sharded
teacher job write the same data however it is cut.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from fleming_dsl.errors import FlemingError

Conversation = list[dict[str, str]]

BACKENDS = ("transformers", "vllm")


class GenerationError(FlemingError, ValueError):
    """Arguments generation cannot use (one line for the user)."""


def check_arguments(*, n: int, temperature: float, top_p: float, max_new_tokens: int,
                    batch_size: int, backend: str, tensor_parallel: int) -> None:
    problems = []
    if n < 1:
        problems.append(f"n must be >= 1, got {n}")
    if temperature < 0:
        problems.append(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        problems.append(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        problems.append(f"batch_size must be >= 1, got {batch_size}")
    if tensor_parallel < 1:
        problems.append(f"tensor_parallel must be >= 1, got {tensor_parallel}")
    if backend not in BACKENDS:
        problems.append(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if problems:
        raise GenerationError("; ".join(problems))


# ---------------------------------------------------------------- transformers


def transformers_generate_kwargs(*, n: int, temperature: float, top_p: float,
                                 max_new_tokens: int, pad_token_id: int | None) -> dict[str, Any]:
    """Keyword arguments for `model.generate`: greedy at temperature 0, else seeded sampling."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad_token_id}
    if temperature == 0:
        # Explicit neutral values override sampling defaults in a model's generation_config.
        kwargs.update(do_sample=False, num_return_sequences=1, temperature=None, top_p=None,
                      top_k=None)
    else:
        kwargs.update(do_sample=True, num_return_sequences=n, temperature=temperature,
                      top_p=top_p, top_k=0)
    return kwargs


@functools.lru_cache(maxsize=4)
def load_transformers_model(model: str) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory or hub id, cached per process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = AutoModelForCausalLM.from_pretrained(model, dtype="auto").to(device)
    lm.eval()
    return lm, tokenizer


def chat_prompts(tokenizer: Any, conversations: list[Conversation]) -> list[str]:
    return [tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            for conv in conversations]


def _generate_transformers(model: str, conversations: list[Conversation], *, n: int,
                           temperature: float, top_p: float, max_new_tokens: int, seed: int,
                           batch_size: int, seeds: list[int] | None = None) -> list[list[str]]:
    if seeds is not None:  # one at a time, each under its own seed
        return [out for conv, own in zip(conversations, seeds, strict=True)
                for out in _generate_transformers(
                    model, [conv], n=n, temperature=temperature, top_p=top_p,
                    max_new_tokens=max_new_tokens, seed=own, batch_size=1)]
    import torch
    from tqdm.auto import tqdm
    from transformers import set_seed

    lm, tokenizer = load_transformers_model(model)
    set_seed(seed)
    kwargs = transformers_generate_kwargs(n=n, temperature=temperature, top_p=top_p,
                                          max_new_tokens=max_new_tokens,
                                          pad_token_id=tokenizer.pad_token_id)
    per_prompt = kwargs["num_return_sequences"]
    results: list[list[str]] = []
    starts = range(0, len(conversations), batch_size)
    for start in tqdm(starts, desc=f"generate ({len(conversations)} prompts)", unit="batch",
                      disable=len(starts) <= 1):
        texts = chat_prompts(tokenizer, conversations[start:start + batch_size])
        # The chat template already holds the special tokens; adding BOS again would double it.
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(lm.device)
        with torch.no_grad():
            output = lm.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1]:]  # left padding: one prompt width
        decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        for index in range(len(texts)):
            group = decoded[index * per_prompt:(index + 1) * per_prompt]
            results.append(group * n if per_prompt == 1 and n > 1 else group)
    return results


# ---------------------------------------------------------------- vllm


@dataclass(frozen=True)
class VllmRequest:
    """Everything one offline vLLM call needs, built without importing vllm."""

    llm_kwargs: dict[str, Any]  # -> vllm.LLM(**llm_kwargs)
    sampling_kwargs: dict[str, Any]  # -> vllm.SamplingParams(**sampling_kwargs)
    conversations: list[Conversation] = field(default_factory=list)
    seeds: list[int] | None = None  # one SamplingParams per conversation, each with its seed

    def sampling_params(self) -> list[dict[str, Any]] | dict[str, Any]:
        """SamplingParams keyword arguments: one set, or one per conversation."""
        if self.seeds is None:
            return self.sampling_kwargs
        return [{**self.sampling_kwargs, "seed": own} for own in self.seeds]


def build_vllm_request(model: str, conversations: list[Conversation], *, n: int = 1,
                       temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 256,
                       seed: int = 0, tensor_parallel: int = 1,
                       seeds: list[int] | None = None) -> VllmRequest:
    """The LLM constructor arguments, sampling parameters and chat batch of one vLLM call."""
    greedy = temperature == 0
    return VllmRequest(
        llm_kwargs={"model": model, "tensor_parallel_size": tensor_parallel, "seed": seed},
        sampling_kwargs={
            # vLLM would return n identical greedy strings; ask once and repeat instead.
            "n": 1 if greedy else n,
            "temperature": temperature,
            "top_p": 1.0 if greedy else top_p,
            "max_tokens": max_new_tokens,
            "seed": seed,
            "skip_special_tokens": True,
        },
        conversations=[list(conv) for conv in conversations],
        seeds=list(seeds) if seeds is not None else None,
    )


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise GenerationError(
            "backend 'vllm' needs the vllm package (pip install 'fleming-dsl[vllm]' on a GPU "
            "machine); use backend 'transformers' on CPU") from None
    return vllm


@functools.lru_cache(maxsize=2)
def _vllm_engine(model: str, tensor_parallel_size: int, seed: int) -> Any:
    return _import_vllm().LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed)


def _generate_vllm(request: VllmRequest, n: int) -> list[list[str]]:
    vllm = _import_vllm()
    engine = _vllm_engine(**request.llm_kwargs)
    kwargs = request.sampling_params()
    params = ([vllm.SamplingParams(**one) for one in kwargs] if isinstance(kwargs, list)
              else vllm.SamplingParams(**kwargs))
    outputs = engine.chat(request.conversations, params, add_generation_prompt=True,
                          use_tqdm=True)
    results = []
    for output in outputs:
        texts = [completion.text for completion in output.outputs]
        results.append(texts * n if len(texts) == 1 and n > 1 else texts)
    return results


# ---------------------------------------------------------------- entry point


def resolve_backend(backend: str, *, vllm_installed: bool | None = None, cuda: bool | None = None) -> str:
    """`auto` -> vllm where it is installed and a GPU is present, else transformers."""
    if backend != "auto":
        return backend
    if vllm_installed is None:
        import importlib.util

        vllm_installed = importlib.util.find_spec("vllm") is not None
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "vllm" if vllm_installed and cuda else "transformers"


def fit_tensor_parallel(gpus: int, attention_heads: int | None) -> int:
    """The largest tensor parallel size over `gpus` that divides the model's attention heads
    (vLLM refuses others: Qwen2.5-7B's 28 heads take 4 of 8 GPUs, not 8)."""
    if attention_heads is None:
        return gpus
    return max(d for d in range(1, gpus + 1) if gpus % d == 0 and attention_heads % d == 0)


def attention_heads(model: str) -> int | None:
    """num_attention_heads from a local model's config.json (None for a hub id or no such key)."""
    import json
    from pathlib import Path

    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    heads = json.loads(config.read_text(encoding="utf-8")).get("num_attention_heads")
    return heads if isinstance(heads, int) and heads > 0 else None


def generate_chat(model: str, conversations: list[Conversation], *, n: int = 1,
                  temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 256,
                  seed: int = 0, batch_size: int = 32, backend: str = "transformers",
                  tensor_parallel: int = 1, seeds: list[int] | None = None) -> list[list[str]]:
    """For each conversation, `n` completions of the assistant turn (special tokens removed);
    `seeds` (one per conversation) makes each independent of the others in the call."""
    check_arguments(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, backend=backend, tensor_parallel=tensor_parallel)
    if not conversations:
        return []
    if seeds is not None and len(seeds) != len(conversations):
        raise GenerationError(f"{len(seeds)} seeds for {len(conversations)} conversations")
    if backend == "vllm":
        request = build_vllm_request(model, conversations, n=n, temperature=temperature,
                                     top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                                     tensor_parallel=tensor_parallel, seeds=seeds)
        return _generate_vllm(request, n)
    return _generate_transformers(model, conversations, n=n, temperature=temperature,
                                  top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                                  batch_size=batch_size, seeds=seeds)
