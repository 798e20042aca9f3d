"""`await ws.drain()`, `ws.stream()` and `ws.writable` called from where apps call them: inside the
connection's own async open handler and async message listener (the connection's event chain is then
busy with the very code that waits), a task the app spawned, another connection's handler and an HTTP
handler. A client reads nothing until the server has had to wait, then reads everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import hyperws

from helpers import until
from httpclient import request
from rawws import BINARY, RawWebSocket, http_exchange

LIMIT = 64 * 1024
MIB = 1024 * 1024
UPDATES = 16_000  # 16 MiB of 1 KiB updates: more than the kernel's socket buffers hold
UPDATE = 1024
WAIT = 30.0  # safety net for a whole transfer, not a speed assertion

Job = Callable[[hyperws.Websocket], Awaitable[None]]


def update(n: int) -> bytes:
    return struct.pack(">I", n) + bytes(UPDATE - 4)


async def updates() -> AsyncIterator[bytes]:
    for n in range(UPDATES):
        yield update(n)


async def send_every_update(ws: hyperws.Websocket) -> None:
    """The README's Backpressure loop."""
    async for message in updates():
        while not ws.send(message):
            await ws.drain()
            if ws.closed:
                return


class App:
    """A server whose /target connections run `job` from the place under test; /trigger and the
    HTTP route /trigger run it on the first /target connection from elsewhere."""

    def __init__(self, where: str, job: Job) -> None:
        self.where = where
        self.job = job
        self.targets: list[hyperws.Websocket] = []
        self.done = asyncio.Event()
        self.failure: BaseException | None = None
        self.server = hyperws.Server()
        self.server.ws(
            "/target", self.open_target, max_backpressure=LIMIT, max_payload_length=16 * MIB
        )
        self.server.ws("/trigger", self.open_trigger)
        self.server.get("/trigger", self.http_trigger, handler_timeout=WAIT)

    async def run(self, ws: hyperws.Websocket) -> None:
        try:
            await self.job(ws)
        except BaseException as error:
            self.failure = error
            raise
        finally:
            self.done.set()

    def open_target(self, ws: hyperws.Websocket) -> Awaitable[None] | None:
        self.targets.append(ws)
        if self.where == "open":
            return self.run(ws)  # the open handler's own awaitable: the chain's head

        if self.where == "message":

            async def on_message(message: str | bytes, is_binary: bool) -> None:
                await self.run(ws)

            ws.on("message", on_message)
        elif self.where == "task":
            asyncio.get_running_loop().create_task(self.run(ws))
        return None

    def open_trigger(self, ws: hyperws.Websocket) -> None:
        async def on_message(message: str | bytes, is_binary: bool) -> None:
            await self.run(self.targets[0])

        ws.on("message", on_message)

    async def http_trigger(self, request: hyperws.Request, response: hyperws.Response) -> None:
        await self.run(self.targets[0])
        response.send("done")

    async def start(self, port: int) -> None:
        """Starts the job on /target's first connection from `where`."""
        await until(lambda: self.targets)
        if self.where == "message":
            await self.target_client.send_binary(b"go")
        elif self.where == "other":
            trigger = await RawWebSocket.connect(port, "/trigger")
            await trigger.send_binary(b"go")
            self.trigger_client = trigger
        elif self.where == "http":
            self.http = asyncio.ensure_future(
                http_exchange(port, request("GET", "/trigger"), timeout=WAIT)
            )

    async def finished(self) -> None:
        await asyncio.wait_for(self.done.wait(), WAIT)
        if self.failure is not None:
            raise AssertionError(f"the job failed in {self.where}") from self.failure
        if self.where == "http":
            response = await asyncio.wait_for(self.http, WAIT)
            assert response.status == 200


PLACES = ["open", "message", "task", "other", "http"]


async def connected(serve, where: str, job: Job) -> tuple[App, RawWebSocket]:
    app = App(where, job)
    await serve(app.server)
    client = await RawWebSocket.connect(app.server.port, "/target")
    client.writer.transport.pause_reading()  # the client reads nothing until told
    app.target_client = client
    await app.start(app.server.port)
    return app, client


async def read_once_over_limit(app: App, client: RawWebSocket) -> None:
    """Lets the client read, once the server holds more than its limit for it."""
    await until(lambda: app.targets[0].buffered > LIMIT, timeout=WAIT)
    client.writer.transport.resume_reading()


@pytest.mark.parametrize("where", PLACES)
async def test_the_readme_backpressure_loop_delivers_every_update_in_order(serve, where):
    app, client = await connected(serve, where, send_every_update)
    # The loop yields only to wait: it is waiting for the client now.
    await read_once_over_limit(app, client)
    for n in range(UPDATES):
        opcode, payload = await client.read_message(timeout=WAIT)
        assert (opcode, payload) == (BINARY, update(n))
    await app.finished()


async def expect_one_message_then_next(serve, where: str, job: Job, message: bytes) -> None:
    """Runs `job` (which sends `message` in pieces, then b"next") with a client that reads nothing
    until the server is over its limit."""
    app, client = await connected(serve, where, job)
    await read_once_over_limit(app, client)
    assert await client.read_message(timeout=WAIT) == (BINARY, message)
    assert await client.read_message(timeout=WAIT) == (BINARY, b"next")
    await app.finished()


