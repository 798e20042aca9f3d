"""Hostile clients do not grow the server's memory without bound: a client that pings without reading,
a flood of messages at a listener slower than the client, connections holding part of a frame header,
frames announcing more than they send, compressed messages inflating past the limit, and TLS
connections idle or holding part of a record. The plain attacks run against both ways of reading a
socket: on the asyncio thread (the default, `inline_reads=True`) and on the I/O threads
(`inline_reads=False`).

The server runs in a child process (tests/memory_server.py) so that /proc/<pid>/status measures it alone.
Each test prints the figures it saw (run with -s to read them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect

from child_server import ChildServer, child_server

from helpers import TIMEOUT, until
from rawws import BINARY, CLOSE, PING, RawWebSocket, build_frame, new_key, upgrade_request
from tls_records import RecordClient

KiB = 1024
MiB = 1024 * KiB
SAFETY = 20.0  # seconds: only so that a broken server fails a test instead of hanging it
SERVER = Path(__file__).with_name("memory_server.py")
# As in memory_server.py.
MAX_BACKPRESSURE = 1 * MiB
INFLATE_LIMIT = 8 * MiB


@dataclass
class Memory:
    rss: int
    size: int
    hwm: int

    def __str__(self) -> str:
        return f"RSS {self.rss / MiB:.1f} MiB, VmSize {self.size / MiB:.1f} MiB"


class ServerProcess(ChildServer):
    def memory(self) -> Memory:
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmSize", "VmHWM"):
                    fields[name] = int(value.split()[0]) * KiB
        return Memory(fields["VmRSS"], fields["VmSize"], fields["VmHWM"])

    def reset_peak_rss(self) -> None:
        """VmHWM starts again from the current RSS (proc(5), clear_refs)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")

    def unread(self) -> int:
        """Bytes the kernel holds for the server's connections that the server has not read yet."""
        total = 0
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if int(local.rsplit(":", 1)[1], 16) == self.port and state == "01":
                    total += int(queues.split(":")[1], 16)
        return total

    async def has_read_everything(self) -> None:
        await until(lambda: self.unread() == 0, timeout=SAFETY)


@pytest.fixture(params=["io_thread_reads", "inline_reads"])
def memory_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    monkeypatch.setenv("HYPERWS_TEST_IO_READS", "1" if request.param == "io_thread_reads" else "0")
    with child_server(SERVER) as (pid, port):
        yield ServerProcess(pid, port)


async def still_echoes(client: ClientConnection) -> None:
    """A well-behaved client is still served."""
    await client.send(b"still here")
    assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"still here"


# -- ping flood ----------------------------------------------------------------------------------

PING_FRAME = build_frame(PING, bytes(125), mask_key=b"\x01\x02\x03\x04")
PINGS_PER_WRITE = 1000
STALL = 1.0  # seconds without the server taking our writes: it stopped reading


async def drained(raw: RawWebSocket) -> bool:
    try:
        await asyncio.wait_for(raw.writer.drain(), STALL)
    except asyncio.TimeoutError:
        return False
    return True


async def flood_pings(raw: RawWebSocket, count: int) -> int:
    """Sends up to `count` pings, stopping when the server stops taking them. Returns how many."""
    burst = PING_FRAME * PINGS_PER_WRITE
    sent = 0
    while sent < count and await drained(raw):
        raw.writer.write(burst)
        sent += PINGS_PER_WRITE
    return sent


async def settled(server: ServerProcess) -> dict[str, int]:
    """The server's stats once its count of pings stopped moving."""
    last = await server.stats()
    for _ in range(int(SAFETY / 0.2)):
        await asyncio.sleep(0.2)
        now = await server.stats()
        if now["pings"] == last["pings"]:
            return now
        last = now
    raise AssertionError(f"the server kept receiving pings: {last}")


