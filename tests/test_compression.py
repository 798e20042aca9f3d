"""permessage-deflate (RFC 7692): negotiation, compressed messages both ways, publish, and bad input."""

from __future__ import annotations

import asyncio
import zlib

import pytest
import websockets

import hyperws

from helpers import Recorder, until, url
from rawws import BINARY, CLOSE, CONT, PING, TEXT, RawWebSocket, build_frame

TAIL = b"\x00\x00\xff\xff"
T = 5.0


def deflate(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """One message compressed as a client does: raw DEFLATE, sync flush, tail removed."""
    compressor = compressor or zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[: -len(TAIL)]


def inflate(payload: bytes, decompressor: zlib._Decompress | None = None) -> bytes:
    decompressor = decompressor or zlib.decompressobj(wbits=-15)
    return decompressor.decompress(payload + TAIL)


def echo(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary, compress=True))


async def echo_server(serve, **options) -> hyperws.Server:
    server = hyperws.Server()
    server.ws("/dedicated", echo, compression="dedicated", **options)
    server.ws("/small", echo, compression="dedicated", compression_window_bits=11, **options)
    server.ws("/shared", echo, compression="shared", **options)
    server.ws("/plain", echo, **options)
    return await serve(server)


async def offer(server: hyperws.Server, path: str, extensions: str) -> RawWebSocket:
    return await RawWebSocket.connect(
        server.port, path, extra=[("Sec-WebSocket-Extensions", extensions)]
    )


# -- negotiation ----------------------------------------------------------------------------------

PMD = "permessage-deflate"


@pytest.mark.parametrize(
    ("path", "offered", "answered"),
    [
        ("/plain", PMD, None),
        ("/dedicated", PMD, PMD),
        ("/shared", PMD, f"{PMD}; server_no_context_takeover; client_no_context_takeover"),
        ("/dedicated", f"{PMD}; server_no_context_takeover", f"{PMD}; server_no_context_takeover"),
        ("/dedicated", f"{PMD}; client_no_context_takeover", f"{PMD}; client_no_context_takeover"),
        ("/dedicated", f"{PMD}; server_max_window_bits=10", f"{PMD}; server_max_window_bits=10"),
        ("/dedicated", f"{PMD}; client_max_window_bits", f"{PMD}; client_max_window_bits=15"),
        ("/small", f"{PMD}; client_max_window_bits=13", f"{PMD}; client_max_window_bits=11"),
        ("/small", f"{PMD}; server_max_window_bits=9", f"{PMD}; server_max_window_bits=9"),
        (
            "/shared",
            f"{PMD}; server_max_window_bits=9",
            f"{PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
        ),
        # offers that cannot be honoured are declined: the next one is taken, or none
        ("/dedicated", f"{PMD}; server_max_window_bits=16", None),
        ("/dedicated", f"{PMD}; server_max_window_bits", None),
        ("/dedicated", f"{PMD}; mystery_parameter", None),
        ("/dedicated", f"{PMD}; client_no_context_takeover=yes", None),
        ("/dedicated", f"{PMD}; mystery_parameter, {PMD}", PMD),
        (
            "/dedicated",
            f"x-webkit-deflate-frame, {PMD}; server_no_context_takeover",
            f"{PMD}; server_no_context_takeover",
        ),
        ("/dedicated", "x-webkit-deflate-frame", None),
    ],
)
async def test_negotiation(serve, path, offered, answered):
    server = await echo_server(serve)
    async with await offer(server, path, offered) as raw:
        assert raw.response.status == 101  # an extension never fails the handshake
        assert raw.response.header("Sec-WebSocket-Extensions") == answered
        message = b"still a working connection, " * 8
        await raw.send_text(message)
        frame = await raw.read_frame()
        assert frame.rsv == (4 if answered else 0)
        got = inflate(frame.payload) if frame.rsv else frame.payload
        assert got == message


async def test_the_upgrade_request_shows_the_offered_extensions(serve):
    seen = []

    def upgrade(request: hyperws.Request, response: hyperws.Response) -> None:
        seen.append(request.extensions)
        response.upgrade()

    server = hyperws.Server()
    server.upgrade("/dedicated", upgrade)
    server.ws("/dedicated", echo, compression="dedicated")
    await serve(server)
    async with await offer(server, "/dedicated", f"{PMD}; client_max_window_bits") as raw:
        assert (
            raw.response.header("Sec-WebSocket-Extensions") == f"{PMD}; client_max_window_bits=15"
        )
    assert seen and PMD in str(seen[0])


