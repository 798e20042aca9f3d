"""``async for message in ws``: every message in order, from inside the open handler too; ends on close;
bounded like any async listener."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect

import hyperws

from helpers import TIMEOUT, until, url
from rawws import BINARY, RawWebSocket, build_frame


async def test_an_async_handler_can_iterate_its_own_messages(serve):
    ended = []
    server = hyperws.Server()

    @server.ws("/echo")
    async def handler(ws: hyperws.Websocket) -> None:
        await asyncio.sleep(0.01)  # messages that arrive meanwhile are not lost
        async for message in ws:
            ws.send(message)
        ended.append(ws.closed)

    await serve(server)
    async with connect(url(server, "/echo")) as client:
        for n in range(20):
            await client.send(f"m{n}")
        assert [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(20)] == [
            f"m{n}" for n in range(20)
        ]
        await client.send(b"\x00binary")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"\x00binary"
    await until(lambda: ended == [True])


async def test_listeners_and_iteration_both_see_every_message(serve):
    seen_by_listener: list[str] = []
    seen_by_loop: list[str] = []
    server = hyperws.Server()

    tasks: list[asyncio.Task[None]] = []

    async def consume(ws: hyperws.Websocket) -> None:
        async for message in ws:
            seen_by_loop.append(message)

    @server.ws("/both")
    def handler(ws: hyperws.Websocket) -> None:
        ws.on("message", lambda message, is_binary: seen_by_listener.append(message))
        tasks.append(asyncio.ensure_future(consume(ws)))

    await serve(server)
    async with connect(url(server, "/both")) as client:
        for n in range(10):
            await client.send(str(n))
        await until(lambda: len(seen_by_loop) == 10 and len(seen_by_listener) == 10)
    assert seen_by_loop == seen_by_listener == [str(n) for n in range(10)]


async def test_iterating_a_closed_connection_ends_at_once(serve):
    results: list[list[object]] = []
    server = hyperws.Server()

    def on_open(ws: hyperws.Websocket) -> None:
        async def later(code: int, reason: str) -> None:
            results.append([message async for message in ws])

        ws.on("close", later)

    server.ws("/x", on_open)
    await serve(server)
    async with connect(url(server, "/x")):
        pass
    await until(lambda: results == [[]])


async def test_a_slow_loop_body_bounds_what_waits(serve):
    total = 5_000
    got: list[int] = []
    peak = [0]
    limit = 128 * 1024
    server = hyperws.Server(max_pending_bytes=limit)

    @server.ws("/slow", max_payload_length=4096)
    async def handler(ws: hyperws.Websocket) -> None:
        async for message in ws:
            got.append(int(message[:10]))
            peak[0] = max(peak[0], server.stats()["pending_bytes"])
            await asyncio.sleep(0)

    await serve(server)
    async with await RawWebSocket.connect(server.port, "/slow") as raw:
        for first in range(0, total, 500):
            await raw.send_raw(
                b"".join(
                    build_frame(BINARY, b"%010d" % n + bytes(1014))
                    for n in range(first, first + 500)
                )
            )
        await until(lambda: len(got) == total, timeout=60)
    assert got == list(range(total))
    # the bound, one socket read (each 1 KiB message counts 64 bytes more), one message
    assert peak[0] <= limit + 256 * 1024 * 1088 // 1024 + 2048