@pytest.mark.parametrize("where", ["open", "message", "task"])
async def test_stream_of_10_mib_over_a_64_kib_limit_arrives_whole_then_the_next_send(serve, where):
    chunks = [os.urandom(MIB) for _ in range(10)]

    async def job(ws: hyperws.Websocket) -> None:
        async def source() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        await ws.stream(source())
        assert ws.send(b"next")

    await expect_one_message_then_next(serve, where, job, b"".join(chunks))


@pytest.mark.parametrize("where", ["open", "message", "task"])
async def test_writable_pipes_10_mib_waiting_on_drain(serve, where):
    chunks = [os.urandom(64 * 1024) for _ in range(160)]

    async def job(ws: hyperws.Websocket) -> None:
        async with ws.writable as writer:
            for chunk in chunks:
                if not writer.write(chunk):
                    await writer.drain()
        assert ws.send(b"next")

    await expect_one_message_then_next(serve, where, job, b"".join(chunks))


@pytest.mark.parametrize("where", PLACES)
async def test_drain_returns_when_the_client_leaves_mid_wait(serve, where):
    in_drain = asyncio.Event()
    closed_after_drain: list[bool] = []

    async def job(ws: hyperws.Websocket) -> None:
        while not ws.closed:
            if ws.send(bytes(64 * 1024)):
                await asyncio.sleep(0)
                continue
            in_drain.set()
            await ws.drain()
            in_drain.clear()
            closed_after_drain.append(ws.closed)

    app, client = await connected(serve, where, job)
    await asyncio.wait_for(in_drain.wait(), WAIT)
    await asyncio.sleep(0.2)  # let the kernel's buffers fill: the wait then lasts
    await asyncio.wait_for(in_drain.wait(), WAIT)
    client.writer.transport.abort()  # gone without a close frame, mid-wait
    await app.finished()
    assert closed_after_drain[-1] is True


async def read_everything(client: RawWebSocket) -> None:
    while True:
        await client.read_frame(timeout=WAIT)


async def test_a_drain_listener_runs_in_order_behind_the_busy_async_handler(serve):
    """While the open handler awaits drain(), the 'drain' event waits in the chain: listeners see it
    after the handler, in order; only the awaitable is completed at once."""
    seen: list[str] = []

    async def job(ws: hyperws.Websocket) -> None:
        ws.on("drain", lambda: seen.append("drain listener"))
        for _ in range(100):  # 6.4 MiB: more than the kernel's buffers hold
            while not ws.send(bytes(64 * 1024)):
                await ws.drain()
                seen.append("drain() returned")
        seen.append("handler ended")

    app, client = await connected(serve, "open", job)
    await read_once_over_limit(app, client)
    reader = asyncio.ensure_future(read_everything(client))
    await app.finished()
    await until(lambda: "drain listener" in seen)
    reader.cancel()
    ended = seen.index("handler ended")
    assert set(seen[:ended]) == {"drain() returned"}
    assert set(seen[ended + 1 :]) == {"drain listener"}


async def test_cancelled_drain_waits_are_let_go_and_a_later_wait_still_returns(serve):
    gave_up = asyncio.Event()
    results: list[str] = []

    async def job(ws: hyperws.Websocket) -> None:
        while True:
            if ws.send(bytes(64 * 1024)):
                await asyncio.sleep(0)
                continue
            timed_out = 0
            for _ in range(100):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.drain(), 0.001)
                    continue
                timed_out += 1
            if timed_out == 100:  # the buffers are full: 100 waits given up in a row
                break
        gave_up.set()
        await ws.drain()
        results.append("drained")

    app, client = await connected(serve, "open", job)
    await asyncio.wait_for(gave_up.wait(), WAIT)
    client.writer.transport.resume_reading()
    reader = asyncio.ensure_future(read_everything(client))
    await app.finished()
    reader.cancel()
    assert results == ["drained"]


@pytest.mark.parametrize("where", ["open", "message", "task", "other", "http"])
async def test_async_for_echoes_every_message_in_order(serve, where):
    """An iteration sees the messages that arrive from its start on (and, from the connection's own
    async handler, those that waited for it)."""
    iterating = asyncio.Event()

    async def job(ws: hyperws.Websocket) -> None:
        messages = aiter(ws)
        iterating.set()
        async for message in messages:
            if message == b"go":
                continue  # the trigger of the 'message' place
            ws.send(message)
            if message == b"last":
                return

    app, client = await connected(serve, where, job)
    client.writer.transport.resume_reading()
    await asyncio.wait_for(iterating.wait(), WAIT)
    for n in range(100):
        await client.send_binary(b"%d" % n)
    await client.send_binary(b"last")
    for n in range(100):
        assert await client.read_message(timeout=WAIT) == (BINARY, b"%d" % n)
    assert await client.read_message(timeout=WAIT) == (BINARY, b"last")
    await app.finished()