# -- with a real client ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dedicated", "/small", "/shared", "/plain"])
async def test_echo_with_the_websockets_client(serve, path):
    server = await echo_server(serve, max_payload_length=1 << 20)
    messages = ["hello", "ünïcode " * 500, b"\x00\x01\x02" * 10_000, bytes(range(256)) * 400, ""]
    async with websockets.connect(url(server, path), max_size=None) as client:
        negotiated = client.response.headers.get("Sec-WebSocket-Extensions")
        assert (negotiated is None) == (path == "/plain")
        for _ in range(3):  # again, so that kept contexts are used
            for message in messages:
                await client.send(message)
                assert await client.recv() == message


# -- what goes on the wire ------------------------------------------------------------------------


async def sender_server(serve, **options) -> tuple[hyperws.Server, asyncio.Future]:
    opened: asyncio.Future = asyncio.get_running_loop().create_future()
    server = hyperws.Server()
    server.ws("/ws", lambda ws: opened.set_result(ws), **options)
    return await serve(server), opened


async def test_compress_true_sets_rsv1_and_compress_false_sends_plain(serve):
    server, opened = await sender_server(serve, compression="shared")
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        text = "the quick brown fox " * 20
        assert ws.send(text, compress=True)
        frame = await raw.read_frame()
        assert (frame.rsv, frame.opcode) == (4, TEXT)
        assert len(frame.payload) < len(text) / 4
        assert inflate(frame.payload) == text.encode()

        assert ws.send(text)  # compress defaults to False, as in HyperExpress
        frame = await raw.read_frame()
        assert (frame.rsv, frame.payload) == (0, text.encode())

        assert ws.send(b"\x00" * 1000, True, True)
        frame = await raw.read_frame()
        assert (frame.rsv, frame.opcode, inflate(frame.payload)) == (4, BINARY, b"\x00" * 1000)


@pytest.mark.parametrize(("compression", "rsv"), [("shared", 0), ("dedicated", 4)])
async def test_short_messages_compressed_on_their_own_stay_plain(serve, compression, rsv):
    # alone, a message under 128 bytes shrinks by a few bytes at most; with a kept context it does not
    server, opened = await sender_server(serve, compression=compression)
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        short = "x" * 127
        assert ws.send(short, compress=True)
        frame = await raw.read_frame()
        assert frame.rsv == rsv
        assert (inflate(frame.payload) if frame.rsv else frame.payload) == short.encode()


async def test_compress_true_without_the_extension_sends_plain(serve):
    server, opened = await sender_server(serve, compression="shared")
    async with await RawWebSocket.connect(server.port, "/ws") as raw:  # offers nothing
        ws = await asyncio.wait_for(opened, T)
        assert ws.send("plain anyway", compress=True)
        frame = await raw.read_frame()
        assert (frame.rsv, frame.payload) == (0, b"plain anyway")


async def test_dedicated_keeps_its_context_so_repeats_get_shorter(serve):
    server, opened = await sender_server(serve, compression="dedicated")
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        update = '{"symbol": "ACME", "bid": 101.25, "ask": 101.5, "venue": "XNAS"}'
        decompressor = zlib.decompressobj(wbits=-15)
        sizes = []
        for _ in range(3):
            ws.send(update, compress=True)
            frame = await raw.read_frame()
            assert frame.rsv == 4
            assert inflate(frame.payload, decompressor) == update.encode()
            sizes.append(len(frame.payload))
        assert sizes[1] < sizes[0] / 2 and sizes[2] <= sizes[1]


async def test_shared_compresses_each_message_on_its_own(serve):
    server, opened = await sender_server(serve, compression="shared")
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        payloads = []
        for _ in range(2):
            ws.send("same message, same bytes " * 8, compress=True)
            payloads.append((await raw.read_frame()).payload)
        assert payloads[0] == payloads[1]
        assert inflate(payloads[1]) == b"same message, same bytes " * 8  # a fresh decompressor


async def test_a_smaller_window_asked_by_the_client_is_kept(serve):
    server, opened = await sender_server(serve, compression="dedicated")
    async with await offer(server, "/ws", f"{PMD}; server_max_window_bits=9") as raw:
        ws = await asyncio.wait_for(opened, T)
        # a repeat 2 KiB back: a 512-byte window cannot refer to it
        block = bytes(range(256)) * 8
        decompressor = zlib.decompressobj(wbits=-9)
        for _ in range(3):
            ws.send(block + block, compress=True)
            frame = await raw.read_frame()
            assert inflate(frame.payload, decompressor) == block + block


# -- publish --------------------------------------------------------------------------------------


