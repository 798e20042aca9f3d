"""Malformed and hostile input, frame by frame: the server closes with the right code, keeps serving
everyone else, and reports the code in the 'close' event."""

from __future__ import annotations

import asyncio
import struct

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import Recorder, url
from rawws import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    apply_mask,
    build_frame,
)

T = 5


@pytest.fixture
async def proto(serve):
    """A server whose routes record every event: ``/echo`` (default options) and ``/small``
    (max_payload_length=1024). Returns (server, recorder)."""
    rec = Recorder()
    server = hyperws.Server()

    def on_open(ws):
        rec.record("open", ws)
        ws.on("message", lambda m, b: (rec.record("message", m, b), ws.send(m, b)))
        ws.on("close", rec.listener("close"))
        ws.on("ping", rec.listener("ping"))
        ws.on("pong", rec.listener("pong"))

    server.ws("/echo", on_open)
    server.ws("/small", on_open, max_payload_length=1024)
    return await serve(server), rec


async def expect_failure(ws: RawWebSocket, code: int) -> None:
    """The server's next frame (after any echo/pong) is a close with ``code``."""
    frame = await ws.expect_close()
    assert frame.close_code == code, (
        f"expected close {code}, got {frame.close_code} {frame.payload!r}"
    )
    assert not frame.masked and frame.fin


async def still_serving(server: hyperws.Server) -> None:
    async with connect(url(server, "/echo"), open_timeout=T) as client:
        await client.send("still here")
        assert await asyncio.wait_for(client.recv(), T) == "still here"


# -- message size --------------------------------------------------------------------------------


