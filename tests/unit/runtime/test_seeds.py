"""Seeds everywhere: the tiny SFT (with a LoRA adapter, initialised after the seed is set) and the
tiny GRPO (rollout sampling, dynamic-sampling redraws) give bit-identical weights and metrics when
run twice on CPU, and a different seed gives different rollouts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from training_fixtures import synthetic_items, tiny_model, train_config, write_config, write_items  # noqa: F401

from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime.train import seeding

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
VARYING = [{"name": "has_e", "function": "regex", "weight": 1.0, "options": {"pattern": ".*e.*"}}]


def _weights(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def _run(kind: str, root: Path, model: str, steps: int = 2, **overrides) -> tuple[str, dict, list[dict]]:
    root.mkdir(parents=True)
    data = write_items(root / "data.jsonl", synthetic_items(16))
    config = train_config(kind, root, model, data, max_steps=steps, **overrides)
    run_job(kind, write_config(root / f"{kind}.json", config))
    metrics = json.loads((root / f"{kind}.meta.json").read_text())["metrics"]
    rows = []
    if kind == "grpo":
        rows = [json.loads(line) for line in (root / "grpo.metrics.jsonl").read_text().splitlines()]
    return _weights(root / kind), metrics, rows


@pytest.mark.slow
def test_sft_with_lora_is_bit_identical_twice(tiny_model: str, tmp_path: Path) -> None:
    a = _run("sft", tmp_path / "a", tiny_model, lora=LORA)
    b = _run("sft", tmp_path / "b", tiny_model, lora=LORA)
    assert a[0] == b[0]
    assert a[1]["loss_curve"] == b[1]["loss_curve"]


@pytest.mark.slow
def test_grpo_is_bit_identical_twice_and_follows_the_seed(tiny_model: str, tmp_path: Path) -> None:
    opts = {"dynamic_sampling": True, "max_redraws": 1, "rewards": VARYING, "lora": LORA}
    a = _run("grpo", tmp_path / "a", tiny_model, **opts)
    b = _run("grpo", tmp_path / "b", tiny_model, **opts)
    assert a[0] == b[0]
    assert a[2] == b[2]  # every metrics row, sampled completions included
    c = _run("grpo", tmp_path / "c", tiny_model, steps=1, seed=4, **opts)
    assert c[2][0]["samples"] != a[2][0]["samples"]


def test_vllm_engine_gets_the_spec_seed_on_top_of_trls_rank_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    from trl.generation import vllm_generation

    built: list[dict] = []
    monkeypatch.setattr(vllm_generation, "LLM", lambda **kw: built.append(kw), raising=False)
    with seeding.vllm_engine_seed(42):
        vllm_generation.LLM(model="m", seed=1)  # what TRL passes on rank 1 (tensor parallel 1)
    vllm_generation.LLM(model="m", seed=1)  # outside: TRL's own seed again
    assert [kw["seed"] for kw in built] == [43, 1]


def test_without_vllm_the_seed_shim_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from trl.generation import vllm_generation

    monkeypatch.delattr(vllm_generation, "LLM", raising=False)
    with seeding.vllm_engine_seed(42):
        assert not hasattr(vllm_generation, "LLM")