async def test_a_client_that_pings_without_reading_is_bounded(memory_server):
    server = memory_server
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        await still_echoes(client)
        before = server.memory()
        print(f"before: {before}")
        rounds: list[Memory] = []
        total = 0
        async with await RawWebSocket.connect(server.port, "/ping") as attacker:
            for _ in range(4):
                sent = await flood_pings(attacker, 200_000)
                total += sent
                stats = await settled(server)
                await still_echoes(client)
                rounds.append(server.memory())
                print(f"round {len(rounds)}: {sent} pings sent, {stats}, {rounds[-1]}")
            # Pongs are queued up to the limit; past it only the latest ping's pong is kept.
            assert MAX_BACKPRESSURE < stats["buffered"] <= MAX_BACKPRESSURE + 2 * 127, stats
            # The connection is read all along: every ping reached Python.
            assert stats["pings"] == total == 4 * 200_000, stats
        after = server.memory()
    print(f"after the attacker left: {after}")
    assert rounds[3].rss - rounds[0].rss < 4 * MiB, (before, rounds)
    # The first round's growth is warm-up (the ping events handed to Python): 6 to 17 MiB over runs on
    # CPython 3.10 and 3.11 with both cores loaded; unbounded pongs would be +24 MiB a round.
    assert rounds[3].rss - before.rss < 24 * MiB, (before, rounds)


# -- a flood at a slow listener ------------------------------------------------------------------

FLOOD_MESSAGE = 64 * KiB
FLOOD_COUNT = 768  # 48 MiB, read at most 1 MiB ahead of the listener (max_pending_bytes)


@pytest.mark.parametrize("route", ["/slow", "/slow_async"])
async def test_a_flood_at_a_slow_listener_is_held_back_by_max_pending_bytes(memory_server, route):
    """A sync listener that blocks the loop, and an `async def` one whose calls the connection chains."""
    server = memory_server
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        await still_echoes(client)
        before = server.memory()
        server.reset_peak_rss()
        print(f"before: {before}")
        async with connect(f"ws://127.0.0.1:{server.port}{route}", max_size=None) as flooder:
            payload = bytes(FLOOD_MESSAGE)
            for _ in range(FLOOD_COUNT):
                await flooder.send(payload)
            during = server.memory()
            print(f"all sent: {during}, {await server.stats()}")
            stats = await server.stats_until(lambda s: s["slow"] == FLOOD_COUNT)
        await still_echoes(client)
        after = server.memory()
    print(f"every message handled: {after}, peak {after.hwm / MiB:.1f} MiB, {stats}")
    # 48 MiB went through; the server held a few MiB of it at most (the bound, read buffers, the
    # allocator's slack), not the flood.
    assert after.hwm - before.rss < 12 * MiB, (before, during, after)


def skip_without_descriptors_for(connections: int) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2 * connections + 256:
        pytest.skip("RLIMIT_NOFILE too low for the connections")


@contextlib.asynccontextmanager
async def many_connections(port: int, path: str, count: int) -> AsyncIterator[list[RawWebSocket]]:
    """`count` raw WebSocket connections to `path`, opened 100 at a time, closed on the way out."""
    skip_without_descriptors_for(count)
    raws: list[RawWebSocket] = []
    try:
        for start in range(0, count, 100):
            batch = min(100, count - start)
            raws += await asyncio.gather(*(RawWebSocket.connect(port, path) for _ in range(batch)))
        yield raws
    finally:
        await asyncio.gather(*(raw.aclose() for raw in raws))


