"""pass@k and maj@k: the estimator, the vote, and the eval job reporting them (scripted answers
with known scores, and a real tiny model through transformers on CPU)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from generation_fixtures import build_tiny_model
from test_eval import _item, _write_config, _write_jsonl, scripted_model  # noqa: F401 (a fixture)

from fleming_dsl.runtime.jobs import run_job
from fleming_dsl.runtime import generation
from fleming_dsl.runtime.reporting.sampled import majority_at_k, pass_at_k, sampled_metrics


@pytest.mark.parametrize("n, c, k", [(4, 1, 1), (4, 1, 2), (4, 2, 2), (5, 2, 3), (8, 0, 4), (8, 8, 1)])
def test_pass_at_k_is_the_chance_some_draw_of_k_is_right(n: int, c: int, k: int) -> None:
    """Against counting every k-subset of the n samples."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_k_needs_k_samples() -> None:
    with pytest.raises(ValueError, match="pass@3 needs at least 3 samples, got 2"):
        pass_at_k(2, 1, 3)


@pytest.mark.parametrize("extracted, k, right", [
    (["A", "B", "A"], 3, True), (["B", "A", "A"], 1, False), (["B", "A", None, "A"], 4, True),
    (["A", "B"], 2, True),  # a tie goes to the answer seen first
    (["B", "A"], 2, False), ([None, None], 2, False)])
def test_majority_at_k(extracted: list, k: int, right: bool) -> None:
    assert majority_at_k(extracted, "A", k) is right


def test_eval_job_reports_declared_sampled_metrics(tmp_path: Path, scripted_model: dict) -> None:  # noqa: F811
    scripted_model.update({
        "q0": ["<answer>A</answer>", "<answer>B</answer>", "<answer>B</answer>", "<answer>A</answer>"],
        "q1": ["<answer>C</answer>", "<answer>C</answer>", "<answer>B</answer>", "no idea"],
        "q2": ["<answer>D</answer>", "<answer>D</answer>", "<answer>D</answer>", "<answer>D</answer>"],
    })
    bench = _write_jsonl(tmp_path / "b.jsonl", [_item(0, "A"), _item(1, "B"), _item(2, "D")])
    config = _write_config(tmp_path, "scripted", [{"name": "medqa", "path": bench, "format": "items"}],
                           samples=4, temperature=0.7, metrics=["pass@1", "pass@2", "maj@4", "maj@3"])
    run_job("eval", config)
    medqa = json.loads((tmp_path / "out" / "eval.json").read_text())["benchmarks"]["medqa"]
    # right answers per item: q0 2/4, q1 1/4, q2 4/4
    assert medqa["pass@1"] == pytest.approx((2 / 4 + 1 / 4 + 1) / 3)
    assert medqa["pass@2"] == pytest.approx((1 - math.comb(2, 2) / 6 + 1 - math.comb(3, 2) / 6 + 1) / 3)
    # maj@4: q0 A,B,B,A tie -> A (first) right; q1 C,C,B -> C wrong; q2 right
    assert medqa["maj@4"] == pytest.approx(2 / 3)
    assert medqa["maj@3"] == pytest.approx(1 / 3)  # q0 A,B,B -> B wrong
    meta = json.loads((tmp_path / "out" / "eval.json.meta.json").read_text())
    assert meta["metrics"]["maj@4"] == {"medqa": medqa["maj@4"]}


def test_sampled_metrics_on_a_real_tiny_model(tmp_path: Path) -> None:
    """The tiny model sampled through transformers on CPU: the metrics agree with the predictions."""
    model = str(build_tiny_model(tmp_path / "model"))
    bench = _write_jsonl(tmp_path / "b.jsonl", [_item(i, "ABCD"[i % 4]) for i in range(4)])
    config = _write_config(tmp_path, model, [{"name": "a", "path": bench, "format": "items"}],
                           samples=3, temperature=1.0, backend="auto", metrics=["pass@3", "maj@3"])
    run_job("eval", config)
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())["benchmarks"]["a"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "eval.json.predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert summary["pass@3"] == pytest.approx(
        sum(any(r["correct"] for r in rows if r["id"] == f"q{i}") for i in range(4)) / 4)
    assert (summary["pass@3"], summary["maj@3"]) == tuple(sampled_metrics(rows, ["pass@3", "maj@3"]).values())
    assert summary["maj@3"] <= summary["pass@3"]


def test_auto_engine_is_vllm_only_with_vllm_and_a_gpu() -> None:
    assert generation.resolve_backend("auto", vllm_installed=True, cuda=True) == "vllm"
    assert generation.resolve_backend("auto", vllm_installed=True, cuda=False) == "transformers"
    assert generation.resolve_backend("auto", vllm_installed=False, cuda=True) == "transformers"
    assert generation.resolve_backend("transformers", vllm_installed=True, cuda=True) == "transformers"


@pytest.mark.parametrize("gpus, heads, tp", [(8, 64, 8), (8, 28, 4), (8, None, 8), (6, 28, 2), (1, 28, 1)])
def test_tensor_parallel_fits_the_models_heads(gpus: int, heads: int | None, tp: int) -> None:
    assert generation.fit_tensor_parallel(gpus, heads) == tp
