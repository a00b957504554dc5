"""A model on this machine as teacher, generated through `generation.generate_chat` by one engine.

`TransformersBackend` and `VllmBackend` are this with their engine named; the cache key holds
the engine, the model path and the sampling parameters.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from fleming_dsl.hashing import sha256_path
from fleming_dsl.runtime.teachers.protocol import Request


def sampling_identity(model: str, settings: Any, seed: int, engine: str) -> dict[str, Any]:
    """What a local model's answer depends on besides the prompt (the cache key).

    A model folder on disk (a stage the workflow trains, a tiny model it builds, local weights)
    enters the key by its content hash, not its path: a retrained `cold_start` at the same path
    is another model, and its answers must not be served from the old one's."""
    identity: dict[str, Any] = {"backend": engine, "model": model,
                                "params": {"temperature": settings.temperature, "top_p": settings.top_p,
                                           "max_tokens": settings.max_tokens, "seed": seed}}
    if model and Path(model).is_dir():
        identity["model_sha256"] = model_content_hash(model)
    return identity


@lru_cache(maxsize=8)
def _content_hash(path: str, stamp: tuple) -> str:
    return sha256_path(path)


def model_content_hash(path: str) -> str:
    """sha256 of a model folder, computed once per process while its files are unchanged."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    stamp = tuple((p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _content_hash(str(Path(path).resolve()), stamp)


def request_seed(seed: int, request: Request) -> int:
    """A request's own sampling seed, from the job seed and what is asked (not from where the
    request sits in a batch or a shard), so its answer is the same however the work is cut."""
    blob = json.dumps([seed, list(request.messages), request.n], sort_keys=True,
                      ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:4], "big")


def generate_grouped(requests: list[Request], generate: Any, seed: int = 0) -> list[list[str]]:
    """Batch requests by `n` (one generate call per distinct n), keeping the input order; each
    request is generated under `request_seed`."""
    by_n: dict[int, list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        by_n[request.n].append(index)
    results: list[list[str]] = [[] for _ in requests]
    for n, indices in sorted(by_n.items()):
        outputs = generate([list(requests[i].messages) for i in indices], n,
                           [request_seed(seed, requests[i]) for i in indices])
        for i, texts in zip(indices, outputs):
            results[i] = list(texts)
    return results


class LocalModelBackend:
    engine = ""  # set by each engine's backend

    def __init__(self, model: str, settings: Any, seed: int) -> None:
        self.model = model
        self.settings = settings
        self.seed = seed

    def identity(self) -> dict[str, Any]:
        return sampling_identity(self.model, self.settings, self.seed, self.engine)

    def key_extra(self, request: Request) -> dict[str, Any]:
        return {}

    def _generate(self, conversations: list[list[dict[str, str]]], n: int,
                  seeds: list[int]) -> list[list[str]]:
        from fleming_dsl.runtime.generation import generate_chat

        return generate_chat(self.model, conversations, n=n,
                             temperature=self.settings.temperature, top_p=self.settings.top_p,
                             max_new_tokens=self.settings.max_tokens, seed=self.seed,
                             backend=self.engine,
                             tensor_parallel=self.settings.tensor_parallel, seeds=seeds)

    def generate(self, requests: list[Request]) -> list[list[str]]:
        return generate_grouped(requests, self._generate, self.seed)
