"""A local model as teacher, generated with transformers (CPU or GPU)."""

from __future__ import annotations

from fleming_dsl.runtime.teachers.backends.local import LocalModelBackend


class TransformersBackend(LocalModelBackend):
    engine = "transformers"