async def at_a_slow_listener(
    server: ServerProcess, route: str, connections: int, rounds: list[bytes]
) -> tuple[Memory, Memory, Memory, dict[str, int]]:
    """`connections` raw connections send one message a round, one write each, to `route`'s slow
    listener, while a well-behaved client is still served. Returns the server's memory before, once all
    was sent and once all was handled (with the peak since before), and its stats then."""
    async with (
        connect(f"ws://127.0.0.1:{server.port}/echo") as client,
        many_connections(server.port, route, connections) as raws,
    ):
        await still_echoes(client)
        before = server.memory()
        server.reset_peak_rss()
        for message in rounds:
            await asyncio.gather(*(raw.send_binary(message) for raw in raws))
        during = server.memory()
        total = connections * len(rounds)
        stats = await server.stats_until(lambda s: s["slow"] == total)
        await still_echoes(client)
        after = server.memory()
    print(f"before {before}; all sent {during}; handled: {after}, peak {after.hwm / MiB:.1f} MiB")
    return before, during, after, stats


TINY_CONNECTIONS = 500
TINY_ROUNDS = 4  # 2000 messages: 2 s at the listener's 1 ms a message


@pytest.mark.parametrize("route", ["/slow", "/slow_async"])
async def test_tiny_messages_waiting_for_a_listener_keep_only_their_own_size(memory_server, route):
    """Many connections each send tiny messages, one write per message, at a listener that blocks the
    loop or an `async def` one that awaits: every message may come in a read of its own and wait there for the listener. What waits must
    hold about what it counts against `max_pending_bytes_total` (payload plus 64 bytes a message, 150 KB
    here), not a read buffer each (16 KiB: 31 MiB here)."""
    rounds = [n.to_bytes(8, "big") for n in range(TINY_ROUNDS)]
    before, during, after, stats = await at_a_slow_listener(
        memory_server, route, TINY_CONNECTIONS, rounds
    )
    total = TINY_CONNECTIONS * TINY_ROUNDS
    assert stats["slow"] == total
    assert after.hwm - before.rss < 4 * MiB, (before, during, after)


LARGER_CONNECTIONS = 500
# just past what is copied out of the room: the read keeps its buffer
LARGER_MESSAGE = 4 * KiB + 100
COUNTED = LARGER_MESSAGE + 64  # what each counts against max_pending_bytes_total


async def test_larger_messages_waiting_for_a_listener_keep_at_most_four_times_their_size(
    memory_server,
):
    """Messages just too large to be copied out of the reading thread's room keep its buffer while they
    wait for a listener that blocks the loop: at most four times what they count against
    `max_pending_bytes_total`, as docs/api.md promises (500 of them: 2.1 MB counted, 8 MiB of buffers)."""
    before, during, after, stats = await at_a_slow_listener(
        memory_server, "/slow", LARGER_CONNECTIONS, [bytes(LARGER_MESSAGE)]
    )
    assert stats["slow"] == LARGER_CONNECTIONS
    # Four times what was counted, plus the allocator's and Python's slack.
    bound = 4 * LARGER_CONNECTIONS * COUNTED + 2 * MiB
    assert after.hwm - before.rss < bound, (before, during, after)


# -- partial frame headers -----------------------------------------------------------------------

PARTIAL_CONNECTIONS = 1000


async def test_connections_holding_part_of_a_header_keep_no_read_buffer(memory_server):
    server = memory_server
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        async with many_connections(server.port, "/partial", PARTIAL_CONNECTIONS) as raws:
            await server.has_read_everything()
            before = server.memory()
            for raw in raws:
                # A masked binary frame whose 16-bit length and mask key never come.
                raw.writer.write(bytes([0x80 | BINARY, 0x80 | 126]))
            await asyncio.gather(*(raw.writer.drain() for raw in raws))
            await server.has_read_everything()
            await still_echoes(client)
            during = server.memory()
        after = server.memory()
    print(f"idle connections open: {before}; with 2 header bytes each: {during}; closed: {after}")
    assert during.rss - before.rss < PARTIAL_CONNECTIONS * 4 * KiB, (before, during)


# -- announced sizes -----------------------------------------------------------------------------

ANNOUNCING_CONNECTIONS = 100


