"""A teacher behind any OpenAI-compatible HTTP endpoint (`POST <base_url>/chat/completions`).

stdlib `urllib` only. Timeouts, connection errors, 429 and 5xx are retried with exponential
backoff and full jitter (a `Retry-After` header is honoured when longer); other 4xx fail at once.
Requests run `concurrency` at a time in threads, since each call mostly waits on the network.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from fleming_dsl.runtime.teachers.protocol import Request, TeacherError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def chat_payload(model: str, request: Request, settings: Any, seed: int) -> dict[str, Any]:
    return {"model": model, "messages": list(request.messages), "n": request.n,
            "temperature": settings.temperature, "top_p": settings.top_p,
            "max_tokens": settings.max_tokens, "seed": seed}


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** attempt)))


def completion_texts(body: bytes, n: int) -> list[str]:
    """The `n` message contents of a response; a malformed body gives empty strings, which the
    jobs count as malformed answers instead of crashing."""
    try:
        choices = json.loads(body)["choices"]
        texts = [str(choice["message"]["content"] or "") for choice in choices]
    except (ValueError, KeyError, TypeError, IndexError):
        return [""] * n
    return (texts + [""] * n)[:n]


class OpenAIBackend:
    def __init__(self, model: str, settings: Any, seed: int, *,
                 sleep: Callable[[float], None] = time.sleep, backoff_base_s: float = 1.0,
                 backoff_cap_s: float = 60.0) -> None:
        self.model = model
        self.settings = settings
        self.seed = seed
        self.url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self.sleep = sleep
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.attempts = 0  # HTTP attempts made, retries included
        self._rng = random.Random(seed)

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.model, "base_url": self.url,
                "params": {"temperature": self.settings.temperature,
                           "top_p": self.settings.top_p,
                           "max_tokens": self.settings.max_tokens, "seed": self.seed}}

    def key_extra(self, request: Request) -> dict[str, Any]:
        return {}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        name = self.settings.api_key_env
        if name:
            key = os.environ.get(name)
            if not key:
                raise TeacherError(f"openai teacher: environment variable {name} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, payload: dict[str, Any], headers: dict[str, str]) -> bytes:
        data = json.dumps(payload).encode("utf-8")
        retries = max(0, self.settings.retries)
        last = ""
        for attempt in range(retries + 1):
            self.attempts += 1
            wait = 0.0
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.settings.timeout_s) as answer:
                    return answer.read()
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS:
                    detail = err.read()[:200].decode("utf-8", "replace")
                    raise TeacherError(f"{self.url}: HTTP {err.code}: {detail}") from None
                last = f"HTTP {err.code}"
                wait = float(err.headers.get("Retry-After", 0) or 0) if err.headers else 0.0
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            if attempt < retries:
                self.sleep(max(wait, backoff_delay(attempt, self.backoff_base_s,
                                                   self.backoff_cap_s, self._rng)))
        raise TeacherError(f"{self.url}: no answer after {retries + 1} attempts ({last})")

    def _one(self, request: Request, headers: dict[str, str]) -> list[str]:
        payload = chat_payload(self.model, request, self.settings, self.seed)
        return completion_texts(self._post(payload, headers), request.n)

    def generate(self, requests: list[Request]) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in requests]
        self.generate_each(requests, lambda i, texts: out.__setitem__(i, texts))
        return out

    def generate_each(self, requests: list[Request], done: Callable[[int, list[str]], None]) -> None:
        """Answer `requests` `concurrency` at a time, handing each answer to `done(index, texts)`
        as it arrives (the cache stores it at once). A request that fails for good does not stop
        the others: every answer that can be had is handed over, then the first failure is raised,
        so a re-run pays only for what is still missing."""
        headers = self._headers()
        workers = max(1, min(self.settings.concurrency, len(requests)))
        failures: list[TeacherError] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(self._one, r, headers): i for i, r in enumerate(requests)}
            for future in as_completed(futures):
                try:
                    done(futures[future], future.result())
                except TeacherError as err:
                    failures.append(err)
        if failures:
            raise failures[0]
