"""What a teacher is: requests in, responses out; a backend generates, uncached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fleming_dsl.errors import TeacherError

__all__ = ["TASKS", "Backend", "Request", "Response", "Teacher", "TeacherError"]

TASKS = ("question", "reason", "rewrite", "judge", "answer", "grade")


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
    """What a backend implements: uncached generation and the identity it is cached under.

    A backend whose answers arrive one by one (HTTP, a transformers model) may also offer
    `generate_each(requests, done)`, calling `done(index, texts)` per answer as it arrives; the
    cache then stores each at once, so a batch that fails half-way keeps what it got."""

    def identity(self) -> dict[str, Any]: ...

    def key_extra(self, request: Request) -> dict[str, Any]: ...

    def generate(self, requests: list[Request]) -> list[list[str]]: ...