async def test_frames_announcing_a_large_payload_do_not_reserve_it(memory_server):
    server = memory_server
    announced = 16 * MiB
    head_and_some = build_frame(BINARY, bytes(KiB), length=announced)
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        async with many_connections(server.port, "/big", ANNOUNCING_CONNECTIONS) as raws:
            await server.has_read_everything()
            before = server.memory()
            for raw in raws:
                raw.writer.write(head_and_some)
            await asyncio.gather(*(raw.writer.drain() for raw in raws))
            await server.has_read_everything()
            await still_echoes(client)
            during = server.memory()
        after = server.memory()
    print(f"before: {before}; {ANNOUNCING_CONNECTIONS} x 1 KiB of 16 MiB: {during}; after {after}")
    assert during.size - before.size < 200 * MiB, (before, during)
    assert during.rss - before.rss < 16 * MiB, (before, during)


# -- inflating -----------------------------------------------------------------------------------


def deflated(message: bytes) -> bytes:
    """`message` compressed as permessage-deflate sends it (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


async def connect_deflate(port: int) -> RawWebSocket:
    extension = [("Sec-WebSocket-Extensions", "permessage-deflate")]
    raw = await RawWebSocket.connect(port, "/inflate", extra=extension)
    assert "permessage-deflate" in (raw.response.header("Sec-WebSocket-Extensions") or "")
    return raw


async def test_inflating_stays_within_the_limit(memory_server):
    server = memory_server
    bomb = deflated(bytes(64 * MiB))
    full = deflated(os.urandom(INFLATE_LIMIT))
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        async with await connect_deflate(server.port) as attacker:
            before = server.memory()
            server.reset_peak_rss()
            await attacker.send_frame(BINARY, bomb, rsv=4)
            close = await attacker.read_until(CLOSE, timeout=SAFETY)
            assert close.close_code == 1009
            bombed = server.memory()
        await still_echoes(client)
        async with await connect_deflate(server.port) as sender:
            at_rest = server.memory()
            server.reset_peak_rss()
            await sender.send_frame(BINARY, full, rsv=4)
            await server.stats_until(lambda stats: stats["inflated"] == 1)
            received = server.memory()
        await still_echoes(client)
    bomb_peak = bombed.hwm - before.rss
    full_peak = received.hwm - at_rest.rss
    print(
        f"bomb of {len(bomb)} bytes: peak RSS +{bomb_peak / MiB:.1f} MiB; "
        f"{len(full)} bytes inflating to the limit: peak RSS +{full_peak / MiB:.1f} MiB"
    )
    # The inflated message is at most the limit, and the compressed frame at most 1 1/8 of it; the
    # allocator keeps the buffers of each growth step resident for reuse (about as much again, for
    # the inflated message and for the read buffer), and the listener gets its own copy.
    limit = INFLATE_LIMIT
    assert bomb_peak < 4 * limit, (before, bombed)
    assert full_peak < 8 * limit, (at_rest, received)


# -- TLS -----------------------------------------------------------------------------------------

TLS_CONNECTIONS = 1000


@pytest.fixture
def tls_memory_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, ssl.SSLContext]]:
    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key_file.write_bytes(issued.private_key_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    with child_server(SERVER, str(cert_file), str(key_file)) as (pid, port):
        yield ServerProcess(pid, port), context


def open_tls_echoed(port: int, context: ssl.SSLContext, count: int) -> list[RecordClient]:
    """`count` TLS connections, each upgraded on /partial and through one echo."""
    clients = []
    for _ in range(count):
        client = RecordClient(port, context)
        clients.append(client)
        client.sock.sendall(client.records(upgrade_request("/partial", key=new_key())))
        assert client.read_head().startswith(b"HTTP/1.1 101 ")
        client.sock.sendall(client.records(build_frame(BINARY, b"hello")))
        assert client.read_frame() == (BINARY, b"hello")
    return clients


async def test_tls_connections_idle_or_holding_part_of_a_record_keep_no_read_buffer(
    tls_memory_server,
):
    server, context = tls_memory_server
    skip_without_descriptors_for(TLS_CONNECTIONS)
    # What the first handshake sets up once is not counted per connection.
    (first,) = await asyncio.to_thread(open_tls_echoed, server.port, context, 1)
    clients = [first]
    try:
        await server.has_read_everything()
        before = server.memory()
        clients += await asyncio.to_thread(open_tls_echoed, server.port, context, TLS_CONNECTIONS)
        await server.has_read_everything()
        idle = server.memory()
        for client in clients[1:]:
            # The first 100 bytes of a record that carries a 1 KiB message; the rest never comes.
            client.sock.sendall(client.records(build_frame(BINARY, bytes(KiB)))[:100])
        await server.has_read_everything()
        first.sock.sendall(first.records(build_frame(BINARY, b"still here")))
        assert first.read_frame() == (BINARY, b"still here")
        during = server.memory()
    finally:
        for client in clients:
            client.close()
    per_idle = (idle.rss - before.rss) / TLS_CONNECTIONS / KiB
    per_partial = (during.rss - idle.rss) / TLS_CONNECTIONS / KiB
    print(
        f"before: {before}; {TLS_CONNECTIONS} idle TLS connections: {idle} ({per_idle:.2f} KiB each)"
    )
    print(f"each holding 100 bytes of a record: {during} ({per_partial:.2f} KiB more each)")
    # rustls's buffered API kept a 4 KiB read buffer per idle connection: about 10 KiB each.
    assert idle.rss - before.rss < TLS_CONNECTIONS * 8 * KiB, (before, idle)
    # A read allocates room for a whole record (18 KiB); only the 100 bytes may stay.
    assert during.rss - idle.rss < TLS_CONNECTIONS * 4 * KiB, (idle, during)


FILLED_TLS_CONNECTIONS = 50


def open_tls(port: int, context: ssl.SSLContext, path: str, count: int) -> list[RecordClient]:
    clients = []
    for _ in range(count):
        client = RecordClient(port, context)
        clients.append(client)
        client.sock.sendall(client.records(upgrade_request(path, key=new_key())))
        assert client.read_head().startswith(b"HTTP/1.1 101 ")
    return clients


async def test_tls_clients_that_never_read_hold_at_most_the_backpressure_limit(tls_memory_server):
    """Over TLS the engine's queue stops at max_backpressure and the TLS layer holds at most 64 KiB
    of records more: a client that never reads costs the server about that, whatever is sent to it."""
    server, context = tls_memory_server
    (watcher,) = await asyncio.to_thread(open_tls, server.port, context, "/fill", 1)
    clients = [watcher]
    try:
        clients += await asyncio.to_thread(
            open_tls, server.port, context, "/fill", FILLED_TLS_CONNECTIONS
        )
        await server.has_read_everything()
        before = server.memory()
        for client in clients[1:]:
            client.sock.sendall(client.records(build_frame(BINARY, b"fill")))

        def filled() -> int:
            watcher.sock.sendall(watcher.records(build_frame(BINARY, b"filled?")))
            return int(watcher.read_frame()[1])

        await until(
            lambda: filled() == FILLED_TLS_CONNECTIONS, timeout=SAFETY
        )  # every connection refused a send: its queue is at the limit
        during = server.memory()
    finally:
        for client in clients:
            client.close()
    per_client = (during.rss - before.rss) / FILLED_TLS_CONNECTIONS / KiB
    print(
        f"before: {before}; {FILLED_TLS_CONNECTIONS} filled: {during} ({per_client:.0f} KiB each)"
    )
    # The queue (1 MiB, plus the 64 KiB message that crossed it), the TLS layer's 64 KiB, slack.
    bound = 1024 + 64 + 64 + 128
    assert during.rss - before.rss < FILLED_TLS_CONNECTIONS * bound * KiB, (before, during)
