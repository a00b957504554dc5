"""The spec's seed where TRL does not take it: the colocated vLLM engine.

TRL seeds Python, numpy and torch (`set_seed(args.seed)`) before it builds the model and the PEFT
adapter, orders the data by `data_seed`, and samples rollouts from torch's generator, so those
follow the spec's seed through `seed`/`data_seed` (trainer_args.common_args). The colocated vLLM
engine is the exception: TRL 1.x builds it with `seed = process_index // tensor_parallel_size`,
whatever the spec says, so two runs with different seeds sample identical rollouts. A per-request
`SamplingParams.seed` is no fix (every rollout of a prompt would then be the same, and every group
would have zero variance), so this shifts the engine seed by the spec's seed while TRL builds it,
keeping TRL's rule that the ranks of one tensor-parallel group share a seed.

Server mode: the seed is the server's (`trl vllm-serve --seed N`), set where it is launched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def engine_kwargs(kwargs: dict[str, Any], seed: int) -> dict[str, Any]:
    """vLLM `LLM(...)` arguments with the spec's seed added to TRL's per-rank engine seed."""
    return {**kwargs, "seed": int(kwargs.get("seed") or 0) + seed}


@contextlib.contextmanager
def vllm_engine_seed(seed: int) -> Iterator[None]:
    """While TRL builds its colocated engine, build it with the spec's seed (no-op without vLLM)."""
    try:
        from trl.generation import vllm_generation
    except ImportError:  # an older TRL layout, or TRL without its generation module
        yield
        return
    original = getattr(vllm_generation, "LLM", None)
    if original is None:  # vllm is not installed: TRL generates with transformers
        yield
        return

    def seeded(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **engine_kwargs(kwargs, seed))

    vllm_generation.LLM = seeded
    try:
        yield
    finally:
        vllm_generation.LLM = original
