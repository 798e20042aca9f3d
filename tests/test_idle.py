"""idle_timeout: silent connections are pinged and then closed with 1001; live clients that answer the
pings (or talk) stay open. Waits are bounded by counts and safety timeouts, never asserted as speeds."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import Recorder, url
from rawws import BINARY, CLOSE, PING, PONG, TEXT, RawWebSocket

SAFETY = 15  # seconds: only so that a broken server fails instead of hanging


async def idle_server(serve, **options) -> tuple[hyperws.Server, Recorder]:
    rec = Recorder()
    server = hyperws.Server()

    def on_open(ws):
        ws.on("message", lambda m, b: ws.send(m, b))
        ws.on("close", rec.listener("close"))
        ws.on("pong", rec.listener("pong"))

    server.ws("/ws", on_open, **options)
    return await serve(server), rec


async def frames_until_close(ws: RawWebSocket, answer_pings: bool = False) -> list:
    """Reads frames (optionally answering pings) until the server's close frame; returns them all."""
    frames = []
    while True:
        frame = await ws.read_frame(timeout=SAFETY)
        frames.append(frame)
        if frame.opcode == CLOSE:
            return frames
        if frame.opcode == PING and answer_pings:
            await ws.send_frame(PONG, frame.payload)


async def test_silent_client_is_pinged_then_closed_with_1001(serve):
    server, rec = await idle_server(serve, idle_timeout=1)
    async with await RawWebSocket.connect(server.port, "/ws") as ws:
        frames = await frames_until_close(ws)  # never answers the pings
        close = frames[-1]
        assert (close.close_code, close.close_reason) == (1001, "idle timeout")
        assert [f.opcode for f in frames[:-1]] == [PING]  # one ping before the deadline
        await ws.send_close(1001)
        assert await ws.expect_eof(timeout=SAFETY) == b""
    assert await rec.first("close", timeout=SAFETY) == (1001, "idle timeout")
    assert server.connections == 0


async def test_silent_client_without_automatic_pings_is_closed_without_a_ping(serve):
    server, rec = await idle_server(serve, idle_timeout=1, send_pings_automatically=False)
    async with await RawWebSocket.connect(server.port, "/ws") as ws:
        frames = await frames_until_close(ws)
        assert [f.opcode for f in frames] == [CLOSE]
        assert frames[0].close_code == 1001
    assert (await rec.first("close", timeout=SAFETY))[0] == 1001


async def test_websockets_client_answering_pings_survives_silence(serve):
    server, rec = await idle_server(serve, idle_timeout=1)
    # ping_interval=None: the client sends no pings of its own; it only answers the server's
    async with connect(url(server, "/ws"), ping_interval=None, open_timeout=5) as client:
        await asyncio.sleep(3)  # three idle timeouts of silence
        await client.send("still alive")
        assert await asyncio.wait_for(client.recv(), SAFETY) == "still alive"
        assert rec.of("close") == []
        # the server pinged at least once per idle period, and the client's pongs reached it
        assert len(rec.of("pong")) >= 2
        assert server.connections == 1


async def test_websockets_client_is_closed_when_the_server_does_not_ping(serve):
    server, rec = await idle_server(serve, idle_timeout=1, send_pings_automatically=False)
    async with connect(url(server, "/ws"), ping_interval=None, open_timeout=5) as client:
        await asyncio.wait_for(client.wait_closed(), SAFETY)
        assert client.close_code == 1001
        assert client.close_reason == "idle timeout"
    assert await rec.first("close", timeout=SAFETY) == (1001, "idle timeout")


async def test_raw_client_answering_pings_stays_open(serve):
    server, rec = await idle_server(serve, idle_timeout=1)
    async with await RawWebSocket.connect(server.port, "/ws") as ws:
        pings = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while loop.time() < end:
            try:
                frame = await ws.read_frame(timeout=end - loop.time())
            except asyncio.TimeoutError:
                break
            assert frame.opcode != CLOSE, f"closed although the client answered: {frame}"
            if frame.opcode == PING:
                pings += 1
                await ws.send_frame(PONG, frame.payload)
        assert pings >= 2
        await ws.send_binary(b"after 3 s")
        assert await ws.read_message() == (BINARY, b"after 3 s")
    assert rec.of("close") == [] or rec.of("close")[0][0] == 1006


async def test_messages_keep_a_connection_alive(serve):
    server, rec = await idle_server(serve, idle_timeout=1, send_pings_automatically=False)
    async with await RawWebSocket.connect(server.port, "/ws") as ws:
        for i in range(10):  # about 3 s of traffic, one message every 0.3 s
            await ws.send_text(f"{i}")
            assert await ws.read_message() == (TEXT, f"{i}".encode())
            await asyncio.sleep(0.3)
        assert rec.of("close") == []


async def test_client_pings_keep_a_connection_alive(serve):
    server, rec = await idle_server(serve, idle_timeout=1, send_pings_automatically=False)
    async with await RawWebSocket.connect(server.port, "/ws") as ws:
        for i in range(10):
            await ws.send_frame(PING, f"{i}".encode())
            frame = await ws.read_frame(timeout=SAFETY)
            assert (frame.opcode, frame.payload) == (PONG, f"{i}".encode())
            await asyncio.sleep(0.3)
        assert rec.of("close") == []


async def test_idle_timeout_zero_never_pings_or_closes(serve):
    server, rec = await idle_server(serve, idle_timeout=0)
    async with await RawWebSocket.connect(server.port, "/ws") as ws:
        with pytest.raises(asyncio.TimeoutError):
            frame = await ws.read_frame(timeout=2.5)
            raise AssertionError(f"an idle_timeout=0 connection got {frame}")
        await ws.send_text("no timeout")
        assert await ws.read_message() == (TEXT, b"no timeout")
    assert rec.of("pong") == []


async def test_idle_timeout_applies_per_route(serve):
    rec = Recorder()
    server = hyperws.Server()
    server.ws("/short", lambda ws: ws.on("close", rec.listener("short")), idle_timeout=1)
    server.ws(
        "/long",
        lambda ws: ws.on("close", rec.listener("long")).on("message", lambda m, b: ws.send(m, b)),
        idle_timeout=60,
    )
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/long") as long_ws:
        async with await RawWebSocket.connect(server.port, "/short") as short_ws:
            frames = await frames_until_close(short_ws)
            assert frames[-1].close_code == 1001
        # the long-timeout connection is still open and quiet
        await long_ws.send_text("still here")
        assert await long_ws.read_message() == (TEXT, b"still here")
    assert rec.of("long") == [] or rec.of("long")[0][0] == 1006
