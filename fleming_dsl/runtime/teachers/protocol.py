"""The teacher protocol, the cached wrapper every job uses, and backend selection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fleming_dsl.runtime.teachers.cache import DiskCache, cache_key

TASKS = ("question", "reason", "answer", "grade")


class TeacherError(RuntimeError):
    """A teacher that cannot be used or reached (one line for the user)."""


@dataclass(frozen=True)
class Request:
    """One prompt for a teacher.

    `messages` is the chat prompt a model sees. `task` and `context` (the sampled path, the item)
    are what the deterministic template teacher reads instead of a prompt; models ignore them.
    """

    task: str
    messages: tuple[dict[str, str], ...]
    n: int = 1
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Response:
    texts: list[str]
    cached: bool = False


class Teacher(Protocol):
    def complete(self, requests: list[Request]) -> list[Response]: ...


class Backend(Protocol):
    """What a backend implements: uncached generation and the identity it is cached under."""

    def identity(self) -> dict[str, Any]: ...

    def key_extra(self, request: Request) -> dict[str, Any]: ...

    def generate(self, requests: list[Request]) -> list[list[str]]: ...


class CachedTeacher:
    """A backend behind the disk cache; counts the calls it makes and the hits it serves."""

    def __init__(self, backend: Backend, cache: DiskCache) -> None:
        self.backend = backend
        self.cache = cache
        self.calls = 0
        self.hits = 0

    def _parts(self, request: Request) -> dict[str, Any]:
        return {**self.backend.identity(), "n": request.n, "messages": list(request.messages),
                **self.backend.key_extra(request)}

    def complete(self, requests: list[Request]) -> list[Response]:
        parts = [self._parts(r) for r in requests]
        keys = [cache_key(p) for p in parts]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, texts in enumerate(found) if texts is None]
        self.hits += len(requests) - len(missing)
        if missing:
            fresh = self.backend.generate([requests[i] for i in missing])
            self.calls += len(missing)
            for i, texts in zip(missing, fresh):
                found[i] = texts
                # An empty answer may be a transient endpoint fault: do not make it permanent.
                if texts and all(texts):
                    self.cache.put(keys[i], texts, parts[i])
        return [Response(texts=list(found[i] or []), cached=i not in set(missing))
                for i in range(len(requests))]

    def counts(self) -> dict[str, int]:
        return {"teacher_calls": self.calls, "cache_hits": self.hits}


def complete_batched(teacher: Teacher, requests: list[Request], desc: str,
                     batch_size: int = 512) -> list[Response]:
    """`teacher.complete` in batches with a progress bar (large batches keep vLLM busy)."""
    from tqdm import tqdm

    responses: list[Response] = []
    with tqdm(total=len(requests), desc=desc, unit="req", disable=len(requests) < batch_size) as bar:
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            responses += teacher.complete(chunk)
            bar.update(len(chunk))
    return responses


def make_backend(generator: Any, seed: int) -> Backend:
    """The backend for a `jobconfig.Generator` (model path + `ir.Backend` settings)."""
    kind = generator.backend.kind
    if kind == "template":
        from fleming_dsl.runtime.teachers.backends.template import TemplateBackend

        return TemplateBackend()
    if kind == "openai":
        from fleming_dsl.runtime.teachers.backends.openai import OpenAIBackend

        return OpenAIBackend(generator.model, generator.backend, seed=seed)
    if kind == "vllm":
        from fleming_dsl.runtime.teachers.backends.vllm import VllmBackend

        return VllmBackend(generator.model, generator.backend, seed=seed)
    if kind == "transformers":
        from fleming_dsl.runtime.teachers.backends.transformers import (
            TransformersBackend,
        )

        return TransformersBackend(generator.model, generator.backend, seed=seed)
    raise TeacherError(f"unknown teacher backend {kind!r}")


def make_teacher(generator: Any, cache_dir: str, seed: int) -> CachedTeacher:
    return CachedTeacher(make_backend(generator, seed), DiskCache(cache_dir))
