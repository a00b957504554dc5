"""Backend selection: a job config's generator -> the backend that serves it, behind the cache.

Backends are imported only when chosen (vllm, transformers and the HTTP client are heavy or
optional); they depend on `protocol` alone, so nothing here is imported in a circle.
"""

from __future__ import annotations

from typing import Any

from fleming_dsl.errors import TeacherError
from fleming_dsl.runtime.teachers.cache import CachedTeacher, DiskCache
from fleming_dsl.runtime.teachers.protocol import Backend


def make_backend(generator: Any, seed: int) -> Backend:
    """The backend for a `jobconfig.Generator` (model path + `ir.Backend` settings)."""
    kind = generator.backend.kind
    if kind == "template":
        from fleming_dsl.runtime.teachers.backends.template import TemplateBackend

        return TemplateBackend(generator.backend, seed=seed)
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
