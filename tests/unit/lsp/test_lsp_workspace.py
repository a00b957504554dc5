"""The language server survives any file in its workspace and ends as LSP asks.

The project holds, beside the usual specs, a link to /proc/self/environ named like a spec, a
file whose line starts with a non-ASCII letter after a syntax error, and a spec with a number
past 64 bits. Opening an included file makes the server scan every .flm of the project for the
spec that includes it; requests on the other documents must still be answered, and nothing of
the environment may reach the client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import pytest_lsp
from lsp_client import Published
from lsp_fixtures import make_project, server_command, server_env
from lsprotocol import types as t
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SECRET = "fleming-test-secret-7f3a"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("lsp-ws") / "proj")
    specs = root / "specs"
    (specs / "env.flm").symlink_to("/proc/self/environ")
    (specs / "uber.flm").write_text('model x = hf(\nÜber = 3\n', encoding="utf-8")
    tiny = (specs / "tiny.flm").read_text(encoding="utf-8")
    (specs / "big.flm").write_text(tiny.replace("generations = 4", "generations = 18446744073709551617"),
                                   encoding="utf-8")
    return root


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command(),
                                              server_env={**server_env(), "FLEMING_TEST_SECRET": SECRET}),
                    scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=from_fs_path(str(project))))
    yield
    await lsp_client.shutdown_session()


async def open_doc(client: LanguageClient, project: Path, name: str) -> str:
    uri = from_fs_path(str(project / "specs" / name))
    waiter = Published(client, uri)
    text = (project / "specs" / name).read_text(encoding="utf-8")
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="flm", version=1, text=text)))
    await waiter.wait()
    return uri


async def hover_lr(client: LanguageClient, uri: str) -> str:
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line=61, character=2)))
    return hover.contents.value


@pytest.mark.asyncio(loop_scope="module")
async def test_hostile_files_do_not_break_other_documents(client: LanguageClient, project: Path):
    tiny = await open_doc(client, project, "tiny.flm")
    assert (await hover_lr(client, tiny)).startswith("**lr** (stage)")
    common = await open_doc(client, project, "common.flm")  # scans every .flm for its includer
    assert [d.message.splitlines()[0] for d in client.diagnostics[common]] == [
        "invalid regular expression: unterminated character set at position 0"]
    uber = await open_doc(client, project, "uber.flm")
    assert client.diagnostics[uber]  # located, whatever the parser says
    big = await open_doc(client, project, "big.flm")  # answered: checking it is bounded
    assert any("18446744073709551617" in d.message for d in client.diagnostics[big])
    assert (await hover_lr(client, tiny)).startswith("**lr** (stage)")
    published = json.dumps({uri: [d.message for d in ds] for uri, ds in client.diagnostics.items()})
    assert SECRET not in published


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
