"""Routes, route options, the three forms of ws(), mounting, and the errors of the Python API."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import hyperws

from conftest import echo
from helpers import Recorder, until, url
from rawws import RawWebSocket

T = 5  # safety-net timeout (seconds) for awaits


async def echoes(server: hyperws.Server, path: str, message: str = "hello") -> bool:
    async with connect(url(server, path), open_timeout=T) as client:
        await client.send(message)
        return await asyncio.wait_for(client.recv(), T) == message


async def refused_status(server: hyperws.Server, path: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(server, path), open_timeout=T):
            pass
    return info.value.response.status_code


# -- the three forms of ws() ---------------------------------------------------------------------


async def test_form_options_dict_then_handler(serve):
    router = hyperws.Router()
    result = router.ws("/connect", {"idle_timeout": 60, "max_payload_length": 32 * 1024}, echo)
    assert result is echo
    server = hyperws.Server()
    server.use("/ws", router)
    await serve(server)
    assert await echoes(server, "/ws/connect")


async def test_form_handler_then_keyword_options(serve):
    router = hyperws.Router()
    router.ws("/connect", echo, idle_timeout=60)
    server = hyperws.Server()
    server.use("/ws", router)
    await serve(server)
    assert await echoes(server, "/ws/connect")


async def test_form_handler_without_options(serve):
    server = hyperws.Server()
    server.ws("/plain", echo)
    await serve(server)
    assert await echoes(server, "/plain")


async def test_form_decorator_with_keywords(serve):
    server = hyperws.Server()

    @server.ws("/deco", idle_timeout=60, max_payload_length=4)
    def on_open(ws):
        ws.on("message", lambda m, b: ws.send(m, b))

    assert callable(on_open)  # the decorator returns the handler
    await serve(server)
    assert await echoes(server, "/deco", "1234")
    # the options given to the decorator apply: 5 bytes is over max_payload_length=4
    async with await RawWebSocket.connect(server.port, "/deco") as raw:
        await raw.send_text("12345")
        assert (await raw.expect_close()).close_code == 1009


async def test_form_decorator_with_options_dict(serve):
    router = hyperws.Router()

    @router.ws("/p", {"idle_timeout": 1})
    def on_open(ws):
        ws.on("message", lambda m, b: ws.send(m, b))

    assert on_open.__name__ == "on_open"
    server = hyperws.Server()
    server.use(router)
    await serve(server)
    assert await echoes(server, "/p")


async def test_form_decorator_without_arguments_besides_pattern(serve):
    server = hyperws.Server()

    @server.ws("/bare")
    def on_open(ws):
        ws.on("message", lambda m, b: ws.send(m, b))

    await serve(server)
    assert await echoes(server, "/bare")


async def test_options_dict_and_keywords_merge(serve):
    # max_payload_length from the dict, message_type from the keywords: both apply
    server = hyperws.Server()
    rec = Recorder()

    def on_open(ws):
        ws.on("message", rec.listener("message"))

    server.ws("/m", {"max_payload_length": 8}, on_open, message_type="Buffer")
    await serve(server)
    async with connect(url(server, "/m"), open_timeout=T) as client:
        await client.send("abc")
        assert await rec.first("message") == (b"abc", False)
    async with await RawWebSocket.connect(server.port, "/m") as raw:
        await raw.send_text("123456789")
        assert (await raw.expect_close()).close_code == 1009


async def test_async_open_handler(serve):
    server = hyperws.Server()

    @server.ws("/async")
    async def on_open(ws):
        await asyncio.sleep(0)
        ws.on("message", lambda m, b: ws.send(m, b))

    await serve(server)
    assert await echoes(server, "/async")


# -- mounting ------------------------------------------------------------------------------------


async def test_use_mounts_a_router_under_a_prefix(serve):
    router = hyperws.Router()
    router.ws("/connect", echo)
    server = hyperws.Server()
    server.use("/ws", router)
    await serve(server)
    assert await echoes(server, "/ws/connect")
    assert await refused_status(server, "/connect") == 404


async def test_use_without_prefix_mounts_at_root(serve):
    router = hyperws.Router()
    router.ws("/connect", echo)
    server = hyperws.Server()
    server.use(router)
    await serve(server)
    assert await echoes(server, "/connect")


async def test_nested_routers_join_prefixes(serve):
    inner = hyperws.Router()
    inner.ws("/leaf", echo)
    outer = hyperws.Router()
    outer.use("/inner", inner)
    outer.ws("/direct", echo)
    server = hyperws.Server()
    server.use("/outer", outer)
    server.ws("/top", echo)
    await serve(server)
    assert await echoes(server, "/outer/inner/leaf")
    assert await echoes(server, "/outer/direct")
    assert await echoes(server, "/top")
    assert await refused_status(server, "/inner/leaf") == 404


async def test_prefix_with_trailing_slash(serve):
    router = hyperws.Router()
    router.ws("/connect", echo)
    server = hyperws.Server()
    server.use("/ws/", router)
    await serve(server)
    assert await echoes(server, "/ws/connect")


async def test_routes_added_to_a_router_after_mounting_are_served(serve):
    router = hyperws.Router()
    server = hyperws.Server()
    server.use("/ws", router)
    router.ws("/late", echo)
    await serve(server)
    assert await echoes(server, "/ws/late")


def test_use_refuses_non_routers_and_bad_prefixes():
    server = hyperws.Server()
    with pytest.raises(TypeError):
        server.use("/x", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        server.use("no-slash", hyperws.Router())
    router = hyperws.Router()
    with pytest.raises(ValueError):
        router.use("/self", router)


# -- patterns ------------------------------------------------------------------------------------


async def test_parameter_and_wildcard_patterns(serve):
    server = hyperws.Server()
    server.ws("/chat/:room", echo)
    server.ws("/files/*", echo)
    await serve(server)
    assert await echoes(server, "/chat/lobby")
    assert await echoes(server, "/chat/my%20room")
    assert await echoes(server, "/files/a/b/c")
    assert await refused_status(server, "/chat") == 404
    assert await refused_status(server, "/chat/a/b") == 404


async def test_query_string_is_not_part_of_the_path(serve):
    server = hyperws.Server()
    server.ws("/echo", echo)
    await serve(server)
    assert await echoes(server, "/echo?token=abc&x=1")


async def test_trailing_slash_is_ignored(serve):
    server = hyperws.Server()
    server.ws("/connect", echo)
    await serve(server)
    assert await echoes(server, "/connect/")


async def test_static_segment_beats_parameter(serve):
    server = hyperws.Server()
    seen = []

    def static(ws):
        seen.append("static")
        echo(ws)

    def param(ws):
        seen.append("param")
        echo(ws)

    server.ws("/chat/:room", param)
    server.ws("/chat/new", static)
    await serve(server)
    assert await echoes(server, "/chat/new")
    assert await echoes(server, "/chat/other")
    assert seen == ["static", "param"]


@pytest.mark.parametrize("pattern", ["connect", "", "/a/:", "/a/*/b"])
def test_invalid_pattern_is_refused_at_registration(pattern):
    router = hyperws.Router()
    with pytest.raises(ValueError):
        router.ws(pattern, echo)
    with pytest.raises(ValueError):
        hyperws.Server().ws(pattern, echo)


def test_non_string_pattern_is_a_type_error():
    with pytest.raises(TypeError):
        hyperws.Router().ws(42, echo)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("first", "second"),
    [("/dup", "/dup"), ("/a/:x", "/a/:y"), ("/dup", "/dup/")],
)
async def test_duplicate_patterns_are_refused_at_listen(first, second):
    server = hyperws.Server()
    server.ws(first, echo)
    server.ws(second, echo)
    with pytest.raises(ValueError):
        await server.listen(0, "127.0.0.1")
    await server.close()  # harmless on a server that never listened


async def test_duplicate_through_a_mount_is_refused_at_listen():
    router = hyperws.Router()
    router.ws("/x", echo)
    server = hyperws.Server()
    server.use("/ws", router)
    server.ws("/ws/x", echo)
    with pytest.raises(ValueError):
        await server.listen(0, "127.0.0.1")


# -- handlers ------------------------------------------------------------------------------------


def test_non_callable_handler_is_a_type_error():
    router = hyperws.Router()
    with pytest.raises(TypeError):
        router.ws("/p", {}, 42)
    with pytest.raises(TypeError):
        router.ws("/p", {"idle_timeout": 1}, "not a function")
    with pytest.raises(TypeError):
        router.ws("/p")(None)  # the decorator applied to a non-callable
    with pytest.raises(TypeError):
        router.ws("/p", 42)


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_dict", [True, False])
def test_unknown_option_is_a_value_error_naming_it(as_dict):
    router = hyperws.Router()
    with pytest.raises(ValueError, match="compresion"):
        if as_dict:
            router.ws("/p", {"compresion": True}, echo)
        else:
            router.ws("/p", echo, compresion=True)


def test_unknown_option_in_the_decorator_form():
    with pytest.raises(ValueError, match="maxPayloadLength"):
        hyperws.Router().ws("/p", maxPayloadLength=10)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("idle_timeout", -1),
        ("idle_timeout", "60"),
        ("idle_timeout", None),
        ("idle_timeout", True),
        ("max_payload_length", 0),
        ("max_payload_length", -5),
        ("max_payload_length", 1.5),
        ("max_payload_length", "1024"),
        ("max_payload_length", True),
        ("message_type", "Text"),
        ("message_type", "string"),
        ("message_type", None),
        ("send_pings_automatically", 1),
        ("send_pings_automatically", "yes"),
    ],
)
def test_bad_option_value_is_a_value_error(name, value):
    router = hyperws.Router()
    with pytest.raises(ValueError, match=name):
        router.ws("/p", {name: value}, echo)
    with pytest.raises(ValueError, match=name):
        router.ws("/p", echo, **{name: value})


@pytest.mark.parametrize(
    "options",
    [
        {"idle_timeout": 0},
        {"idle_timeout": 0.5},
        {"idle_timeout": 120},
        {"max_payload_length": 1},
        {"max_payload_length": 64 * 1024 * 1024},
        {"message_type": "String"},
        {"message_type": "Buffer"},
        {"message_type": "ArrayBuffer"},
        {"send_pings_automatically": False},
    ],
)
def test_good_option_values_are_accepted(options):
    router = hyperws.Router()
    router.ws("/p", options, echo)
    router.ws("/q", echo, **options)


def test_options_must_be_a_mapping():
    with pytest.raises(TypeError):
        hyperws.Router().ws("/p", [("idle_timeout", 1)], echo)


async def test_idle_timeout_zero_means_never(serve):
    server = hyperws.Server()
    server.ws("/never", echo, idle_timeout=0)
    await serve(server)
    assert await echoes(server, "/never")


# -- message_type --------------------------------------------------------------------------------


async def recorded_messages(serve, message_type: str):
    server = hyperws.Server()
    rec = Recorder()

    def on_open(ws):
        ws.on("message", rec.listener("message")).on("close", rec.listener("close"))

    server.ws("/m", on_open, message_type=message_type)
    await serve(server)
    async with connect(url(server, "/m"), open_timeout=T) as client:
        await client.send("héllo")
        await client.send(b"\x00\xffbin")
        await rec.wait("message", 2)
        await client.close(4000, "bye")
    await rec.wait("close")
    return rec


async def test_message_type_string(serve):
    rec = await recorded_messages(serve, "String")
    (text, text_binary), (data, data_binary) = rec.of("message")
    assert type(text) is str and text == "héllo" and text_binary is False
    assert type(data) is bytes and data == b"\x00\xffbin" and data_binary is True
    assert rec.of("close") == [(4000, "bye")]


async def test_message_type_is_string_by_default(serve):
    server = hyperws.Server()
    rec = Recorder()
    server.ws("/m", lambda ws: ws.on("message", rec.listener("message")))
    await serve(server)
    async with connect(url(server, "/m"), open_timeout=T) as client:
        await client.send("text")
        await client.send(b"bytes")
        await rec.wait("message", 2)
    assert rec.of("message") == [("text", False), (b"bytes", True)]


async def test_message_type_buffer(serve):
    rec = await recorded_messages(serve, "Buffer")
    (text, text_binary), (data, data_binary) = rec.of("message")
    assert type(text) is bytes and text == "héllo".encode() and text_binary is False
    assert type(data) is bytes and data == b"\x00\xffbin" and data_binary is True
    code, message = rec.of("close")[0]
    assert code == 4000 and message == b"bye" and type(message) is bytes


async def test_message_type_array_buffer(serve):
    server = hyperws.Server()
    got = []
    done = asyncio.Event()

    def on_open(ws):
        def on_message(message, is_binary):
            # copy inside the listener: a memoryview need not outlive the call
            got.append((type(message), bytes(message), is_binary, message.readonly))
            if len(got) == 2:
                done.set()

        ws.on("message", on_message)

    server.ws("/m", on_open, message_type="ArrayBuffer")
    await serve(server)
    async with connect(url(server, "/m"), open_timeout=T) as client:
        await client.send("héllo")
        await client.send(b"\x00\xffbin")
        await asyncio.wait_for(done.wait(), T)
    assert got == [
        (memoryview, "héllo".encode(), False, True),
        (memoryview, b"\x00\xffbin", True, True),
    ]


async def test_array_buffer_message_can_be_echoed(echo_server):
    async with connect(url(echo_server, "/arraybuffer"), open_timeout=T) as client:
        await client.send(b"\x01\x02\x03")
        assert await asyncio.wait_for(client.recv(), T) == b"\x01\x02\x03"
        await client.send("text")
        # an echo of a memoryview with is_binary=False is a text frame again
        assert await asyncio.wait_for(client.recv(), T) == "text"


# -- Server construction and lifecycle -----------------------------------------------------------


def test_server_options_are_keyword_only():
    with pytest.raises(TypeError):
        hyperws.Server(2)  # type: ignore[misc]
    hyperws.Server(io_threads=1, max_header_bytes=1024, request_timeout=1, close_timeout=0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"io_threads": 0},
        {"io_threads": -1},
        {"io_threads": 1.5},
        {"max_header_bytes": 0},
        {"request_timeout": 0},
        {"request_timeout": -1.0},
        {"close_timeout": 0},
        {"close_timeout": "5"},
    ],
)
def test_bad_server_options(kwargs):
    with pytest.raises(ValueError):
        hyperws.Server(**kwargs)


def test_port_before_listen_is_an_error():
    with pytest.raises(RuntimeError):
        _ = hyperws.Server().port
    assert hyperws.Server().connections == 0


@pytest.mark.parametrize("port", [-1, 65536, "80", 1.0, True])
async def test_listen_refuses_bad_ports(port):
    server = hyperws.Server()
    with pytest.raises(ValueError):
        await server.listen(port, "127.0.0.1")


async def test_listen_twice_is_an_error(serve):
    server = await serve(hyperws.Server())
    with pytest.raises(RuntimeError):
        await server.listen(0, "127.0.0.1")


async def test_listen_on_a_port_in_use_fails(serve):
    first = await serve(hyperws.Server())
    second = hyperws.Server()
    with pytest.raises(OSError):
        await second.listen(first.port, "127.0.0.1")


async def test_listen_binds_a_free_port(serve):
    server = await serve(hyperws.Server())
    assert isinstance(server.port, int) and 0 < server.port < 65536


async def test_listen_default_host_accepts_loopback():
    server = hyperws.Server()
    server.ws("/echo", echo)
    await server.listen(0)  # host defaults to 0.0.0.0
    try:
        assert await echoes(server, "/echo")
    finally:
        await asyncio.wait_for(server.close(), 30)


async def test_connections_and_stats(echo_server):
    assert echo_server.connections == 0
    stats = echo_server.stats()
    assert {"connections", "loop_wakeups", "events"} <= set(stats)  # later issues add counters
    async with connect(url(echo_server, "/echo"), open_timeout=T) as a:
        async with connect(url(echo_server, "/echo"), open_timeout=T) as b:
            await until(lambda: echo_server.connections == 2)
            for i in range(10):
                await a.send(f"a{i}")
                await b.send(f"b{i}")
            for i in range(10):
                assert await asyncio.wait_for(a.recv(), T) == f"a{i}"
                assert await asyncio.wait_for(b.recv(), T) == f"b{i}"
            stats = echo_server.stats()
            assert stats["connections"] == 2
            assert stats["events"] >= 20  # at least one event per message
            assert stats["loop_wakeups"] >= 1
    await until(lambda: echo_server.connections == 0)


async def test_close_is_idempotent_and_the_server_can_listen_again():
    server = hyperws.Server()
    server.ws("/echo", echo)
    await server.listen(0, "127.0.0.1")
    await asyncio.wait_for(server.close(), 30)
    await asyncio.wait_for(server.close(), 30)
    assert server.connections == 0
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.listen(0, "127.0.0.1")
    try:
        assert await echoes(server, "/echo")
    finally:
        await asyncio.wait_for(server.close(), 30)


async def test_closed_server_refuses_connections():
    for _ in range(5):
        server = hyperws.Server()
        server.ws("/echo", echo)
        await server.listen(0, "127.0.0.1")
        port = server.port
        await asyncio.wait_for(server.close(), 30)
        # the listening socket is gone once close() has returned
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)


async def test_port_is_free_right_after_close():
    server = hyperws.Server()
    server.ws("/echo", echo)
    await server.listen(0, "127.0.0.1")
    port = server.port
    try:
        for _ in range(5):
            await asyncio.wait_for(server.close(), 30)
            server = hyperws.Server()
            server.ws("/echo", echo)
            await server.listen(port, "127.0.0.1")  # same port, right after close()
            assert await echoes(server, "/echo")
    finally:
        await asyncio.wait_for(server.close(), 30)


async def test_async_context_manager_closes():
    server = hyperws.Server()
    server.ws("/echo", echo)
    async with server:
        await server.listen(0, "127.0.0.1")
        async with connect(url(server, "/echo"), open_timeout=T) as client:
            await client.send("x")
            assert await asyncio.wait_for(client.recv(), T) == "x"
            await asyncio.wait_for(server.__aexit__(None, None, None), 30)
            await asyncio.wait_for(client.wait_closed(), T)
            assert client.close_code == 1001


def test_public_names():
    assert {"Server", "Router", "Websocket"} <= set(hyperws.__all__)
    assert isinstance(hyperws.__version__, str)
    assert issubclass(hyperws.Server, hyperws.Router)


async def test_array_buffer_messages_stay_valid_after_the_listener_returns(serve):
    server = hyperws.Server()
    kept = []
    server.ws(
        "/m", lambda ws: ws.on("message", lambda m, b: kept.append(m)), message_type="ArrayBuffer"
    )
    await serve(server)
    payloads = [bytes([i]) * (100 + i) for i in range(50)]
    async with connect(url(server, "/m"), open_timeout=T) as client:
        for payload in payloads:
            await client.send(payload)
        await until(lambda: len(kept) == len(payloads))
    await until(lambda: server.connections == 0)
    # kept past the listener, the connection and later messages: still the bytes that arrived
    assert [bytes(view) for view in kept] == payloads


# -- server.run() (blocking) ---------------------------------------------------------------------

RUN_SCRIPT = """
import sys, hyperws
server = hyperws.Server()
server.ws("/echo", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)))
print("starting", flush=True)
try:
    server.run(int(sys.argv[1]), "127.0.0.1")
except KeyboardInterrupt:
    pass
print("stopped", flush=True)
"""


async def test_run_serves_until_interrupted_and_closes_clients_with_1001():
    import signal
    import socket
    import sys

    with socket.socket() as probe:  # a free port for the child (run() takes a fixed port)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN_SCRIPT, str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"starting\n"
        client = None
        for _ in range(300):  # until the child listens (safety: about 30 s)
            try:
                client = await connect(f"ws://127.0.0.1:{port}/echo", open_timeout=T)
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert client is not None, "server.run() never accepted a connection"
        await client.send("via run()")
        assert await asyncio.wait_for(client.recv(), T) == "via run()"
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(client.wait_closed(), 30)
        assert client.close_code == 1001
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"stopped\n"
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
