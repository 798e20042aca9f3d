"""Plain connections read on the asyncio thread (``inline_reads=True``, the default): a message wakes that
thread itself (no hand-over from an I/O thread), and everything the engine promises about input holds the
same with the option on and off: order, pings answered, close handshakes, end of stream, flow control,
replies from handlers, tasks and threads."""

from __future__ import annotations

import asyncio
import threading

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import until, url
from rawws import PING, PONG, TEXT, RawWebSocket, build_frame

T = 30  # safety net (seconds) per await

BOTH = pytest.mark.parametrize("inline", [True, False], ids=["inline", "io-thread"])


def echo_server(inline: bool, **route: object) -> hyperws.Server:
    server = hyperws.Server(inline_reads=inline)
    server.ws("/echo", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)), **route)
    return server


async def test_messages_read_on_the_asyncio_thread_need_no_hand_over(serve):
    # Read on the loop's thread, a message never passes through the event queue's wake-up.
    server = await serve(echo_server(True))
    async with connect(url(server, "/echo"), open_timeout=T) as client:
        await until(lambda: server.stats()["inline_connections"] == 1)
        await client.send("first")
        assert await asyncio.wait_for(client.recv(), T) == "first"
        before = server.stats()
        for i in range(100):
            await client.send(f"m{i}")
            assert await asyncio.wait_for(client.recv(), T) == f"m{i}"
        after = server.stats()
    assert after["messages_in"] - before["messages_in"] == 100
    assert after["loop_wakeups"] == before["loop_wakeups"]
    # A connection leaves the asyncio thread's set when it ends.
    await until(lambda: server.stats()["inline_connections"] == 0)


async def test_read_on_the_io_threads_when_turned_off(serve):
    server = await serve(echo_server(False))
    async with connect(url(server, "/echo"), open_timeout=T) as client:
        before = server.stats()
        for i in range(20):
            await client.send(f"m{i}")
            assert await asyncio.wait_for(client.recv(), T) == f"m{i}"
        after = server.stats()
        assert after["inline_connections"] == 0
    assert after["loop_wakeups"] - before["loop_wakeups"] >= 20


@BOTH
async def test_a_burst_split_anywhere_arrives_whole_and_in_order(serve, inline):
    # Frames of every size class, sent as one byte stream cut at odd places: the reads see partial
    # headers, partial payloads and several frames at once.
    server = await serve(echo_server(inline, max_payload_length=1 << 20))
    sizes = [1, 125, 126, 4000, 65535, 65536, 300_000, 7]
    frames = b"".join(build_frame(TEXT, bytes([65 + i % 26]) * n) for i, n in enumerate(sizes))
    async with await RawWebSocket.connect(server.port, "/echo") as raw:
        for start in range(0, len(frames), 9973):
            await raw.send_raw(frames[start : start + 9973])
        for i, n in enumerate(sizes):
            assert await raw.read_message(timeout=T) == (TEXT, bytes([65 + i % 26]) * n)


@BOTH
async def test_a_lone_ping_is_answered_while_nothing_else_is_sent(serve, inline):
    # The pong is queued by whoever read the ping; a parked writer must be told.
    server = await serve(echo_server(inline))
    async with await RawWebSocket.connect(server.port, "/echo") as raw:
        for payload in (b"one", b"two", b""):
            await raw.send_frame(PING, payload)
            frame = await raw.read_frame(timeout=T)
            assert (frame.opcode, frame.payload) == (PONG, payload)


@BOTH
async def test_a_ping_sent_while_the_handler_blocks_is_answered_after_it(serve, inline):
    # A sync handler holds the loop; the ping behind the message is answered, and the order of
    # the reply and the pong says who answered first.
    release = threading.Event()

    def slow_echo(ws: hyperws.Websocket, message: object) -> None:
        release.wait(T)
        ws.send(message)

    server = hyperws.Server(inline_reads=inline)
    server.ws("/slow", lambda ws: ws.on("message", lambda m, b: slow_echo(ws, m)))
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/slow") as raw:
        await raw.send_raw(build_frame(TEXT, b"hold") + build_frame(PING, b"p"))
        threading.Timer(0.2, release.set).start()
        frames = [await raw.read_frame(timeout=T) for _ in range(2)]
    assert sorted((f.opcode, f.payload) for f in frames) == [(TEXT, b"hold"), (PONG, b"p")]


