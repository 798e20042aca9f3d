"""ws.stream() and ws.writable: one message sent as fragments, respecting backpressure."""

from __future__ import annotations

import asyncio
import io
import os

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import TIMEOUT, until, url
from rawws import BINARY, CONT, TEXT, RawWebSocket

MIB = 1024 * 1024


@pytest.fixture
async def streamer(serve):
    """A server whose handler exposes the Websocket; max_backpressure is small to exercise waits."""
    opened: list[hyperws.Websocket] = []
    server = hyperws.Server()
    server.ws(
        "/s", lambda ws: opened.append(ws), max_backpressure=256 * 1024, max_payload_length=64 * MIB
    )
    await serve(server)
    return server, opened


async def test_stream_of_a_10_mib_async_generator_arrives_as_one_message(streamer):
    server, opened = streamer
    blocks = [os.urandom(64 * 1024) for _ in range(160)]  # 10 MiB

    async def source():
        for block in blocks:
            yield block
            await asyncio.sleep(0)

    async with connect(url(server, "/s"), max_size=64 * MIB, compression=None) as client:
        await until(lambda: opened)
        # The client reads while the server streams: the stream waits for it (backpressure).
        _, message = await asyncio.wait_for(
            asyncio.gather(opened[0].stream(source()), client.recv()), 30
        )
    assert message == b"".join(blocks)


async def test_stream_frames_are_fragments_of_one_message(streamer):
    server, opened = streamer
    async with await RawWebSocket.connect(server.port, "/s") as raw:
        await until(lambda: opened)
        await opened[0].stream(["ab", "cd", "é"])
        frames = [await raw.read_frame() for _ in range(4)]
    assert [(f.opcode, f.fin, f.payload) for f in frames] == [
        (TEXT, False, b"ab"),
        (CONT, False, b"cd"),
        (CONT, False, "é".encode()),
        (CONT, True, b""),
    ]


@pytest.mark.parametrize(
    "make_source",
    [
        lambda data: io.BytesIO(data),
        lambda data: [data[:1000], data[1000:]],
        lambda data: data,
    ],
    ids=["file", "iterable", "bytes"],
)
async def test_stream_sources(streamer, make_source):
    server, opened = streamer
    data = os.urandom(200_000)
    async with connect(url(server, "/s"), max_size=64 * MIB, compression=None) as client:
        await until(lambda: opened)
        _, message = await asyncio.wait_for(
            asyncio.gather(opened[0].stream(make_source(data)), client.recv()), TIMEOUT
        )
        assert message == data


async def test_stream_from_a_stream_reader(streamer):
    server, opened = streamer
    reader = asyncio.StreamReader()
    reader.feed_data(b"x" * 100_000)
    reader.feed_eof()
    async with connect(url(server, "/s"), compression=None) as client:
        await until(lambda: opened)
        await opened[0].stream(reader)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"x" * 100_000


async def test_send_during_a_stream_raises_and_ping_still_goes_out(streamer):
    server, opened = streamer
    gate, first_queued = asyncio.Event(), asyncio.Event()

    async def source():
        yield b"first"
        first_queued.set()
        await gate.wait()
        yield b"second"

    async with await RawWebSocket.connect(server.port, "/s") as raw:
        await until(lambda: opened)
        ws = opened[0]
        task = asyncio.ensure_future(ws.stream(source()))
        await asyncio.wait_for(first_queued.wait(), TIMEOUT)
        await until(lambda: ws.buffered == 0)
        with pytest.raises(RuntimeError, match="streamed"):
            ws.send("interleaved")
        with pytest.raises(RuntimeError, match="already being streamed"):
            await ws.stream([b"other"])
        assert ws.ping(b"p") is True
        gate.set()
        await asyncio.wait_for(task, TIMEOUT)
        frames = [await raw.read_frame() for _ in range(4)]
        assert ws.send("after") is True
        after = await raw.read_frame()
    assert [(f.opcode, f.payload) for f in frames] == [
        (BINARY, b"first"),
        (0x9, b"p"),
        (CONT, b"second"),
        (CONT, b""),
    ]
    assert (after.opcode, after.payload) == (TEXT, b"after")


