"""Read-side flow control: a client that sends faster than the handlers consume does not grow the
server's memory without bound; nothing is dropped and order is kept."""

from __future__ import annotations

import asyncio

import pytest

import hyperws

from helpers import TIMEOUT, until
from rawws import BINARY, RawWebSocket, build_frame

MESSAGE = 1024
PER_CONNECTION = 256 * 1024
# What may be read past the bound before the reader pauses: one socket read (up to 256 KiB of frames,
# each message counting 64 bytes more than its payload) and one message.
OVERSHOOT = 256 * 1024 * (MESSAGE + 64) // MESSAGE + MESSAGE + 64


def frames(first: int, count: int) -> bytes:
    """`count` masked binary frames of MESSAGE bytes, numbered from `first` (the number leads)."""
    return b"".join(
        build_frame(BINARY, b"%010d" % n + bytes(MESSAGE - 10), mask_key=b"\x01\x02\x03\x04")
        for n in range(first, first + count)
    )


async def flood(raw: RawWebSocket, total: int, chunk: int = 512) -> None:
    for first in range(0, total, chunk):
        await raw.send_raw(frames(first, min(chunk, total - first)))


@pytest.mark.parametrize("listener", ["async", "sync-slow-loop"])
async def test_flood_at_a_slow_handler_stays_bounded_and_in_order(serve, listener):
    total = 20_000  # ~20 MiB
    received: list[int] = []
    peak = [0]
    server = hyperws.Server(max_pending_bytes=PER_CONNECTION)

    def record(message: bytes) -> None:
        received.append(int(message[:10]))
        peak[0] = max(peak[0], server.stats()["pending_bytes"])

    def on_open(ws: hyperws.Websocket) -> None:
        if listener == "async":

            async def on_message(message: bytes, is_binary: bool) -> None:
                record(message)
                await asyncio.sleep(0)

            ws.on("message", on_message)
        else:
            ws.on("message", lambda message, is_binary: record(message))

    server.ws("/flood", on_open, max_payload_length=4096)
    await serve(server)

    async with await RawWebSocket.connect(server.port, "/flood") as raw:
        sender = asyncio.ensure_future(flood(raw, total))
        if listener == "sync-slow-loop":
            # The loop is busy elsewhere: the handler runs only between these short blocks.
            while not sender.done() or len(received) < total:
                await asyncio.sleep(0)
                if len(received) >= total:
                    break
        await asyncio.wait_for(sender, 60)
        await until(lambda: len(received) == total, timeout=60)

    assert received == list(range(total)), "every message, in order"
    assert peak[0] <= PER_CONNECTION + OVERSHOOT, f"peak {peak[0]} bytes waiting for Python"
    await until(lambda: server.stats()["pending_bytes"] == 0)


async def test_total_bound_applies_across_connections(serve):
    per_client = 4_000
    clients = 4
    received: dict[int, list[int]] = {}
    peak = [0]
    total_limit = 512 * 1024
    server = hyperws.Server(max_pending_bytes=8 * 1024 * 1024, max_pending_bytes_total=total_limit)

    def on_open(ws: hyperws.Websocket) -> None:
        mine: list[int] = []
        received[len(received)] = mine

        async def on_message(message: bytes, is_binary: bool) -> None:
            mine.append(int(message[:10]))
            peak[0] = max(peak[0], server.stats()["pending_bytes"])
            await asyncio.sleep(0)

        ws.on("message", on_message)

    server.ws("/flood", on_open, max_payload_length=4096)
    await serve(server)
    raws = [await RawWebSocket.connect(server.port, "/flood") for _ in range(clients)]
    await asyncio.wait_for(asyncio.gather(*(flood(raw, per_client) for raw in raws)), 60)
    await until(lambda: sum(len(r) for r in received.values()) == clients * per_client, timeout=60)
    for numbers in received.values():
        assert numbers == list(range(per_client))
    assert peak[0] <= total_limit + clients * OVERSHOOT
    for raw in raws:
        raw.close_transport()


def test_pending_bounds_are_checked():
    with pytest.raises(ValueError, match="max_pending_bytes"):
        hyperws.Server(max_pending_bytes=0)
    with pytest.raises(ValueError, match="max_pending_bytes_total"):
        hyperws.Server(max_pending_bytes_total=-1)


async def test_events_wait_for_python_are_counted_and_released(serve):
    server = hyperws.Server()
    server.ws("/echo", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)))
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/echo") as raw:
        await raw.send_raw(frames(0, 10))
        for n in range(10):
            opcode, payload = await raw.read_message()
            assert opcode == BINARY and int(payload[:10]) == n
    await until(lambda: server.stats()["pending_bytes"] == 0, timeout=TIMEOUT)
