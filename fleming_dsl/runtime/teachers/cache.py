"""The on-disk teacher-call cache (one small JSON file per call, keyed by a sha256) and the
cached teacher every job uses.

One file per key (under a two-character fan-out directory) keeps concurrent jobs of one
experiment safe without locks: writes go to a temp file and are renamed into place. The shards
of a job share the cache, from several nodes of a cluster at once over a shared filesystem, so
the temp file's name is unique across hosts (not only the process id, which two nodes may share);
when two shards answer the same request at once, the last rename wins and the entry is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fleming_dsl.runtime.teachers.protocol import Backend, Request, Response


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines a teacher's answer."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class DiskCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[str] | None:
        """The cached answer of `key`, or None. An entry is served only when it names `key` and
        its own request hashes to `key`: a file copied, renamed or written over with another
        request's (valid) entry is a miss, never another request's answer."""
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing or torn entry: treat as a miss and recompute
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        request = data.get("request")
        if not isinstance(request, dict) or cache_key(request) != key:
            return None
        texts = data.get("texts")
        if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
            return texts
        return None

    def put(self, key: str, texts: list[str], parts: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": key, "request": parts, "texts": texts}
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


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
            def store(j: int, texts: list[str]) -> None:
                i = missing[j]
                found[i] = texts
                # An empty answer may be a transient endpoint fault: do not make it permanent.
                if texts and all(texts):
                    self.cache.put(keys[i], texts, parts[i])

            self.calls += len(missing)
            todo = [requests[i] for i in missing]
            each = getattr(self.backend, "generate_each", None)
            if each is not None:  # answers are cached as they arrive: a crash loses none of them
                each(todo, store)
            else:
                for j, texts in enumerate(self.backend.generate(todo)):
                    store(j, texts)
        return [Response(texts=list(found[i] or []), cached=i not in set(missing))
                for i in range(len(requests))]

    def counts(self) -> dict[str, int]:
        return {"teacher_calls": self.calls, "cache_hits": self.hits}
