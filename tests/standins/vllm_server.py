#!/usr/bin/env python3
"""A stand-in for `trl vllm-serve`: answers the endpoints TRL's VLLMClient calls first.

Run in place of the server's Python (FLEMING_SERVER_PYTHON): it gets the server's arguments
(`-m trl.cli.main vllm-serve --model M ... --port P`), reads `--port`, writes its argv and pid to
$STANDIN_LOG, and serves until it is stopped:
- GET /health -> 200 (after $STANDIN_HEALTHY_AFTER seconds; never when it is "never")
- GET /get_world_size/ -> {"world_size": 1}
- POST /generate/ -> {"completion_ids": [[1, 2, 3]] per prompt}
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

STARTED = time.monotonic()
HEALTHY_AFTER = os.environ.get("STANDIN_HEALTHY_AFTER", "0")


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/health":
            ready = HEALTHY_AFTER != "never" and time.monotonic() - STARTED >= float(HEALTHY_AFTER)
            self._send(200 if ready else 503, {})
        elif self.path == "/get_world_size/":
            self._send(200, {"world_size": 1})
        else:
            self._send(404, {})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/generate/":
            self._send(200, {"completion_ids": [[1, 2, 3] for _ in request.get("prompts", [])]})
        else:
            self._send(404, {})

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    argv = sys.argv[1:]
    port = int(argv[argv.index("--port") + 1])
    with open(os.environ["STANDIN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"role": "server", "pid": os.getpid(), "argv": argv,
                              "node": os.environ.get("SLURMD_NODENAME")}) + "\n")
    HTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
