"""Latency of `fleming lsp` on the flagship spec, driven over stdio like an editor drives it.

    python bench/lsp.py [--repeat 20]

Run from the project root (a git checkout: the code lenses compare with HEAD). Starts the real
server with pytest-lsp's client, opens specs/fleming_r1_7b.flm (which extends the base spec) and
times, per request, from sending to the answer (diagnostics: from the edit to the
publishDiagnostics notification). "first" is the first request after the document opened, the
rest are medians of --repeat runs; each edit changes one value, so every diagnostic run re-checks
and re-lowers the whole experiment. `fleming check` (a fresh process per run) is measured in the
same run for comparison. The goal is under 100 ms per answer after the first parse.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lsprotocol import types as t
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, client_capabilities

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lsp_client import Published

SPEC = REPO / "specs" / "fleming_r1_7b.flm"


def position_of(text: str, needle: str, skip: int = 0) -> t.Position:
    offset = text.index(needle) + skip
    line = text.count("\n", 0, offset)
    return t.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def timed(coro) -> tuple[float, object]:
    start = time.perf_counter()
    result = await coro
    return (time.perf_counter() - start) * 1000, result


async def run(repeat: int) -> list[tuple[str, float, float, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    config = ClientServerConfig(server_command=[sys.executable, "-m", "fleming_dsl.cli", "lsp"], server_env=env)
    client = await config.start()
    await client.initialize_session(t.InitializeParams(capabilities=client_capabilities("visual-studio-code"),
                                                       root_uri=from_fs_path(str(REPO))))
    uri, text = from_fs_path(str(SPEC)), SPEC.read_text(encoding="utf-8")
    doc = t.TextDocumentIdentifier(uri=uri)
    rows = []

    waiter = Published(client, uri)
    start = time.perf_counter()
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="flm", version=1, text=text)))
    await waiter.wait()
    first_open = (time.perf_counter() - start) * 1000

    async def diagnostics(version: int) -> float:
        edited = text.replace("lr = 1e-6", f"lr = {version}e-7")
        waiter = Published(client, uri)
        begin = time.perf_counter()
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=edited)]))
        await waiter.wait()
        return (time.perf_counter() - begin) * 1000

    times = [await diagnostics(v) for v in range(2, 2 + repeat)]
    rows.append(("diagnostics (open / edit)", first_open, statistics.median(times), "7B spec + its base"))

    requests = {
        "hover: declared name (rl1)": lambda: client.text_document_hover_async(
            t.HoverParams(text_document=doc, position=position_of(text, "stage rl1", 7))),
        "hover: option (generations)": lambda: client.text_document_hover_async(
            t.HoverParams(text_document=doc, position=position_of(text, "generations", 2))),
        "definition (cold_start)": lambda: client.text_document_definition_async(
            t.DefinitionParams(text_document=doc, position=position_of(text, "cold_start", 2))),
        "completion (stage block)": lambda: client.text_document_completion_async(
            t.CompletionParams(text_document=doc, position=position_of(text, "  generations", 2))),
        "semantic tokens": lambda: client.text_document_semantic_tokens_full_async(
            t.SemanticTokensParams(text_document=doc)),
        "code lens (vs git HEAD)": lambda: client.text_document_code_lens_async(t.CodeLensParams(text_document=doc)),
    }
    for name, request in requests.items():
        first, result = await timed(request())
        times = [(await timed(request()))[0] for _ in range(repeat)]
        note = ""
        if name.startswith("hover") and result is not None:
            note = result.contents.value.splitlines()[0][:40]
        if name.startswith("code lens"):
            note = result[0].command.title[:48] if result else "no lens"
        rows.append((name, first, statistics.median(times), note))
    await client.shutdown_session()
    await client.stop()
    return rows


def cli_check(repeat: int) -> float:
    times = []
    for _ in range(max(3, repeat // 4)):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "check", str(SPEC.relative_to(REPO))],
                       cwd=REPO, capture_output=True, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = asyncio.run(run(args.repeat))
    rows.append(("`fleming check` (new process)", cli_check(args.repeat), float("nan"), "for comparison"))
    print(f"{'request':<32} {'first ms':>9} {'median ms':>10}  note")
    for name, first, median, note in rows:
        shown = f"{median:10.1f}" if median == median else f"{'':>10}"
        print(f"{name:<32} {first:9.1f} {shown}  {note}")


if __name__ == "__main__":
    main()