@BOTH
@pytest.mark.parametrize("place", ["handler", "task", "thread"])
async def test_replies_from_anywhere_keep_the_order_of_the_requests(serve, inline, place):
    def reply(ws: hyperws.Websocket, message: object) -> None:
        if place == "handler":
            ws.send(message)
        elif place == "task":

            async def later() -> None:
                ws.send(message)

            asyncio.get_running_loop().create_task(later())
        else:
            # Joined, so that the next request's reply cannot overtake this one.
            sender = threading.Thread(target=ws.send, args=(message,))
            sender.start()
            sender.join(T)

    server = hyperws.Server(inline_reads=inline)
    server.ws("/rr", lambda ws: ws.on("message", lambda m, b: reply(ws, m)))
    await serve(server)
    async with connect(url(server, "/rr"), open_timeout=T) as client:
        for i in range(50):
            await client.send(f"r{i}")
        assert [await asyncio.wait_for(client.recv(), T) for _ in range(50)] == [
            f"r{i}" for i in range(50)
        ]


@BOTH
async def test_the_close_handshake_and_the_end_of_stream(serve, inline):
    closes: list[tuple[int, str]] = []

    def on_open(ws: hyperws.Websocket) -> None:
        ws.on("message", lambda m, b: ws.send(m, b))
        ws.on("close", lambda code, message: closes.append((code, message)))

    server_side: list[hyperws.Websocket] = []
    server = hyperws.Server(inline_reads=inline)
    server.ws("/ws", on_open)
    server.ws("/closing", server_side.append)
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await raw.send_text(b"before close")
        assert await raw.read_message(timeout=T) == (TEXT, b"before close")
        await raw.send_close(4001, "bye")
        frame = await raw.expect_close(timeout=T)
        assert frame.close_code == 4001
    # Events of different connections keep no order between them: the first must be over.
    await until(lambda: len(closes) == 1)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await raw.send_text(b"then gone")
        assert await raw.read_message(timeout=T) == (TEXT, b"then gone")
    # the second client left without a close frame
    await until(lambda: len(closes) == 2)
    # the server closes first: the client's answer, read where the connection is read, ends it
    async with await RawWebSocket.connect(server.port, "/closing") as raw:
        await until(lambda: len(server_side) == 1)
        server_side[0].on("close", lambda code, message: closes.append((code, message)))
        server_side[0].close(4002, "server first")
        assert (await raw.read_frame(timeout=T)).close_code == 4002
        await raw.send_close(4002, "server first")
        assert await raw.expect_eof(timeout=T) == b""
    await until(lambda: len(closes) == 3)
    assert closes == [(4001, "bye"), (1006, ""), (4002, "server first")]


@BOTH
async def test_reading_pauses_while_async_listeners_are_behind_and_resumes(serve, inline):
    # max_pending_bytes: the server stops reading a connection whose listeners are behind, and
    # reads it again when they caught up; nothing is lost either way.
    gate = asyncio.Event()
    got: list[bytes] = []

    async def on_message(message: object, is_binary: bool) -> None:
        await gate.wait()
        got.append(bytes(message))  # type: ignore[arg-type]

    server = hyperws.Server(inline_reads=inline, max_pending_bytes=64 * 1024)
    server.ws("/slow", lambda ws: ws.on("message", on_message), message_type="Buffer")
    await serve(server)
    chunk = b"x" * 16 * 1024
    async with await RawWebSocket.connect(server.port, "/slow") as raw:
        burst = b"".join(build_frame(2, chunk) for _ in range(1600))
        writing = asyncio.ensure_future(raw.send_raw(burst))
        # The server stopped reading: what it holds for Python stays near its bound (one read past it).
        await until(lambda: server.stats()["pending_bytes"] >= 64 * 1024)
        for _ in range(20):
            assert server.stats()["pending_bytes"] <= 64 * 1024 + 256 * 1024
            await asyncio.sleep(0.01)
        assert not writing.done(), "the 26 MB burst fit in the socket buffers: nothing was paused"
        gate.set()
        await until(lambda: len(got) == 1600, timeout=T)
        await asyncio.wait_for(writing, T)
    assert all(m == chunk for m in got)