async def test_a_compressed_publish_reaches_every_kind_of_subscriber(serve):
    server = hyperws.Server()
    for path, compression in [
        ("/shared", "shared"),
        ("/dedicated", "dedicated"),
        ("/plain", "disabled"),
    ]:
        server.ws(path, lambda ws: ws.subscribe("news"), compression=compression)
    await serve(server)
    news = "breaking: " + "compression works " * 30
    subscribers = [
        ("/shared", PMD, 4),  # compressed once, the same frame for all of them
        ("/dedicated", PMD, 4),  # compressed with its own context
        ("/dedicated", f"{PMD}; server_no_context_takeover", 4),
        ("/plain", PMD, 0),
        ("/shared", None, 0),  # the client offered nothing
    ]
    raws = []
    for path, offered, _ in subscribers:
        extra = [("Sec-WebSocket-Extensions", offered)] if offered else []
        raws.append(await RawWebSocket.connect(server.port, path, extra=extra))
    async with websockets.connect(url(server, "/shared")) as client:
        while server.num_subscribers("news") < len(subscribers) + 1:
            await asyncio.sleep(0.01)
        assert server.publish("news", news, compress=True)
        assert await client.recv() == news
    for raw, (path, offered, rsv) in zip(raws, subscribers, strict=True):
        frame = await raw.read_frame()
        got = inflate(frame.payload) if frame.rsv else frame.payload
        assert (frame.rsv, got) == (rsv, news.encode()), (path, offered)
        await raw.aclose()


async def test_publishes_and_sends_share_a_dedicated_context_in_order(serve):
    opened: asyncio.Future = asyncio.get_running_loop().create_future()
    server = hyperws.Server()

    def on_open(ws: hyperws.Websocket) -> None:
        ws.subscribe("ticks")
        opened.set_result(ws)

    server.ws("/ws", on_open, compression="dedicated")
    await serve(server)
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        expected = []
        for i in range(20):
            tick = f'{{"symbol": "ACME", "seq": {i}, "bid": 101.25, "ask": 101.5}}'
            if i % 3:
                server.publish("ticks", tick, compress=True)
            else:
                ws.send(tick, compress=True)
            expected.append(tick.encode())
        decompressor = zlib.decompressobj(wbits=-15)  # one context for the whole connection
        for message in expected:
            frame = await raw.read_frame()
            assert frame.rsv == 4
            assert inflate(frame.payload, decompressor) == message


@pytest.mark.parametrize("compression", ["shared", "dedicated"])
async def test_a_compressed_publish_during_a_stream_follows_the_message(serve, compression):
    server, opened = await sender_server(serve, compression=compression)
    gate, first_queued = asyncio.Event(), asyncio.Event()

    async def source():
        yield b"part1"
        first_queued.set()
        await gate.wait()
        yield b"part2"

    news = "published while streaming " * 10
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        ws.subscribe("news")
        task = asyncio.ensure_future(ws.stream(source()))
        await asyncio.wait_for(first_queued.wait(), T)
        await until(lambda: ws.buffered == 0)
        assert server.publish("news", news, compress=True)
        gate.set()
        await asyncio.wait_for(task, T)
        fragments = [await raw.read_frame() for _ in range(3)]
        assert [(f.rsv, f.payload) for f in fragments] == [(0, b"part1"), (0, b"part2"), (0, b"")]
        frame = await raw.read_frame()
        assert (frame.rsv, inflate(frame.payload)) == (4, news.encode())


async def test_ws_publish_with_compress_excludes_the_sender(serve):
    server = hyperws.Server()

    def relay(ws: hyperws.Websocket) -> None:
        ws.subscribe("room")
        ws.on("message", lambda message, is_binary: ws.publish("room", message, compress=True))

    server.ws("/room", relay, compression="shared")
    await serve(server)
    async with (
        websockets.connect(url(server, "/room")) as alice,
        websockets.connect(url(server, "/room")) as bob,
    ):
        while server.num_subscribers("room") < 2:
            await asyncio.sleep(0.01)
        await alice.send("hi bob " * 10)
        assert await bob.recv() == "hi bob " * 10
        await bob.send("hi alice")
        assert await alice.recv() == "hi alice"


# -- compressed messages from the client ----------------------------------------------------------


async def recorder_server(serve, **options) -> tuple[hyperws.Server, Recorder]:
    recorder = Recorder()

    def on_open(ws: hyperws.Websocket) -> None:
        ws.on("message", recorder.listener("message"))
        ws.on("close", recorder.listener("close"))

    server = hyperws.Server()
    server.ws("/ws", on_open, **options)
    return await serve(server), recorder


