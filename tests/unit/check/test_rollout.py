"""Where GRPO rollouts run and whether they fit the declared GPUs (check/rollout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl import ir, vocabulary
from fleming_dsl.check import rollout
from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import SpecError

RL = "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  batch = 4 }"
GPUS = "resources { nodes = 1  gpus = 8 }"


def spec(options: str, model: str = "Qwen/Qwen3-32B") -> str:
    text = MINIMAL.replace("model base = tiny(hidden = 32)", f'model base = hf("{model}")')
    return text.replace(RL, "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 8  "
                            f"batch = 8  max_completion_length = 4096  deepspeed = zero3  {options} }}")


def errors(tmp_path: Path, text: str) -> list[tuple[str, str | None]]:
    try:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    except SpecError as err:
        return [(d.first_line(), d.hint) for d in err.diagnostics]
    return []


def test_32b_with_tensor_parallel_1_names_the_options_that_fix_it(tmp_path: Path) -> None:
    assert errors(tmp_path, spec(f"use_vllm = true  {GPUS}")) == [(
        "spec.flm:14:134: error: stage rl: colocated vLLM does not fit: each GPU holds 64 GB of the "
        "32B policy (bf16 / vllm_tensor_parallel_size = 1) plus 10 GB of KV cache for a group of 8 "
        "sequences, more than vllm_gpu_memory_utilization = 0.3 of each 80 GB GPU (24 GB)",
        'set vllm_tensor_parallel_size = 4 (or raise vllm_gpu_memory_utilization), or set '
        'vllm_mode = "server" to give vLLM GPUs of its own')]


@pytest.mark.parametrize("options", [
    "vllm_tensor_parallel_size = 4", "vllm_tensor_parallel_size = 8",
    'vllm_mode = "server"  vllm_tensor_parallel_size = 4',
    "vllm_gpu_memory_utilization = 0.95  resources { nodes = 1  gpus = 8  gpu_mem = 141GB }"])
def test_layouts_that_fit_pass(tmp_path: Path, options: str) -> None:
    resources = "" if "resources" in options else GPUS
    assert errors(tmp_path, spec(f"use_vllm = true  {options}  {resources}")) == []


def test_declared_gpu_memory_and_share_are_what_is_weighed(tmp_path: Path) -> None:
    small_gpu = spec("use_vllm = true  vllm_tensor_parallel_size = 4  resources { nodes = 1  gpus = 8  gpu_mem = 40GB }")
    [(line, hint)] = errors(tmp_path, small_gpu)
    assert line.endswith("more than vllm_gpu_memory_utilization = 0.3 of each 40 GB GPU (12 GB)")
    assert hint.startswith("set vllm_tensor_parallel_size = 8")


def test_tensor_parallel_must_divide_a_nodes_gpus(tmp_path: Path) -> None:
    assert errors(tmp_path, spec(f"use_vllm = true  vllm_tensor_parallel_size = 3  {GPUS}")) == [(
        "spec.flm:14:151: error: stage rl: vllm_tensor_parallel_size = 3 must divide the GPUs of a "
        "node (gpus = 8): colocated vLLM groups the trainer processes of one node", "use a divisor of 8")]


def test_a_server_that_leaves_no_gpu_for_training_is_an_error(tmp_path: Path) -> None:
    text = spec(f'use_vllm = true  vllm_mode = "server"  vllm_tensor_parallel_size = 8  {GPUS}')
    [(line, hint)] = errors(tmp_path, text)
    assert line.endswith("stage rl: the vLLM server takes vllm_tensor_parallel_size x "
                         "vllm_data_parallel_size = 8 GPU(s) and training needs at least one more, but "
                         "the stage declares gpus = 8 on one node")
    assert hint == ("add nodes (the server takes whole nodes on several), or lower "
                    "vllm_tensor_parallel_size / vllm_data_parallel_size")


def _training(**kw) -> ir.Training:
    return ir.Training(use_vllm=True, vllm_mode="server", **kw)


@pytest.mark.parametrize("training, resources, split", [
    (_training(vllm_tensor_parallel_size=2), ir.Resources(nodes=1, gpus=8), vocabulary.ServerSplit(0, 2, 1, 6)),
    (_training(vllm_tensor_parallel_size=8), ir.Resources(nodes=4, gpus=8), vocabulary.ServerSplit(1, 8, 3, 8)),
    (_training(vllm_tensor_parallel_size=8, vllm_data_parallel_size=2), ir.Resources(nodes=4, gpus=8),
     vocabulary.ServerSplit(2, 16, 2, 8)),
    (_training(), ir.Resources(nodes=2), vocabulary.ServerSplit(1, 1, 1, 0)),  # the test cluster
    (_training(), ir.Resources(), vocabulary.ServerSplit(0, 0, 1, 0)),  # one CPU machine
])
def test_server_split(training, resources, split) -> None:
    assert vocabulary.server_split(training, resources) == split
    assert vocabulary.train_ranks(training, resources) == split.train_ranks


def test_server_geometry_counts_training_ranks_only(tmp_path: Path) -> None:
    # 4 nodes x 8 GPUs, one of them the server's: 24 training ranks (32 would have divided 128)
    text = spec('use_vllm = true  vllm_mode = "server"  vllm_tensor_parallel_size = 8 '
                "resources { nodes = 4  gpus = 8 }").replace("generations = 8  batch = 8", "generations = 64  batch = 4")
    [(line, hint)] = errors(tmp_path, text)
    assert line.endswith("batch x grad_accum x ranks = 4 x 1 x 24 = 96 is not a multiple of generations (64)")


def test_a_large_policy_rolled_out_through_zero3_is_warned_about(tmp_path: Path) -> None:
    from fleming_dsl.compiler import check_experiment

    text = spec(f"use_vllm = false  {GPUS}")
    _, warnings = check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    [warning] = [w for w in warnings if "generate" in w.message]
    assert (warning.first_line(), warning.hint) == (
        "spec.flm:14:134: warning: stage rl: rolls out the 32B policy with transformers' generate under "
        "zero3, which gathers every layer's weights for every decoded token",
        'set use_vllm = true (colocated with vllm_tensor_parallel_size, or vllm_mode = "server"); '
        "docs/scale.md has the arithmetic")
    small = check_experiment(write_project(tmp_path, spec(f"use_vllm = false  {GPUS}", "Qwen/Qwen2.5-1.5B")),
                             project_root=tmp_path)[1]
    assert not [w for w in small if "generate" in w.message]
