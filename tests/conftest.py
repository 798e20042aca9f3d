"""Shared fixtures: servers on 127.0.0.1 with a free port, closed at teardown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import hyperws

CLOSE_TIMEOUT = 30.0  # safety net for server.close() at teardown, not a speed assertion
# Clients a test leaves open are not answering close frames: their connections are dropped after this.
TEARDOWN_GRACE = 0.25


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long test (deselect with -m 'not slow')")


Serve = Callable[[hyperws.Server], Awaitable[hyperws.Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(server)`` listens on 127.0.0.1 (free port) and closes the server at teardown."""
    servers: list[hyperws.Server] = []

    async def start(server: hyperws.Server) -> hyperws.Server:
        await server.listen(0, "127.0.0.1")
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(timeout=TEARDOWN_GRACE), CLOSE_TIMEOUT)


def echo(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))


@pytest.fixture
async def echo_server(serve: Serve) -> hyperws.Server:
    """Echo routes: ``/echo`` (default options), ``/small`` (max_payload_length=1024),
    ``/big`` (max_payload_length=4 MiB), ``/buffer`` and ``/arraybuffer`` (message types)."""
    server = hyperws.Server()
    server.ws("/echo", echo)
    server.ws("/small", echo, max_payload_length=1024)
    server.ws("/big", echo, max_payload_length=4 * 1024 * 1024)
    server.ws("/buffer", echo, message_type="Buffer")
    server.ws("/arraybuffer", echo, message_type="ArrayBuffer")
    return await serve(server)
