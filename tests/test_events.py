"""The Websocket object: properties, send/ping, the event emitter (on/once/off/emit/listener_count), the
events 'message', 'close', 'ping', 'pong', async handlers and listeners (ordering), errors in user
code, destroy() and atomic()."""

from __future__ import annotations

import asyncio
import logging
import random
import warnings

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import Recorder, until, url
from rawws import BINARY, CLOSE, PING, PONG, TEXT, RawWebSocket

T = 5


async def serve_handler(serve, handler, **options) -> hyperws.Server:
    server = hyperws.Server()
    server.ws("/ws", handler, **options)
    return await serve(server)


async def open_socket(serve, **options):
    """A server whose handler hands the Websocket object to the test: returns (server, future)."""
    opened: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_open(ws):
        if not opened.done():
            opened.set_result(ws)

    server = await serve_handler(serve, on_open, **options)
    return server, opened


# -- properties ----------------------------------------------------------------------------------


async def test_properties_of_an_open_connection(serve):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        assert isinstance(ws, hyperws.Websocket)
        assert ws.raw is ws
        assert ws.ip == "127.0.0.1"
        assert ws.context == {}
        assert ws.closed is False
        assert isinstance(ws.buffered, int) and ws.buffered >= 0
        assert ws.topics == []
        assert "127.0.0.1" in repr(ws)


async def test_context_is_a_dict_the_app_can_use(serve):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        ws.context["user"] = "alice"
        assert ws.context == {"user": "alice"}


async def test_buffered_drains_to_zero(serve):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T, max_size=None) as client:
        ws = await asyncio.wait_for(opened, T)
        assert ws.send(b"x" * 1_000_000)
        assert await asyncio.wait_for(client.recv(), T) == b"x" * 1_000_000
        await until(lambda: ws.buffered == 0)


async def test_closed_becomes_true_and_the_object_stays_safe(serve):
    server, opened = await open_socket(serve)
    rec = Recorder()
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        ws.on("close", rec.listener("close"))
    await rec.wait("close")
    assert ws.closed is True
    assert ws.send("late") is False
    assert ws.send(b"late") is False
    assert ws.ping(b"late") is False
    ws.close()  # does nothing
    ws.close(4000, "again")
    ws.destroy()  # does nothing, and 'close' does not fire again
    assert rec.of("close") == [(1000, "")]
    assert ws.ip == "127.0.0.1"
    assert ws.buffered >= 0


# -- send ----------------------------------------------------------------------------------------


