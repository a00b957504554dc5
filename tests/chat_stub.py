"""An OpenAI-compatible `/v1/chat/completions` endpoint for tests whose answers must be known:
a subclass says what each request gets back, `serving` runs it on a free loopback port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatStub(BaseHTTPRequestHandler):
    """Answers every request with the contents `answer(body)` returns, one choice each."""

    def answer(self, body: dict) -> list[str]:
        raise NotImplementedError

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        choices = [{"index": i, "message": {"role": "assistant", "content": content}}
                   for i, content in enumerate(self.answer(body))]
        data = json.dumps({"choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def verdict(met: bool) -> list[str]:
    """A rubric grader's one answer, in the JSON layout HealthBench's grader prompt asks for."""
    return [json.dumps({"explanation": "-", "criteria_met": met})]


def criterion_of(body: dict) -> str:
    """The criterion a rubric-grading request asks about (the built-in grader prompt's layout)."""
    return body["messages"][-1]["content"].split("points):", 1)[1].split("Does the response", 1)[0]


@contextmanager
def serving(handler: type[ChatStub]) -> Iterator[str]:
    """Serve `handler` on a free loopback port; yields the base URL (…/v1)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
