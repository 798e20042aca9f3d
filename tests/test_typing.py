"""The typed API refuses what would fail at run time: listeners typed for another message_type,
a handler registered on a route of another message_type. Runs mypy on a snippet whose every line
marked ``# wrong`` must be an error, and no other line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).parent.parent

SNIPPET = """
import hyperws

server = hyperws.Server()


def text(ws: hyperws.Websocket) -> None:
    def as_bytes(message: bytes, is_binary: bool) -> None: ...
    def reason_bytes(code: int, reason: bytes) -> None: ...
    ws.on("message", as_bytes)  # wrong: a "String" route's messages may be str
    ws.on("close", reason_bytes)  # wrong: its close reason is a str
    ws.on("drain", lambda: None)


def raw(ws: hyperws.Websocket[bytes]) -> None:
    def as_text(message: str, is_binary: bool) -> None: ...
    ws.on("message", as_text)  # wrong: a "Buffer" route's messages are bytes
    ws.once("ping", lambda data: data.decode())


async def views(ws: hyperws.Websocket[memoryview]) -> None:
    def as_bytes(data: bytes) -> None: ...
    ws.on("pong", as_bytes)  # wrong: an "ArrayBuffer" route's pongs are memoryviews
    async for message in ws:
        text: str = message  # wrong: messages are memoryviews


server.ws("/a", text)
server.ws("/b", raw, message_type="Buffer")
server.ws("/c", views, message_type="ArrayBuffer")
server.ws("/d", raw)  # wrong: the default message_type is "String"
server.ws("/e", text, message_type="ArrayBuffer")  # wrong
server.ws("/f", raw, message_type="Bufer")  # wrong: no such message_type
"""


def test_mypy_refuses_handlers_typed_for_another_message_type(tmp_path: Path) -> None:
    snippet = tmp_path / "wrong_types.py"
    snippet.write_text(SNIPPET)
    # The project's cache (at the root) keeps this to a few seconds after the first run.
    stdout, stderr, _ = api.run(
        ["--strict", "--cache-dir", str(ROOT / ".mypy_cache"), str(snippet)]
    )
    errors = {int(line) for line in re.findall(r"wrong_types\.py:(\d+): error", stdout)}
    expected = {number for number, line in enumerate(SNIPPET.splitlines(), 1) if "# wrong" in line}
    assert errors == expected, stdout + stderr
