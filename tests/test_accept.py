"""How a connection is taken in: the kernel hands it to the server once its first bytes are in
(``TCP_DEFER_ACCEPT``), and the upgrade request is read at once, without a wait on the I/O threads, or
waited for when it arrives in pieces. Whichever way the request came, the connection is then read as
configured (on the asyncio thread, or on the I/O threads)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import hyperws

from conftest import Serve
from helpers import until
from rawws import TEXT, RawWebSocket, accept_key, new_key, read_response_head, upgrade_request

T = 30  # safety net (seconds) per await

BOTH = pytest.mark.parametrize("inline", [True, False], ids=["inline", "io-thread"])


def echo_server(inline: bool) -> hyperws.Server:
    server = hyperws.Server(inline_reads=inline, request_timeout=T)
    server.ws("/echo", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)))
    return server


async def upgrade_and_echo(
    serve: Serve, inline: bool, send: Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]
) -> None:
    """Sends an upgrade request as `send` does, then checks the 101, the way the connection is read,
    and a few echoes."""
    server = await serve(echo_server(inline))
    key = new_key()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        await send(writer, upgrade_request("/echo", key=key))
        response = await asyncio.wait_for(read_response_head(reader), T)
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == accept_key(key)
        await until(lambda: server.stats()["inline_connections"] == int(inline))
        ws = RawWebSocket(reader, writer, response)
        for i in range(3):
            await ws.send_text(f"m{i}")
            assert await asyncio.wait_for(ws.read_message(), T) == (TEXT, f"m{i}".encode())
    finally:
        writer.close()


@BOTH
async def test_a_request_sent_at_once_is_served(serve, inline):
    async def at_once(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(request)

    await upgrade_and_echo(serve, inline, at_once)


@BOTH
async def test_a_request_whose_rest_comes_later_is_waited_for(serve, inline):
    # The first bytes get the connection handed over; the rest finds the server waiting for it.
    async def in_two_parts(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(request[:20])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(request[20:])

    await upgrade_and_echo(serve, inline, in_two_parts)


@BOTH
async def test_a_client_that_speaks_long_after_connecting_is_served(serve, inline):
    # Past the kernel's deferral (about a second): the silent connection is handed over anyway, and the
    # request that comes later is read as usual.
    async def late(writer: asyncio.StreamWriter, request: bytes) -> None:
        await asyncio.sleep(2.5)
        writer.write(request)

    await upgrade_and_echo(serve, inline, late)
