"""The client side of the language-server tests and benchmark: waiting for a file's diagnostics."""

from __future__ import annotations

import asyncio

from lsprotocol import types as t


class Published:
    """Waits for the next diagnostics of one file. (Waiting on the notification method loses
    the second of two notifications that arrive together, and the server sends a spec's base
    file's diagnostics just before its own; so count them as the client's handler sees them.)"""

    def __init__(self, client, uri: str):
        self.client, self.uri = client, uri
        features = client.protocol.fm.features
        if not hasattr(client, "published_count"):
            client.published_count = {}
            handler = features[t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

            def counting(params):
                handler(params)
                client.published_count[params.uri] = client.published_count.get(params.uri, 0) + 1

            features[t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = counting
        self.before = client.published_count.get(uri, 0)

    async def wait(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while self.client.published_count.get(self.uri, 0) == self.before:
                await asyncio.sleep(0.001)
