"""A local model as teacher, generated with transformers (CPU or GPU)."""

from __future__ import annotations

from collections.abc import Callable

from fleming_dsl.runtime.teachers.backends.local import LocalModelBackend
from fleming_dsl.runtime.teachers.protocol import Request


class TransformersBackend(LocalModelBackend):
    engine = "transformers"

    def generate_each(self, requests: list[Request], done: Callable[[int, list[str]], None]) -> None:
        """Each answer to the cache as it is made: transformers decodes the requests one by one
        anyway (each under its own seed), so a job stopped by the signal before its time limit
        loses one answer, not its whole batch, and the answers are those of `generate`."""
        for index, request in enumerate(requests):
            done(index, self.generate([request])[0])