async def test_compressed_messages_from_the_client_reach_the_handler(serve):
    server, recorder = await recorder_server(serve, compression="dedicated")
    async with await offer(server, "/ws", PMD) as raw:
        compressor = zlib.compressobj(wbits=-15)  # the client keeps its context too
        await raw.send_frame(TEXT, deflate("héllo".encode(), compressor), rsv=4)
        await raw.send_frame(TEXT, deflate("héllo".encode(), compressor), rsv=4)
        await raw.send_frame(BINARY, b"plain", rsv=0)  # uncompressed messages stay allowed
        whole = deflate(b"\x07" * 5000, compressor)
        await raw.send_frame(BINARY, whole[:3], rsv=4, fin=False)
        await raw.send_frame(PING, b"between")
        await raw.send_frame(CONT, whole[3:], fin=True)
        messages = await recorder.wait("message", 4)
    assert messages == [
        ("héllo", False),
        ("héllo", False),
        (b"plain", True),
        (b"\x07" * 5000, True),
    ]


async def test_a_decompression_bomb_is_closed_with_1009_before_it_is_inflated(serve):
    server, recorder = await recorder_server(serve, compression="shared")  # 32 KiB limit
    bomb = deflate(b"\x00" * (16 * 1024 * 1024))  # about 16 KiB that inflate to 16 MiB
    assert len(bomb) < 20 * 1024
    async with await offer(server, "/ws", PMD) as raw:
        await raw.send_frame(BINARY, bomb, rsv=4)
        close = await raw.expect_close()
        assert close.close_code == 1009
    ((code, _reason),) = await recorder.wait("close", 1)
    assert code == 1009
    assert recorder.of("message") == []


async def test_the_limit_applies_to_the_inflated_size_exactly(serve):
    server, recorder = await recorder_server(
        serve, compression="dedicated", max_payload_length=1000
    )
    async with await offer(server, "/ws", f"{PMD}; client_no_context_takeover") as raw:
        await raw.send_frame(BINARY, deflate(b"a" * 1000), rsv=4)
        assert await recorder.wait("message", 1) == [(b"a" * 1000, True)]
        await raw.send_frame(BINARY, deflate(b"a" * 1001), rsv=4)
        assert (await raw.expect_close()).close_code == 1009


@pytest.mark.parametrize(
    ("what", "frames", "code"),
    [
        (
            "RSV1 on a continuation",
            [build_frame(TEXT, b"a", fin=False), build_frame(CONT, b"b", rsv=4)],
            1002,
        ),
        ("RSV1 on a ping", [build_frame(PING, b"", rsv=4)], 1002),
        ("RSV2", [build_frame(TEXT, b"a", rsv=2)], 1002),
        ("data that is not DEFLATE", [build_frame(BINARY, b"\xff\xff\xff\xff", rsv=4)], 1007),
        ("inflated text that is not UTF-8", [build_frame(TEXT, deflate(b"\xc3\x28"), rsv=4)], 1007),
    ],
)
async def test_bad_compressed_input_gets_its_close_code(serve, what, frames, code):
    server, recorder = await recorder_server(serve, compression="dedicated")
    async with await offer(server, "/ws", PMD) as raw:
        await raw.send_raw(b"".join(frames))
        assert (await raw.expect_close()).close_code == code, what
    assert recorder.of("message") == []


@pytest.mark.parametrize("path_offer", [("/ws", None), ("/ws", "x-webkit-deflate-frame")])
async def test_rsv1_without_negotiation_is_1002(serve, path_offer):
    path, offered = path_offer
    server, _ = await recorder_server(serve, compression="shared")
    extra = [("Sec-WebSocket-Extensions", offered)] if offered else []
    async with await RawWebSocket.connect(server.port, path, extra=extra) as raw:
        await raw.send_frame(TEXT, deflate(b"hello"), rsv=4)
        assert (await raw.expect_close()).close_code == 1002


# -- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "fast"}, "compression must be one of"),
        ({"compression": True}, "compression must be one of"),
        (
            {"compression": "dedicated", "compression_window_bits": 16},
            "compression_window_bits must be",
        ),
        (
            {"compression": "dedicated", "compression_window_bits": 7},
            "compression_window_bits must be",
        ),
        (
            {"compression": "dedicated", "compression_window_bits": 10.0},
            "compression_window_bits must be",
        ),
        (
            {"compression": "shared", "compression_window_bits": 10},
            "applies to compression='dedicated'",
        ),
    ],
)
def test_bad_compression_options_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        hyperws.Server().ws("/ws", echo, **options)


async def test_close_frames_are_never_compressed(serve):
    server, opened = await sender_server(serve, compression="shared")
    async with await offer(server, "/ws", PMD) as raw:
        ws = await asyncio.wait_for(opened, T)
        ws.close(1000, "bye " * 20)
        frame = await raw.read_frame()
        assert (frame.opcode, frame.rsv, frame.close_code) == (CLOSE, 0, 1000)
