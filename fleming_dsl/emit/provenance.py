"""Provenance: which libraries (and versions) each job of a workflow runs on.

`manifest.json` records, per job, the installed versions of the libraries that job kind imports,
so anyone holding a checkpoint or a result can tell what produced it; each job's own metadata
record (`jobs/common.py`) repeats the versions it actually ran with. Reads package metadata only:
nothing heavy is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import metadata
from typing import Any

# What each job kind imports to do its work (beyond fleming-dsl itself).
KIND_LIBRARIES: dict[str, tuple[str, ...]] = {
    "build_model": ("torch", "transformers", "tokenizers"),
    "graph_load": ("numpy", "numba", "pyarrow"),
    "sample": ("numpy", "numba", "networkx"),
    "synthesize": ("jinja2", "torch", "transformers"),
    "distill": ("jinja2", "torch", "transformers"),
    "filter": ("datasketch", "torch", "transformers"),
    "sft": ("torch", "transformers", "trl", "peft", "accelerate", "datasets"),
    "grpo": ("torch", "transformers", "trl", "peft", "accelerate", "datasets"),
    "eval": ("torch", "transformers"),
    "report": ("matplotlib", "scipy"),
}


@functools.lru_cache(maxsize=None)
def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _uses_vllm(config: dict[str, Any]) -> bool:
    """A vLLM teacher/judge anywhere in the config, vLLM rollouts, or a vLLM eval backend."""
    if config.get("use_vllm") is True or config.get("backend") == "vllm":
        return True
    for value in config.values():
        if isinstance(value, dict) and (value.get("kind") == "vllm" or _uses_vllm(value)):
            return True
        if isinstance(value, list | tuple) and any(
                isinstance(v, dict) and _uses_vllm(v) for v in value):
            return True
    return False


def libraries_for(kind: str, config: dict[str, Any]) -> tuple[str, ...]:
    """The libraries a job with this kind and (JSON) config will import."""
    names = ["fleming-dsl", *KIND_LIBRARIES.get(kind, ())]
    if config.get("deepspeed_config"):
        names.append("deepspeed")
    if _uses_vllm(config):
        names.append("vllm")
    return tuple(dict.fromkeys(names))


def versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions; a library that is not installed here is recorded as "absent"."""
    return {name: installed_version(name) or "absent" for name in names}


def job_libraries(configs: Iterable[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """{job: {library: version}} for (job name, kind, JSON config) triples."""
    return {job: versions(libraries_for(kind, config)) for job, kind, config in configs}
