"""`fleming lsp` ends as LSP asks: status 0 after `shutdown` then `exit`, 1 on an `exit` alone,
and no traceback either way."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lsp_fixtures import server_command, server_env
from pygls.uris import from_fs_path


def _session(messages: list[dict], cwd: Path) -> subprocess.CompletedProcess:
    def frame(obj: dict) -> bytes:
        body = json.dumps(obj).encode()
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": from_fs_path(str(cwd)), "capabilities": {}}}
    data = b"".join(frame(m) for m in [init, {"jsonrpc": "2.0", "method": "initialized", "params": {}}, *messages])
    return subprocess.run(server_command(), input=data, capture_output=True, cwd=cwd, env=server_env(), timeout=60)


def test_exit_after_shutdown_is_status_0(tmp_path: Path):
    done = _session([{"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
                     {"jsonrpc": "2.0", "method": "exit"}], tmp_path)
    assert (done.returncode, b"Traceback" in done.stderr) == (0, False)


def test_exit_without_shutdown_is_status_1(tmp_path: Path):
    done = _session([{"jsonrpc": "2.0", "method": "exit"}], tmp_path)
    assert (done.returncode, b"Traceback" in done.stderr) == (1, False)
