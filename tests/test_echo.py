"""Echo of text and binary messages of every size up to max_payload_length, with the websockets client
and with raw frames (fragmentation, control frames between fragments, length encodings, coalesced and
split writes)."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect

from helpers import url
from rawws import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWebSocket, build_frame

T = 10  # safety net (seconds) per await


@pytest.mark.parametrize(
    ("path", "size"),
    [("/echo", n) for n in (0, 1, 125, 126, 127, 1000, 32 * 1024)]
    + [("/big", n) for n in (65535, 65536)],
)
async def test_binary_echo_sizes(echo_server, path, size):
    payload = os.urandom(size)
    async with connect(url(echo_server, path), open_timeout=T, max_size=None) as client:
        await client.send(payload)
        echoed = await asyncio.wait_for(client.recv(), T)
    assert type(echoed) is bytes and echoed == payload


@pytest.mark.parametrize(
    ("path", "size"),
    [("/echo", n) for n in (0, 1, 125, 126, 32 * 1024)] + [("/big", n) for n in (65535, 65536)],
)
async def test_text_echo_sizes(echo_server, path, size):
    text = ("héllo wörld ✓ " * (size // 10 + 1)).encode()[:size].decode("utf-8", "ignore")
    async with connect(url(echo_server, path), open_timeout=T, max_size=None) as client:
        await client.send(text)
        echoed = await asyncio.wait_for(client.recv(), T)
    assert type(echoed) is str and echoed == text


async def test_text_with_every_utf8_width(echo_server):
    text = "a é € 𝄞 😀 \u0000 \uffff \U0010ffff"
    async with connect(url(echo_server, "/echo"), open_timeout=T) as client:
        await client.send(text)
        assert await asyncio.wait_for(client.recv(), T) == text


@pytest.mark.parametrize("size", [1024 * 1024, 4 * 1024 * 1024])
async def test_large_messages_up_to_the_limit(echo_server, size):
    payload = os.urandom(size)
    async with connect(url(echo_server, "/big"), open_timeout=T, max_size=None) as client:
        await client.send(payload)
        assert await asyncio.wait_for(client.recv(), 30) == payload
        await client.send(payload.hex()[: size // 2])
        assert await asyncio.wait_for(client.recv(), 30) == payload.hex()[: size // 2]


async def test_large_message_sent_in_fragments_by_the_client(echo_server):
    chunks = [os.urandom(100_000) for _ in range(20)]
    async with connect(url(echo_server, "/big"), open_timeout=T, max_size=None) as client:
        await client.send(iter(chunks))  # websockets sends an iterable as one fragmented message
        assert await asyncio.wait_for(client.recv(), 30) == b"".join(chunks)


async def test_many_messages_come_back_in_order(echo_server):
    count = 2000
    async with connect(url(echo_server, "/echo"), open_timeout=T) as client:
        for i in range(count):
            await client.send(f"m{i}" if i % 2 else f"m{i}".encode())
        for i in range(count):
            expected = f"m{i}" if i % 2 else f"m{i}".encode()
            assert await asyncio.wait_for(client.recv(), T) == expected


async def test_concurrent_clients_get_their_own_messages(echo_server):
    async def talk(n: int) -> list[str]:
        async with connect(url(echo_server, "/echo"), open_timeout=T) as client:
            got = []
            for i in range(50):
                await client.send(f"{n}:{i}")
                got.append(await asyncio.wait_for(client.recv(), T))
            return got

    results = await asyncio.gather(*(talk(n) for n in range(20)))
    for n, got in enumerate(results):
        assert got == [f"{n}:{i}" for i in range(50)]


async def test_buffer_route_echoes_text_as_text(echo_server):
    async with connect(url(echo_server, "/buffer"), open_timeout=T) as client:
        await client.send("text é")
        assert await asyncio.wait_for(client.recv(), T) == "text é"
        await client.send(b"\xff\x00")
        assert await asyncio.wait_for(client.recv(), T) == b"\xff\x00"


# -- raw frames ----------------------------------------------------------------------------------


async def test_raw_echo_frames_are_unmasked_final_and_without_rsv(echo_server):
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        await ws.send_text("hi")
        frame = await ws.read_frame()
        assert (frame.fin, frame.rsv, frame.opcode, frame.masked, frame.payload) == (
            True,
            0,
            TEXT,
            False,
            b"hi",
        )
        await ws.send_binary(b"\x00\x01")
        frame = await ws.read_frame()
        assert (frame.opcode, frame.masked, frame.payload) == (BINARY, False, b"\x00\x01")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
async def test_raw_length_encodings(echo_server, size):
    # 7-bit, 16-bit (126) and 64-bit (127) lengths, both ways
    payload = os.urandom(size)
    async with await RawWebSocket.connect(echo_server.port, "/big") as ws:
        await ws.send_binary(payload)
        assert await ws.read_message() == (BINARY, payload)


async def test_raw_non_minimal_length_encoding_is_accepted_or_refused_cleanly(echo_server):
    # a 5-byte payload announced with a 64-bit length: either echoed or closed with 1002
    payload = b"hello"
    key = b"\x01\x02\x03\x04"
    from rawws import apply_mask

    frame = bytes([0x82, 0x80 | 127]) + (5).to_bytes(8, "big") + key + apply_mask(payload, key)
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        await ws.send_raw(frame)
        reply = await ws.read_frame()
        if reply.opcode == CLOSE:
            assert reply.close_code == 1002
        else:
            assert (reply.opcode, reply.payload) == (BINARY, payload)


async def test_raw_fragmented_text_with_pings_between_fragments(echo_server):
    text = "fragmented ✓ message"
    data = text.encode()
    parts = [data[:4], data[4:11], data[11:13], data[13:]]  # splits inside the multi-byte ✓
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        await ws.send_frame(TEXT, parts[0], fin=False)
        await ws.send_frame(PING, b"ping-1")
        pong = await ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"ping-1")
        await ws.send_frame(CONT, parts[1], fin=False)
        await ws.send_frame(PING, b"")
        pong = await ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"")
        await ws.send_frame(CONT, parts[2], fin=False)
        await ws.send_frame(PONG, b"unsolicited pong")  # allowed, and not answered
        await ws.send_frame(CONT, parts[3], fin=True)
        assert await ws.read_message() == (TEXT, data)


async def test_raw_fragmented_binary_with_empty_fragments(echo_server):
    payload = os.urandom(3000)
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        await ws.send_frame(BINARY, b"", fin=False)
        for i in range(0, 3000, 1000):
            await ws.send_frame(CONT, payload[i : i + 1000], fin=False)
            await ws.send_frame(CONT, b"", fin=False)
        await ws.send_frame(CONT, b"", fin=True)
        assert await ws.read_message() == (BINARY, payload)
        # the next message after a fragmented one is independent
        await ws.send_text("after")
        assert await ws.read_message() == (TEXT, b"after")


async def test_raw_many_fragments(echo_server):
    payload = os.urandom(1000)
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        frames = [build_frame(BINARY, payload[:1], fin=False)]
        frames += [build_frame(CONT, payload[i : i + 1], fin=False) for i in range(1, 999)]
        frames.append(build_frame(CONT, payload[999:], fin=True))
        await ws.send_raw(b"".join(frames))
        assert await ws.read_message() == (BINARY, payload)


async def test_raw_ping_payload_up_to_125_bytes_is_ponged(echo_server):
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        for payload in (b"", b"x", os.urandom(125)):
            await ws.send_frame(PING, payload)
            pong = await ws.read_frame()
            assert (pong.opcode, pong.fin, pong.masked, pong.payload) == (
                PONG,
                True,
                False,
                payload,
            )


async def test_raw_many_frames_in_one_write_are_all_echoed_in_order(echo_server):
    count = 500
    blob = b"".join(build_frame(TEXT, f"msg {i}".encode()) for i in range(count))
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        await ws.send_raw(blob)
        for i in range(count):
            assert await ws.read_message() == (TEXT, f"msg {i}".encode())


async def test_raw_frame_written_one_byte_at_a_time(echo_server):
    payload = "split across writes ✓".encode()
    frame = build_frame(TEXT, payload)
    async with await RawWebSocket.connect(echo_server.port, "/echo") as ws:
        for i in range(len(frame)):
            await ws.send_raw(frame[i : i + 1])
            await asyncio.sleep(0)
        assert await ws.read_message() == (TEXT, payload)


async def test_raw_frames_sent_with_the_upgrade_request(echo_server):
    # a client may pipeline frames right behind its upgrade request
    from rawws import accept_key, new_key, read_response_head, upgrade_request

    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    key = new_key()
    writer.write(upgrade_request("/echo", key=key) + build_frame(TEXT, b"early"))
    await writer.drain()
    response = await read_response_head(reader)
    assert response.status == 101
    assert response.header("Sec-WebSocket-Accept") == accept_key(key)
    ws = RawWebSocket(reader, writer, response)
    try:
        assert await ws.read_message() == (TEXT, b"early")
    finally:
        await ws.aclose()


async def test_raw_exactly_max_payload_length_is_accepted(echo_server):
    async with await RawWebSocket.connect(echo_server.port, "/small") as ws:
        await ws.send_binary(b"x" * 1024)
        assert await ws.read_message() == (BINARY, b"x" * 1024)
        # fragmented, exactly at the limit in total
        await ws.send_frame(TEXT, b"a" * 512, fin=False)
        await ws.send_frame(CONT, b"b" * 512, fin=True)
        assert await ws.read_message() == (TEXT, b"a" * 512 + b"b" * 512)