async def test_a_publish_during_a_stream_follows_the_message(streamer):
    server, opened = streamer
    gate, first_queued = asyncio.Event(), asyncio.Event()

    async def source():
        yield b"part1"
        first_queued.set()
        await gate.wait()
        yield b"part2"

    async with await RawWebSocket.connect(server.port, "/s") as raw:
        await until(lambda: opened)
        ws = opened[0]
        ws.subscribe("news")
        task = asyncio.ensure_future(ws.stream(source()))
        await asyncio.wait_for(first_queued.wait(), TIMEOUT)
        await until(lambda: ws.buffered == 0)
        assert server.publish("news", "published")
        gate.set()
        await asyncio.wait_for(task, TIMEOUT)
        assert await raw.read_message() == (BINARY, b"part1part2")
        assert await raw.read_message() == (TEXT, b"published")


async def test_invalid_utf8_in_a_text_stream_is_a_value_error(streamer):
    server, opened = streamer
    async with connect(url(server, "/s")):
        await until(lambda: opened)
        with pytest.raises(ValueError, match="UTF-8"):
            await opened[0].stream([b"ok", b"\xff"], is_binary=False)
        assert opened[0].send("usable again") is True


async def test_writable_pipes_one_message_and_reports_backpressure(streamer):
    server, opened = streamer
    chunk = b"y" * (64 * 1024)
    async with connect(url(server, "/s"), max_size=64 * MIB, compression=None) as client:
        await until(lambda: opened)
        ws = opened[0]
        writes = 0
        receiving = asyncio.ensure_future(client.recv())
        async with ws.writable as writer:
            for _ in range(64):  # 4 MiB against a 256 KiB limit: write() says when to wait
                writes += 1
                if not writer.write(chunk):
                    await writer.drain()
        message = await asyncio.wait_for(receiving, 30)
    assert message == chunk * 64
    assert writes == 64


async def test_writable_close_without_writes_sends_an_empty_message(streamer):
    server, opened = streamer
    async with connect(url(server, "/s")) as client:
        await until(lambda: opened)
        opened[0].writable.close()
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == b""


def test_stream_of_an_unsupported_object_is_a_type_error():
    async def run():
        server = hyperws.Server()
        opened: list[hyperws.Websocket] = []
        server.ws("/s", opened.append)
        await server.listen(0, "127.0.0.1")
        try:
            async with connect(url(server, "/s")):
                await until(lambda: opened)
                with pytest.raises(TypeError, match="stream"):
                    await opened[0].stream(42)
        finally:
            await server.close()

    asyncio.run(run())


async def test_a_stream_goes_on_while_publishes_held_behind_it_pass_the_limit(serve):
    """Publishes to a streaming connection wait for the streamed message to end; they count against
    max_backpressure (those past it are dropped) but the stream does not wait for them to drain."""
    opened: list[hyperws.Websocket] = []
    dropped: list[bytes] = []

    def on_open(ws: hyperws.Websocket) -> None:
        ws.subscribe("news")
        ws.on("dropped", lambda message, is_binary: dropped.append(message))
        opened.append(ws)

    server = hyperws.Server()
    server.ws("/s", on_open, max_backpressure=64 * 1024, max_payload_length=64 * MIB)
    await serve(server)
    chunks = [os.urandom(MIB) for _ in range(4)]

    async def source():
        yield chunks[0]
        await until(lambda: opened[0].buffered == 0)  # the client took the first chunk
        for n in range(200):  # 200 KiB held behind the stream: past the 64 KiB limit
            server.publish("news", b"%03d" % n + bytes(1021))
        for chunk in chunks[1:]:
            yield chunk

    async with connect(url(server, "/s"), max_size=64 * MIB, compression=None) as client:
        await until(lambda: opened)
        streamed = asyncio.ensure_future(opened[0].stream(source()))
        assert await asyncio.wait_for(client.recv(), TIMEOUT * 6) == b"".join(chunks)
        await asyncio.wait_for(streamed, TIMEOUT)
        held = [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(200 - len(dropped))]
    assert [int(message[:3]) for message in held] == list(range(len(held)))
    assert 0 < len(held) < 200 and len(dropped) == 200 - len(held)
