"""Local generation: the transformers path on a tiny offline model, the vLLM call shape on CPU."""

from __future__ import annotations

import sys
import types

import pytest
from generation_fixtures import build_tiny_model

from fleming_dsl.runtime import generation
from fleming_dsl.runtime.generation import (
    GenerationError,
    build_vllm_request,
    generate_chat,
    transformers_generate_kwargs,
)

CONVERSATIONS = [
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "A patient with fever of the lung. Which option is best?"}],
    [{"role": "user", "content": "Rash?"}],  # a shorter prompt: exercises left padding
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-lm") / "model"))


def test_greedy_returns_n_identical_completions_per_conversation(tiny_model: str) -> None:
    out = generate_chat(tiny_model, CONVERSATIONS, n=3, max_new_tokens=8)
    assert len(out) == 2 and all(len(group) == 3 for group in out)
    assert all(len(set(group)) == 1 for group in out)
    assert all("<|im_end|>" not in text and "<pad>" not in text for group in out for text in group)


def test_greedy_does_not_depend_on_batching(tiny_model: str) -> None:
    together = generate_chat(tiny_model, CONVERSATIONS, max_new_tokens=8, batch_size=2)
    alone = generate_chat(tiny_model, CONVERSATIONS, max_new_tokens=8, batch_size=1)
    assert together == alone


def test_sampling_is_seeded(tiny_model: str) -> None:
    first = generate_chat(tiny_model, CONVERSATIONS, n=4, temperature=1.0, seed=3,
                          max_new_tokens=10)
    again = generate_chat(tiny_model, CONVERSATIONS, n=4, temperature=1.0, seed=3,
                          max_new_tokens=10)
    other = generate_chat(tiny_model, CONVERSATIONS, n=4, temperature=1.0, seed=4,
                          max_new_tokens=10)
    assert first == again
    assert first != other
    assert all(len(group) == 4 for group in first)
    assert len(set(first[0])) > 1  # random weights at temperature 1: the samples differ


def test_answer_tags_survive_decoding(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer("<think>x</think><answer>B</answer><|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>x</think><answer>B</answer>"


def test_models_are_cached_per_process(tiny_model: str) -> None:
    generate_chat(tiny_model, CONVERSATIONS[:1], max_new_tokens=2)
    loaded = generation.load_transformers_model(tiny_model)
    assert generation.load_transformers_model(tiny_model) is loaded


def test_empty_batch_needs_no_model() -> None:
    assert generate_chat("no/such/model", []) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "n must be >= 1, got 0"),
    ({"temperature": -0.1}, "temperature must be >= 0, got -0.1"),
    ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
    ({"backend": "onnx"}, "backend must be one of transformers, vllm, got 'onnx'"),
])
def test_bad_arguments_are_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(GenerationError) as err:
        generate_chat("unused", CONVERSATIONS, **kwargs)
    assert str(err.value) == message


def test_generate_kwargs_greedy_and_sampling() -> None:
    greedy = transformers_generate_kwargs(n=4, temperature=0.0, top_p=0.9, max_new_tokens=16,
                                          pad_token_id=2)
    assert greedy["do_sample"] is False and greedy["num_return_sequences"] == 1
    sampled = transformers_generate_kwargs(n=4, temperature=0.7, top_p=0.9, max_new_tokens=16,
                                           pad_token_id=2)
    assert sampled == {"max_new_tokens": 16, "pad_token_id": 2, "do_sample": True,
                       "num_return_sequences": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 0}


# ---------------------------------------------------------------- vllm, with a fake module


def test_build_vllm_request() -> None:
    request = build_vllm_request("org/model", CONVERSATIONS, n=8, temperature=0.6, top_p=0.95,
                                 max_new_tokens=128, seed=11, tensor_parallel=4)
    assert request.llm_kwargs == {"model": "org/model", "tensor_parallel_size": 4, "seed": 11}
    assert request.sampling_kwargs == {"n": 8, "temperature": 0.6, "top_p": 0.95,
                                       "max_tokens": 128, "seed": 11, "skip_special_tokens": True}
    assert request.conversations == CONVERSATIONS
    greedy = build_vllm_request("m", CONVERSATIONS, n=8, temperature=0.0, top_p=0.5)
    assert greedy.sampling_kwargs["n"] == 1 and greedy.sampling_kwargs["top_p"] == 1.0


class _FakeLLM:
    calls: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        _FakeLLM.calls.append(("LLM", kwargs))

    def chat(self, messages, params, **kwargs):
        _FakeLLM.calls.append(("chat", messages, params, kwargs))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"{i}:{j}")
                                               for j in range(params["n"])])
                for i in range(len(messages))]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list:
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM
    module.SamplingParams = lambda **kwargs: dict(kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    generation._vllm_engine.cache_clear()
    _FakeLLM.calls = []
    yield _FakeLLM.calls
    generation._vllm_engine.cache_clear()


def test_vllm_backend_call_shape(fake_vllm: list) -> None:
    out = generate_chat("org/model", CONVERSATIONS, n=2, temperature=0.7, top_p=0.9,
                        max_new_tokens=32, seed=5, backend="vllm", tensor_parallel=2)
    assert out == [["0:0", "0:1"], ["1:0", "1:1"]]
    (_, llm_kwargs), (_, messages, params, chat_kwargs) = fake_vllm
    assert llm_kwargs == {"model": "org/model", "tensor_parallel_size": 2, "seed": 5}
    assert messages == CONVERSATIONS
    assert params == {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 32, "seed": 5,
                      "skip_special_tokens": True}
    assert chat_kwargs["add_generation_prompt"] is True


def test_vllm_greedy_repeats_the_single_completion(fake_vllm: list) -> None:
    out = generate_chat("m", CONVERSATIONS[:1], n=3, backend="vllm")
    assert out == [["0:0", "0:0", "0:0"]]


def test_vllm_engine_is_reused(fake_vllm: list) -> None:
    generate_chat("m", CONVERSATIONS, backend="vllm")
    generate_chat("m", CONVERSATIONS, backend="vllm")
    assert [call[0] for call in fake_vllm] == ["LLM", "chat", "chat"]


def test_vllm_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    generation._vllm_engine.cache_clear()
    with pytest.raises(GenerationError, match="backend 'vllm' needs the vllm package"):
        generate_chat("m", CONVERSATIONS, backend="vllm")