async def test_send_types_and_frame_opcodes(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        assert ws.send("text ✓") is True
        assert ws.send(b"bytes") is True
        assert ws.send(bytearray(b"bytearray")) is True
        assert ws.send(memoryview(b"memoryview")) is True
        assert ws.send("str as binary", True) is True
        assert ws.send(b"bytes as text", False) is True
        assert ws.send(bytearray(b"ba as text"), is_binary=False) is True
        assert ws.send("explicit text", is_binary=False) is True
        assert ws.send("compressed?", compress=True) is True  # no extension negotiated: plain
        assert ws.send("") is True
        assert ws.send(b"") is True
        expected = [
            (TEXT, "text ✓".encode()),
            (BINARY, b"bytes"),
            (BINARY, b"bytearray"),
            (BINARY, b"memoryview"),
            (BINARY, b"str as binary"),
            (TEXT, b"bytes as text"),
            (TEXT, b"ba as text"),
            (TEXT, b"explicit text"),
            (TEXT, b"compressed?"),
            (TEXT, b""),
            (BINARY, b""),
        ]
        for opcode, payload in expected:
            frame = await raw.read_frame()
            assert (frame.opcode, frame.payload, frame.rsv, frame.fin) == (opcode, payload, 0, True)


async def test_send_of_a_memoryview_slice(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        ws.send(memoryview(b"0123456789")[2:5])
        assert await raw.read_message() == (BINARY, b"234")


async def test_send_non_utf8_bytes_as_text_is_a_value_error(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        with pytest.raises(ValueError):
            ws.send(b"\xff\xfe", False)
        with pytest.raises(ValueError):
            ws.send(b"\xe2\x82", is_binary=False)  # truncated
        ws.send("next")  # nothing was sent for the refused calls
        assert await raw.read_message() == (TEXT, b"next")


@pytest.mark.parametrize("message", [42, 1.5, None, ["a"], {"a": 1}, object()])
async def test_send_of_other_types_is_a_type_error(serve, message):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        with pytest.raises(TypeError):
            ws.send(message)


async def test_send_large_message(serve):
    server, opened = await open_socket(serve)
    payload = bytes(range(256)) * 40_000  # 10 MB: the limit applies to received messages only
    async with connect(url(server, "/ws"), open_timeout=T, max_size=None) as client:
        ws = await asyncio.wait_for(opened, T)
        assert ws.send(payload)
        assert await asyncio.wait_for(client.recv(), 30) == payload


# -- ping / pong ---------------------------------------------------------------------------------


async def test_server_ping_reaches_the_client(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        assert ws.ping() is True
        assert ws.ping(b"payload") is True
        assert ws.ping("text") is True
        assert ws.ping(b"x" * 125) is True
        for payload in (b"", b"payload", b"text", b"x" * 125):
            frame = await raw.read_frame()
            assert (frame.opcode, frame.payload) == (PING, payload)


async def test_ping_payload_over_125_bytes_is_a_value_error(serve):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        with pytest.raises(ValueError):
            ws.ping(b"x" * 126)
        with pytest.raises(ValueError):
            ws.ping("é" * 63)  # 126 bytes in UTF-8


async def test_pong_event_with_the_clients_payload(serve):
    server, opened = await open_socket(serve)
    rec = Recorder()
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        ws.on("pong", rec.listener("pong"))
        ws.ping(b"abc")
        frame = await raw.read_frame()
        assert (frame.opcode, frame.payload) == (PING, b"abc")
        await raw.send_frame(PONG, frame.payload)
        assert await rec.first("pong") == (b"abc",)
        await raw.send_frame(PONG, b"unsolicited")
        await rec.wait("pong", 2)
    assert rec.of("pong") == [(b"abc",), (b"unsolicited",)]


async def test_pong_event_from_a_websockets_client(serve):
    server, opened = await open_socket(serve)
    rec = Recorder()
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        ws.on("pong", rec.listener("pong"))
        ws.ping(b"from server")
        assert await rec.first("pong") == (b"from server",)


async def test_ping_event_and_automatic_pong(serve):
    server, opened = await open_socket(serve)
    rec = Recorder()
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        ws.on("ping", rec.listener("ping"))
        pong_waiter = await client.ping(b"hello")
        await asyncio.wait_for(pong_waiter, T)  # the server answered
        assert await rec.first("ping") == (b"hello",)


# -- the event emitter ---------------------------------------------------------------------------


async def test_on_is_chainable_and_listeners_run_in_order(serve):
    server, opened = await open_socket(serve)
    calls = []
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        result = ws.on("message", lambda m, b: calls.append(("first", m))).on(
            "message", lambda m, b: calls.append(("second", m))
        )
        assert result is ws
        assert ws.listener_count("message") == 2
        await client.send("x")
        await until(lambda: len(calls) == 2)
    assert calls == [("first", "x"), ("second", "x")]


async def test_on_without_a_listener_is_a_decorator(serve):
    server, opened = await open_socket(serve)
    got = []
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)

        @ws.on("message")
        def on_message(message, is_binary):
            got.append((message, is_binary))
            ws.send(message, is_binary)

        assert callable(on_message) and on_message.__name__ == "on_message"
        await client.send("deco")
        assert await asyncio.wait_for(client.recv(), T) == "deco"
    assert got == [("deco", False)]


async def test_once_fires_once(serve):
    server, opened = await open_socket(serve)
    once, always = [], []
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        assert ws.once("message", lambda m, b: once.append(m)) is ws

        @ws.once("message")
        def decorated(m, b):
            once.append("deco:" + m)

        ws.on("message", lambda m, b: (always.append(m), ws.send(m)))
        for i in range(3):
            await client.send(str(i))
            assert await asyncio.wait_for(client.recv(), T) == str(i)
        assert ws.listener_count("message") == 1
    assert once == ["0", "deco:0"]
    assert always == ["0", "1", "2"]


async def test_off_removes_one_listener_or_all(serve):
    server, opened = await open_socket(serve)
    a, b = [], []

    def listener_a(m, binary):
        a.append(m)

    def listener_b(m, binary):
        b.append(m)

    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        ws.on("message", listener_a).on("message", listener_b)
        ws.on("message", lambda m, binary: ws.send(m))
        await client.send("1")
        assert await asyncio.wait_for(client.recv(), T) == "1"
        assert ws.off("message", listener_a) is ws
        assert ws.listener_count("message") == 2
        await client.send("2")
        assert await asyncio.wait_for(client.recv(), T) == "2"
        ws.off("message", listener_a)  # not registered any more: nothing happens
        ws.off("message")
        assert ws.listener_count("message") == 0
        ws.on("message", lambda m, binary: ws.send("echo " + m))
        await client.send("3")
        assert await asyncio.wait_for(client.recv(), T) == "echo 3"
    assert a == ["1"]
    assert b == ["1", "2"]


class UsesTheConnectionWhenFinalized:
    """A listener whose finalizer uses its connection (as objects a closure captured may): the server
    lets a listener go only once it no longer holds the connection's state."""

    def __init__(self, ws: hyperws.Websocket, name: str, seen: list[tuple[str, bool, int]]) -> None:
        self.ws, self.name, self.seen = ws, name, seen

    def __call__(self, *args: object) -> None:
        pass

    def __del__(self) -> None:
        count = self.ws.listener_count("message")
        self.seen.append((self.name, self.ws.closed, count))
        self.ws.send(f"{self.name} finalized, {count} message listener(s)")


async def test_a_listener_let_go_may_use_the_connection_in_its_finalizer(serve):
    server, opened = await open_socket(serve)
    seen: list[tuple[str, bool, int]] = []
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        ws.on("message", UsesTheConnectionWhenFinalized(ws, "off", seen))
        ws.off("message")
        assert await asyncio.wait_for(client.recv(), T) == "off finalized, 0 message listener(s)"

        ws.once("message", UsesTheConnectionWhenFinalized(ws, "once", seen))
        ws.on("message", lambda m, binary: ws.send(m))
        await client.send("hello")
        # Let go right after its call, before the next listener's.
        assert await asyncio.wait_for(client.recv(), T) == "once finalized, 1 message listener(s)"
        assert await asyncio.wait_for(client.recv(), T) == "hello"

        ws.on("close", UsesTheConnectionWhenFinalized(ws, "close", seen))
    await until(lambda: len(seen) == 3)
    # After 'close' the listeners are let go (the message listener too, hence 0).
    assert seen == [("off", False, 0), ("once", False, 1), ("close", True, 0)]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_off_inside_a_listener_may_let_go_of_one_that_uses_the_connection(serve, kind):
    server, opened = await open_socket(serve)
    seen: list[tuple[str, bool, int]] = []
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        ws.on("message", UsesTheConnectionWhenFinalized(ws, kind, seen))
        if kind == "sync":
            ws.on("message", lambda m, binary: ws.off("message"))
        else:

            async def off_after_an_await(m, binary):
                await asyncio.sleep(0)
                ws.off("message")

            ws.on("message", off_after_an_await)
        await client.send("off")
        assert (
            await asyncio.wait_for(client.recv(), T) == f"{kind} finalized, 0 message listener(s)"
        )
    assert seen == [(kind, False, 0)]


@pytest.mark.filterwarnings("ignore:hyperws never emits")
async def test_emit_custom_events(serve):
    server, opened = await open_socket(serve)
    got = []
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        assert ws.emit("custom", 1, 2) is False  # no listener
        assert ws.listener_count("custom") == 0
        ws.on("custom", lambda *args: got.append(args))
        assert ws.emit("custom", 1, "two", b"3") is True
        assert ws.emit("custom") is True
        assert got == [(1, "two", b"3"), ()]


async def test_emit_message_calls_the_message_listeners(serve):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        ws.on("message", lambda m, b: ws.send(m, b))
        assert ws.emit("message", "synthetic", False) is True
        assert await asyncio.wait_for(client.recv(), T) == "synthetic"


async def test_non_callable_listener_is_a_type_error(serve):
    server, opened = await open_socket(serve)
    async with connect(url(server, "/ws"), open_timeout=T):
        ws = await asyncio.wait_for(opened, T)
        with pytest.raises(TypeError):
            ws.on("message", 42)
        with pytest.raises(TypeError):
            ws.once("message", "nope")
        assert ws.listener_count("message") == 0


async def test_same_listener_twice_is_called_twice(serve):
    server, opened = await open_socket(serve)
    calls = []

    def listener(m, b):
        calls.append(m)

    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)
        ws.on("message", listener).on("message", listener)
        assert ws.listener_count("message") == 2
        await client.send("x")
        await until(lambda: len(calls) == 2)
        ws.off("message", listener)  # removes one registration
        assert ws.listener_count("message") == 1


async def test_listener_removing_itself_during_the_event(serve):
    server, opened = await open_socket(serve)
    calls = []
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        ws = await asyncio.wait_for(opened, T)

        def first(m, b):
            calls.append(("first", m))
            ws.off("message", first)

        ws.on("message", first)
        ws.on("message", lambda m, b: (calls.append(("second", m)), ws.send(m)))
        for i in range(2):
            await client.send(str(i))
            assert await asyncio.wait_for(client.recv(), T) == str(i)
    assert calls == [("first", "0"), ("second", "0"), ("second", "1")]


# -- message / close events ----------------------------------------------------------------------


async def test_message_event_arguments(serve):
    rec = Recorder()
    server = await serve_handler(serve, lambda ws: ws.on("message", rec.listener("message")))
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("text")
        await client.send(b"\x00binary")
        await rec.wait("message", 2)
    assert rec.of("message") == [("text", False), (b"\x00binary", True)]


async def test_messages_sent_right_after_the_handshake_reach_listeners_added_in_open(serve):
    rec = Recorder()
    server = await serve_handler(serve, lambda ws: ws.on("message", rec.listener("message")))
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        for i in range(100):
            await raw.send_text(f"{i}")
        await rec.wait("message", 100)
    assert [m for m, _ in rec.of("message")] == [str(i) for i in range(100)]


async def test_close_event_with_the_clients_code_and_reason(serve):
    rec = Recorder()
    server = await serve_handler(serve, lambda ws: ws.on("close", rec.listener("close")))
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.close(4321, "see you ✓")
    assert await rec.first("close") == (4321, "see you ✓")


async def test_close_without_a_code_is_1005(serve):
    rec = Recorder()
    server = await serve_handler(serve, lambda ws: ws.on("close", rec.listener("close")))
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await raw.send_close(None)
        frame = await raw.expect_close()
        assert frame.opcode == CLOSE
        assert frame.close_code in (None, 1000)  # echo: empty or 1000 (a reply may not carry 1005)
    assert await rec.first("close") == (1005, "")


async def test_dropped_connection_is_1006(serve):
    rec = Recorder()
    server = await serve_handler(serve, lambda ws: ws.on("close", rec.listener("close")))
    raw = await RawWebSocket.connect(server.port, "/ws")
    await raw.aclose()  # TCP closed without a close frame
    assert await rec.first("close") == (1006, "")
    await until(lambda: server.connections == 0)


async def test_close_event_fires_once(serve):
    rec = Recorder()
    server = await serve_handler(serve, lambda ws: ws.on("close", rec.listener("close")))
    async with connect(url(server, "/ws"), open_timeout=T):
        pass
    await rec.first("close")
    async with connect(url(server, "/ws"), open_timeout=T):
        pass
    await rec.wait("close", 2)
    await asyncio.sleep(0.1)
    assert len(rec.of("close")) == 2


async def test_close_reason_type_follows_message_type(serve):
    rec = Recorder()
    server = await serve_handler(
        serve, lambda ws: ws.on("close", rec.listener("close")), message_type="Buffer"
    )
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.close(4000, "bytes reason")
    code, reason = await rec.first("close")
    assert code == 4000 and type(reason) is bytes and reason == b"bytes reason"


async def test_listeners_registered_in_close_see_a_closed_socket(serve):
    states = []
    server = await serve_handler(
        serve, lambda ws: ws.on("close", lambda c, m: states.append((ws.closed, ws.send("x"))))
    )
    async with connect(url(server, "/ws"), open_timeout=T):
        pass
    await until(lambda: states)
    assert states == [(True, False)]


# -- destroy -------------------------------------------------------------------------------------


async def test_destroy_drops_the_socket_and_fires_close_1006_synchronously(serve):
    seen = {}

    def on_open(ws):
        def on_message(m, b):
            closes = []
            ws.on("close", lambda code, message: closes.append((code, message)))
            ws.destroy()
            seen["closes"] = list(closes)  # already fired, before destroy() returned
            seen["closed"] = ws.closed
            seen["send"] = ws.send("after destroy")

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await raw.send_text("destroy me")
        rest = await raw.expect_eof()
        assert rest == b""  # no close frame, nothing at all
    assert seen == {"closes": [(1006, "")], "closed": True, "send": False}
    await until(lambda: server.connections == 0)


async def test_destroy_seen_by_a_websockets_client(serve):
    server = await serve_handler(serve, lambda ws: ws.on("message", lambda m, b: ws.destroy()))
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("x")
        await asyncio.wait_for(client.wait_closed(), T)
        assert client.close_code == 1006


async def test_destroy_in_an_async_listener_fires_close_before_it_returns(serve):
    seen = {}

    def on_open(ws):
        async def on_message(m, b):
            await asyncio.sleep(0)
            closes = []
            ws.on("close", lambda code, message: closes.append(code))
            ws.destroy()
            seen["closes"] = list(closes)

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await raw.send_text("x")
        await raw.expect_eof()
    await until(lambda: "closes" in seen)
    assert seen["closes"] == [1006]


async def test_destroy_in_an_async_listener_fires_close_once(serve):
    closes = []

    def on_open(ws):
        async def on_message(m, b):
            await asyncio.sleep(0)
            ws.destroy()
            ws.destroy()

        ws.on("message", on_message)
        ws.on("close", lambda code, message: closes.append((code, message)))

    server = await serve_handler(serve, on_open)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await raw.send_text("x")
        assert await raw.expect_eof() == b""
    await until(lambda: closes)
    await until(lambda: server.connections == 0)
    await asyncio.sleep(0.05)
    assert closes == [(1006, "")]


# -- atomic --------------------------------------------------------------------------------------


async def test_atomic_returns_the_result_and_sends_in_order(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)

        def burst():
            for i in range(100):
                ws.send(f"{i}")
            return "done"

        assert ws.atomic(burst) == "done"
        for i in range(100):
            assert await raw.read_message() == (TEXT, f"{i}".encode())


async def test_atomic_propagates_the_callbacks_exception_and_still_sends(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)

        def failing():
            ws.send("before the error")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            ws.atomic(failing)
        ws.send("after")
        assert await raw.read_message() == (TEXT, b"before the error")
        assert await raw.read_message() == (TEXT, b"after")


async def test_atomic_nested(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        assert ws.atomic(lambda: ws.atomic(lambda: (ws.send("inner"), 7)[1]) + 1) == 8
        assert await raw.read_message() == (TEXT, b"inner")


# -- async handlers and listeners ----------------------------------------------------------------


async def test_async_listeners_run_in_arrival_order(serve):
    got = []

    def on_open(ws):
        async def on_message(message, is_binary):
            await asyncio.sleep(random.random() * 0.005)
            got.append(message)
            ws.send(message)

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        for i in range(200):
            await client.send(str(i))
        for i in range(200):
            assert await asyncio.wait_for(client.recv(), T) == str(i)
    assert got == [str(i) for i in range(200)]


class Later:
    """An awaitable that is neither a coroutine nor a future: only its class defines __await__."""

    def __init__(self, log: list, message: str) -> None:
        self.log, self.message = log, message

    def __await__(self):
        yield from asyncio.sleep(0.01).__await__()
        self.log.append(self.message)


async def test_listeners_returning_futures_or_custom_awaitables_are_awaited_in_order(serve):
    log: list = []
    loop = asyncio.get_running_loop()

    def on_open(ws):
        def on_message(message, is_binary):
            if message.startswith("future"):
                future = loop.create_future()
                loop.call_later(0.01, lambda: (log.append(message), future.set_result(None)))
                return future
            if message.startswith("custom"):
                return Later(log, message)
            log.append(message)
            return ws.send("plain")  # True: a plain result, not awaited

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        for message in ["future 1", "custom 2", "plain 3", "future 4"]:
            await client.send(message)
        assert await asyncio.wait_for(client.recv(), T) == "plain"
        await until(lambda: len(log) == 4)
    assert log == ["future 1", "custom 2", "plain 3", "future 4"]


async def test_next_async_listener_starts_when_the_previous_finishes(serve):
    log = []

    def on_open(ws):
        async def on_message(message, is_binary):
            log.append(("start", message))
            await asyncio.sleep(0.01)
            log.append(("end", message))
            if message == "2":
                ws.send("done")

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        for i in range(3):
            await client.send(str(i))
        assert await asyncio.wait_for(client.recv(), T) == "done"
    assert log == [(kind, str(i)) for i in range(3) for kind in ("start", "end")]


async def test_sync_and_async_listeners_keep_the_order_of_events(serve):
    log = []

    def on_open(ws):
        async def slow(message, is_binary):
            await asyncio.sleep(0.01)
            log.append(("async", message))

        ws.on("message", slow)
        ws.on("message", lambda m, b: log.append(("sync", m)))
        ws.on("close", lambda code, m: log.append(("close", code)))

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("a")
        await client.send("b")
    await until(lambda: ("close", 1000) in log)
    # both listeners are called in order for "a" (the async one's body runs when awaited); the
    # events behind "a" wait until its async listener has finished
    assert log == [
        ("sync", "a"),
        ("async", "a"),
        ("sync", "b"),
        ("async", "b"),
        ("close", 1000),
    ]


async def test_async_open_handler_registering_after_an_await_gets_every_message(serve):
    got = []

    async def on_open(ws):
        await asyncio.sleep(0.05)  # e.g. a database lookup
        ws.on("message", lambda m, b: (got.append(m), ws.send(m)))

    server = await serve_handler(serve, on_open)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        for i in range(20):
            await raw.send_text(str(i))  # sent while the handler is still awaiting
        for i in range(20):
            assert await raw.read_message() == (TEXT, str(i).encode())
    assert got == [str(i) for i in range(20)]


async def test_close_waits_behind_a_running_async_listener(serve):
    log = []

    def on_open(ws):
        async def on_message(message, is_binary):
            await asyncio.sleep(0.05)
            log.append("message done")

        ws.on("message", on_message)
        ws.on("close", lambda code, m: log.append(("close", code)))

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("x")
    await until(lambda: len(log) == 2)
    assert log == ["message done", ("close", 1000)]


async def test_async_close_listener(serve):
    done = asyncio.Event()

    def on_open(ws):
        async def on_close(code, message):
            await asyncio.sleep(0)
            done.set()

        ws.on("close", on_close)

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T):
        pass
    await asyncio.wait_for(done.wait(), T)


# -- errors in user code -------------------------------------------------------------------------


async def test_exception_in_a_message_listener_is_logged_and_serving_goes_on(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")

    def on_open(ws):
        def on_message(message, is_binary):
            if message == "boom":
                raise RuntimeError("listener failed")
            ws.send(message)

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("boom")
        await client.send("still echoing")
        assert await asyncio.wait_for(client.recv(), T) == "still echoing"
    records = [r for r in caplog.records if r.name == "hyperws"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info and "listener failed" in str(records[0].exc_info[1])
    assert "127.0.0.1" in records[0].getMessage()  # the log names the connection


async def test_exception_in_one_listener_does_not_skip_the_next(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")

    def on_open(ws):
        ws.on("message", lambda m, b: 1 / 0)
        ws.on("message", lambda m, b: ws.send(m))

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("x")
        assert await asyncio.wait_for(client.recv(), T) == "x"
    assert any(
        r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError)
        for r in caplog.records
        if r.name == "hyperws"
    )


async def test_exception_in_an_async_listener_is_logged_and_order_goes_on(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")

    def on_open(ws):
        async def on_message(message, is_binary):
            await asyncio.sleep(0)
            if message == "boom":
                raise ValueError("async listener failed")
            ws.send(message)

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("1")
        await client.send("boom")
        await client.send("2")
        assert await asyncio.wait_for(client.recv(), T) == "1"
        assert await asyncio.wait_for(client.recv(), T) == "2"
    assert any(
        r.exc_info and "async listener failed" in str(r.exc_info[1])
        for r in caplog.records
        if r.name == "hyperws"
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_exception_in_the_open_handler_is_logged_and_the_server_keeps_serving(
    serve, caplog, kind
):
    caplog.set_level(logging.ERROR, logger="hyperws")
    server = hyperws.Server()
    if kind == "sync":

        def failing(ws):
            raise RuntimeError("open failed")

    else:

        async def failing(ws):
            await asyncio.sleep(0)
            raise RuntimeError("open failed")

    server.ws("/fail", failing)
    server.ws("/echo", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)))
    await serve(server)
    async with connect(url(server, "/fail"), open_timeout=T):
        await until(lambda: any(r.name == "hyperws" for r in caplog.records))
    async with connect(url(server, "/echo"), open_timeout=T) as client:
        await client.send("ok")
        assert await asyncio.wait_for(client.recv(), T) == "ok"
    assert any(
        r.exc_info and "open failed" in str(r.exc_info[1])
        for r in caplog.records
        if r.name == "hyperws"
    )


async def test_exception_in_a_close_listener_is_logged(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")
    server = await serve_handler(serve, lambda ws: ws.on("close", lambda c, m: {}["missing"]))
    async with connect(url(server, "/ws"), open_timeout=T):
        pass
    await until(lambda: any(r.name == "hyperws" for r in caplog.records))
    assert any(isinstance(r.exc_info[1], KeyError) for r in caplog.records if r.exc_info)
    async with connect(url(server, "/ws"), open_timeout=T):
        pass  # still serving


async def test_listener_with_a_wrong_signature_is_logged(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")

    def on_open(ws):
        ws.on("message", lambda only_one: None)  # message listeners get two arguments
        ws.on("message", lambda m, b: ws.send(m))

    server = await serve_handler(serve, on_open)
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("x")
        assert await asyncio.wait_for(client.recv(), T) == "x"
    assert any(
        r.exc_info and isinstance(r.exc_info[1], TypeError)
        for r in caplog.records
        if r.name == "hyperws"
    )


async def test_send_in_the_open_handler_arrives_first(serve):
    server = await serve_handler(serve, lambda ws: (ws.send("welcome"), ws.send(b"\x01")))
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        assert await raw.read_message() == (TEXT, b"welcome")
        assert await raw.read_message() == (BINARY, b"\x01")


async def test_buffered_counts_bytes_a_slow_reader_has_not_taken(serve):
    # a limit above what is sent: the default (1 MiB) lets only two of these through, and the kernel's
    # socket buffers can absorb 2 MB, leaving nothing queued to count
    server, opened = await open_socket(serve, max_backpressure=64 * 1024 * 1024)
    chunk = b"x" * 1_000_000
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        # 32 MB, far more than the socket buffers hold
        accepted = sum(bool(ws.send(chunk)) for _ in range(32))
        assert accepted == 32
        await asyncio.sleep(0.2)
        assert ws.buffered > 0  # the client reads nothing: bytes wait in the server's queue
        assert ws.buffered <= accepted * (len(chunk) + 14)
        for _ in range(accepted):
            assert await raw.read_message(timeout=30) == (BINARY, chunk)
        await until(lambda: ws.buffered == 0)


async def test_events_are_handed_over_in_batches(serve):
    # a burst of messages in one TCP write costs far fewer loop wake-ups than messages
    from rawws import build_frame

    got = []
    server = await serve_handler(serve, lambda ws: ws.on("message", lambda m, b: got.append(m)))
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        await until(lambda: server.stats()["connections"] == 1)
        before = server.stats()
        await raw.send_raw(b"".join(build_frame(TEXT, b"%d" % i) for i in range(2000)))
        await until(lambda: len(got) == 2000)
        after = server.stats()
    assert got == [str(i) for i in range(2000)]
    assert after["events"] - before["events"] >= 2000
    assert after["loop_wakeups"] - before["loop_wakeups"] < 200


async def test_strings_that_are_not_unicode_scalars_are_a_value_error(serve):
    server, opened = await open_socket(serve)
    async with await RawWebSocket.connect(server.port, "/ws") as raw:
        ws = await asyncio.wait_for(opened, T)
        with pytest.raises(ValueError):  # UnicodeEncodeError is a ValueError
            ws.send("lone surrogate \ud800")
        with pytest.raises(ValueError):
            ws.ping("\udfff")
        with pytest.raises(ValueError):
            ws.close(1000, "\ud800")
        assert ws.closed is False
        ws.send("fine")
        assert await raw.read_message() == (TEXT, b"fine")


async def test_async_listeners_keep_order_per_connection_under_concurrency(serve):
    def on_open(ws):
        async def on_message(message, is_binary):
            await asyncio.sleep(random.random() * 0.002)
            ws.send(message)

        ws.on("message", on_message)

    server = await serve_handler(serve, on_open)

    async def client_run(n: int) -> list[str]:
        async with connect(url(server, "/ws"), open_timeout=T) as client:
            for i in range(100):
                await client.send(f"{n}:{i}")
            return [await asyncio.wait_for(client.recv(), T) for _ in range(100)]

    results = await asyncio.gather(*(client_run(n) for n in range(20)))
    for n, got in enumerate(results):
        assert got == [f"{n}:{i}" for i in range(100)]


async def test_a_listener_for_an_event_never_emitted_is_warned_about(serve):
    caught: list[list[warnings.WarningMessage]] = []

    def on_open(ws: hyperws.Websocket) -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            ws.on("message", lambda message, is_binary: None)
            ws.on("mesage", lambda message, is_binary: None)  # a typo
            ws.once("joined", lambda: None)  # the app's own event, for emit()
        caught.append(seen)

    server = hyperws.Server()
    server.ws("/typo", on_open)
    await serve(server)
    async with connect(url(server, "/typo")):
        await until(lambda: caught)
    messages = [str(warning.message) for warning in caught[0]]
    assert [warning.category for warning in caught[0]] == [UserWarning, UserWarning]
    assert messages[0].startswith('hyperws never emits "mesage" (its events: message, close')
    assert '"joined"' in messages[1] and "emit()" in messages[1]