async def test_message_over_max_payload_length_is_1009(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/small") as ws:
        await ws.send_binary(b"x" * 1025)
        await expect_failure(ws, 1009)
    assert rec.of("message") == []
    await still_serving(server)


async def test_fragmented_message_over_max_payload_length_is_1009(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/small") as ws:
        await ws.send_frame(TEXT, b"a" * 600, fin=False)
        await ws.send_frame(CONT, b"b" * 600, fin=True)
        await expect_failure(ws, 1009)
    assert rec.of("message") == []


async def test_announced_length_over_the_limit_is_refused_before_the_payload(proto):
    # only the header of a 1 TiB frame: the server must not wait for (or buffer) the payload
    server, _ = proto
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\x00\x00\x00\x00"
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_raw(header)
        await expect_failure(ws, 1009)


async def test_default_max_payload_length_is_32_kib(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_binary(b"x" * (32 * 1024))
        assert await ws.read_message() == (BINARY, b"x" * (32 * 1024))
        await ws.send_binary(b"x" * (32 * 1024 + 1))
        await expect_failure(ws, 1009)


# -- UTF-8 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"abc\x80def",
        b"\xc0\x80",  # overlong NUL
        b"\xed\xa0\x80",  # UTF-16 surrogate
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"ok \xe2\x82",  # truncated at the end of the message
    ],
)
async def test_invalid_utf8_text_is_1007(proto, payload):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_text(payload)
        await expect_failure(ws, 1007)
    assert rec.of("message") == []
    await still_serving(server)


async def test_invalid_utf8_split_across_fragments_is_1007(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        # each fragment alone looks fine, the join is invalid: E2 82 then 28
        await ws.send_frame(TEXT, b"hello \xe2\x82", fin=False)
        await ws.send_frame(CONT, b"(world", fin=True)
        await expect_failure(ws, 1007)
    assert rec.of("message") == []


async def test_invalid_utf8_in_an_unfinished_message_is_1007(proto):
    # the server does not wait for the end of the message to refuse it
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(TEXT, b"fine", fin=False)
        await ws.send_frame(CONT, b"\xff\xfe", fin=False)
        await expect_failure(ws, 1007)


async def test_valid_utf8_split_inside_a_character_is_fine(proto):
    server, _ = proto
    data = "€𝄞".encode()  # e2 82 ac f0 9d 84 9e
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        for i in range(len(data)):
            await ws.send_frame(TEXT if i == 0 else CONT, data[i : i + 1], fin=i == len(data) - 1)
        assert await ws.read_message() == (TEXT, data)


async def test_binary_messages_are_not_checked_for_utf8(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_binary(b"\xff\xfe\xc0\x80")
        assert await ws.read_message() == (BINARY, b"\xff\xfe\xc0\x80")


async def test_invalid_utf8_close_reason_is_1007(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(CLOSE, struct.pack("!H", 1000) + b"\xff\xfe")
        await expect_failure(ws, 1007)


# -- framing violations (1002) -------------------------------------------------------------------


async def test_unmasked_client_frame_is_1002(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(TEXT, b"not masked", mask=False)
        await expect_failure(ws, 1002)
    assert rec.of("message") == []
    await still_serving(server)


async def test_unmasked_control_frame_is_1002(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(PING, b"x", mask=False)
        await expect_failure(ws, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcode_is_1002(proto, opcode):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(opcode, b"payload")
        await expect_failure(ws, 1002)
    assert rec.of("message") == []


async def test_reserved_opcode_inside_a_fragmented_message_is_1002(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(TEXT, b"start", fin=False)
        await ws.send_frame(0xB, b"", fin=True)
        await expect_failure(ws, 1002)


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING])
async def test_rsv_bits_without_an_extension_are_1002(proto, rsv, opcode):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(opcode, b"data", rsv=rsv)
        await expect_failure(ws, 1002)
    assert rec.of("message") == [] and rec.of("ping") == []


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
async def test_control_frame_over_125_bytes_is_1002(proto, opcode):
    server, _ = proto
    payload = struct.pack("!H", 1000) + b"r" * 124 if opcode == CLOSE else b"p" * 126
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(opcode, payload)
        frame = await ws.read_frame()  # the very next frame: no pong for an oversized ping
        assert (frame.opcode, frame.close_code) == (CLOSE, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
async def test_fragmented_control_frame_is_1002(proto, opcode):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(opcode, b"", fin=False)
        await expect_failure(ws, 1002)


async def test_oversized_ping_is_not_reported(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(PING, b"p" * 126)
        await expect_failure(ws, 1002)
    await rec.wait("close")
    assert rec.of("ping") == []


async def test_continuation_without_a_start_is_1002(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(CONT, b"orphan", fin=True)
        await expect_failure(ws, 1002)
    assert rec.of("message") == []


async def test_continuation_after_a_finished_message_is_1002(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_text("complete")
        assert await ws.read_message() == (TEXT, b"complete")
        await ws.send_frame(CONT, b"late", fin=True)
        await expect_failure(ws, 1002)


@pytest.mark.parametrize("second", [TEXT, BINARY])
async def test_new_data_frame_inside_a_fragmented_message_is_1002(proto, second):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(TEXT, b"first part", fin=False)
        await ws.send_frame(second, b"intruder", fin=True)
        await expect_failure(ws, 1002)
    assert rec.of("message") == []


async def test_messages_before_a_violation_are_delivered_and_after_it_are_not(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_raw(
            build_frame(TEXT, b"before")
            + build_frame(TEXT, b"bad", mask=False)
            + build_frame(TEXT, b"after")
        )
        assert await ws.read_message() == (TEXT, b"before")
        await expect_failure(ws, 1002)
    await rec.wait("close")
    assert [m for m, _ in rec.of("message")] == ["before"]


# -- close frames from the client ----------------------------------------------------------------


async def test_close_payload_of_one_byte_is_1002(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(CLOSE, b"\x03")
        await expect_failure(ws, 1002)
    ((code, _),) = await rec.wait("close")
    assert code == 1002


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
async def test_invalid_close_code_is_1002(proto, code):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_close(code, "reason")
        await expect_failure(ws, 1002)
    ((got, _),) = await rec.wait("close")
    assert got == 1002


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
)
async def test_valid_close_code_is_reported_and_echoed(proto, code):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_close(code, "bye ✓")
        frame = await ws.expect_close()
        assert frame.close_code == code
        assert await ws.expect_eof() == b""  # the server closes TCP after the handshake
    assert await rec.first("close") == (code, "bye ✓")


# -- after a failure -----------------------------------------------------------------------------


async def test_failure_is_reported_in_the_close_event_when_the_client_hangs_up(proto):
    server, rec = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(TEXT, b"\xff")
        await expect_failure(ws, 1007)
    # the client dropped TCP without answering: 'close' reports the failure code
    ((code, _),) = await rec.wait("close")
    assert code == 1007


async def test_server_drops_a_failed_connection_that_never_answers_the_close(serve):
    # close_timeout: how long the server waits for the client's close frame
    server = hyperws.Server(close_timeout=0.5)
    rec = Recorder()
    server.ws("/echo", lambda ws: ws.on("close", rec.listener("close")))
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_frame(TEXT, b"x", mask=False)
        await expect_failure(ws, 1002)
        assert await ws.expect_eof(timeout=10) == b""
    ((code, _),) = await rec.wait("close", timeout=10)
    assert code == 1002


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (build_frame(TEXT, b"x", mask=False), 1002),
        (build_frame(TEXT, b"\xff"), 1007),
        (build_frame(BINARY, b"x" * 2000), 1009),
    ],
    ids=["1002", "1007", "1009"],
)
async def test_server_closes_tcp_when_the_client_answers_a_failure_close(serve, frame, code):
    server = hyperws.Server(close_timeout=60)
    rec = Recorder()
    server.ws("/echo", lambda ws: ws.on("close", rec.listener("close")), max_payload_length=1024)
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_raw(frame)
        await expect_failure(ws, code)
        await ws.send_close(code)  # the client completes the close handshake
        # a safety net far below close_timeout=60: the server should close right away
        assert await ws.expect_eof(timeout=5) == b""
    ((got, _),) = await rec.wait("close")
    assert got == code


async def test_websockets_client_sees_1009_after_the_close_handshake(serve):
    server = hyperws.Server(close_timeout=60)
    server.ws("/echo", lambda ws: None, max_payload_length=16)
    await serve(server)
    # the client waits up to 8 s for the server to close TCP; the test waits 5 s (a safety net far
    # below the server's close_timeout of 60 s)
    client = await connect(url(server, "/echo"), open_timeout=T, close_timeout=8)
    try:
        await client.send("x" * 17)
        await asyncio.wait_for(client.wait_closed(), 5)
        assert client.close_code == 1009
    finally:
        client.transport.abort()


async def test_garbage_after_the_upgrade_is_refused(proto):
    server, _ = proto
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not a frame: unmasked, opcode 7
        frame = await ws.expect_close()
        assert frame.close_code == 1002
    await still_serving(server)


async def test_ping_masked_payload_is_unmasked_in_the_pong(proto):
    server, rec = proto
    key = b"\xaa\xbb\xcc\xdd"
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_raw(bytes([0x89, 0x80 | 4]) + key + apply_mask(b"abcd", key))
        pong = await ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"abcd")
    assert (await rec.first("ping")) == (b"abcd",)


async def test_64_bit_length_with_the_high_bit_set_is_refused(proto):
    server, _ = proto
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x00\x00\x00\x00"
    async with await RawWebSocket.connect(server.port, "/echo") as ws:
        await ws.send_raw(header)
        frame = await ws.expect_close()
        assert frame.close_code in (1002, 1009)
    await still_serving(server)
