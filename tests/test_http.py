"""Plain HTTP routes on the WebSocket port: the three ways to declare them, methods and the 404/405/426
answers, Request members and bodies (text, JSON, bytes, chunked, too large), middlewares, keep-alive,
pipelining, HEAD, the handler's timeout and errors, and a connection that upgrades after HTTP requests.
Real sockets on 127.0.0.1: raw HTTP over asyncio streams, the stdlib ``http.client``, and the
``websockets`` client."""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import Recorder, url
from httpclient import HttpConnection, fetch, request
from rawws import BINARY, TEXT, RawWebSocket, new_key, read_response_head, upgrade_request

T = 5  # safety-net timeout (seconds) for awaits, not a speed assertion


def hello(request: hyperws.Request, response: hyperws.Response) -> None:
    response.send(f"hello {request.method} {request.path}")


async def test_routes_in_three_forms_answer_with_status_headers_and_body(serve):
    server = hyperws.Server()
    server.get("/dict", {"middlewares": []}, hello)
    server.get("/keywords", hello, handler_timeout=5)

    @server.get("/decorated")
    async def decorated(request: hyperws.Request, response: hyperws.Response) -> None:
        await asyncio.sleep(0)
        response.status(201).header("X-Thing", "1").type("text/html").send("<p>made</p>")

    await serve(server)
    for path in ("/dict", "/keywords"):
        got = await fetch(server.port, "GET", path)
        assert (got.status, got.body) == (200, f"hello GET {path}".encode())
        assert got.header("Content-Type") == "text/plain; charset=utf-8"
    got = await fetch(server.port, "GET", "/decorated")
    assert (got.status, got.reason, got.body) == (201, "Created", b"<p>made</p>")
    assert got.header("X-Thing") == "1"
    assert got.header("Content-Type") == "text/html"


async def test_each_method_reaches_its_handler_and_any_takes_the_rest(serve):
    server = hyperws.Server()
    for method in ("get", "post", "put", "delete"):
        getattr(server, method)("/item/:id", hello)
    server.any("/anything", hello)
    server.post("/anything", lambda request, response: response.send("post wins"))
    await serve(server)
    for method in ("GET", "POST", "PUT", "DELETE"):
        got = await fetch(server.port, method, "/item/7")
        assert (got.status, got.body) == (200, f"hello {method} /item/7".encode())
    assert (await fetch(server.port, "PATCH", "/anything")).body == b"hello PATCH /anything"
    assert (await fetch(server.port, "POST", "/anything")).body == b"post wins"


async def test_unknown_path_404_other_method_405_and_ws_only_path_426(serve):
    server = hyperws.Server()
    server.get("/page", hello)
    server.post("/page", hello)
    server.ws("/ws", lambda ws: None)
    server.ws("/ws-only", lambda ws: None)
    server.post("/ws", hello)  # a path with a ws route and a POST route
    await serve(server)
    assert (await fetch(server.port, "GET", "/nope")).status == 404
    not_allowed = await fetch(server.port, "DELETE", "/page")
    assert not_allowed.status == 405
    assert not_allowed.header("Allow") == "GET, POST, HEAD"
    for path in ("/ws", "/ws-only"):
        upgrade_required = await fetch(server.port, "GET", path)
        assert upgrade_required.status == 426
        assert upgrade_required.header("Upgrade") == "websocket"
    assert (await fetch(server.port, "POST", "/ws")).body == b"hello POST /ws"
    assert (await fetch(server.port, "PUT", "/ws")).status == 405


async def test_head_is_answered_like_get_without_the_body(serve):
    server = hyperws.Server()
    server.get("/page", lambda request, response: response.send(f"{request.method} body"))
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        head = await conn.exchange("HEAD", "/page")
        assert (head.status, head.header("Content-Length")) == (200, str(len("HEAD body")))
        # Nothing followed the head: the next response on the connection is the GET's.
        got = await conn.exchange("GET", "/page")
        assert got.body == b"GET body"


async def test_request_members(serve):
    seen: dict[str, Any] = {}

    def handler(request: hyperws.Request, response: hyperws.Response) -> None:
        seen.update(
            method=request.method,
            path=request.path,
            url=request.url,
            query=request.query,
            query_parameters=request.query_parameters,
            path_parameters=request.path_parameters,
            cookies=request.cookies,
            header=request.headers["X-CUSTOM"],
            ip=request.ip,
            proxy_ip=request.proxy_ip,
            protocols=request.protocols,
        )
        response.json({"ok": True})

    server = hyperws.Server()
    server.get("/users/:name/posts/:post", handler)
    await serve(server)
    got = await fetch(
        server.port,
        "GET",
        "/users/ada%20l/posts/3?sort=new&q=a%2Bb",
        headers=[("X-Custom", "yes"), ("Cookie", "session=abc; theme=dark")],
    )
    assert (got.status, json.loads(got.body)) == (200, {"ok": True})
    assert got.header("Content-Type") == "application/json"
    assert seen == {
        "method": "GET",
        "path": "/users/ada%20l/posts/3",
        "url": "/users/ada%20l/posts/3?sort=new&q=a%2Bb",
        "query": "sort=new&q=a%2Bb",
        "query_parameters": {"sort": "new", "q": "a+b"},
        "path_parameters": {"name": "ada l", "post": "3"},
        "cookies": {"session": "abc", "theme": "dark"},
        "header": "yes",
        "ip": "127.0.0.1",
        "proxy_ip": "",
        "protocols": [],
    }


async def test_bodies_as_text_json_and_bytes(serve):
    server = hyperws.Server()

    @server.post("/json")
    async def as_json(request: hyperws.Request, response: hyperws.Response) -> None:
        response.json({"received": await request.json()})

    @server.put("/text")
    async def as_text(request: hyperws.Request, response: hyperws.Response) -> None:
        response.send((await request.text()).upper())

    @server.post("/bytes")
    async def as_bytes(request: hyperws.Request, response: hyperws.Response) -> None:
        data = await request.bytes()
        response.send(bytes(reversed(data)))

    await serve(server)
    got = await fetch(server.port, "POST", "/json", json.dumps({"a": [1, 2]}).encode())
    assert json.loads(got.body) == {"received": {"a": [1, 2]}}
    assert (await fetch(server.port, "PUT", "/text", "héllo".encode())).body == "HÉLLO".encode()
    binary = bytes(range(256)) * 4
    assert (await fetch(server.port, "POST", "/bytes", binary)).body == binary[::-1]
    assert (await fetch(server.port, "POST", "/bytes")).body == b""


async def test_a_body_that_is_not_json_is_a_handler_error(serve, caplog):
    server = hyperws.Server()

    @server.post("/json")
    async def as_json(request: hyperws.Request, response: hyperws.Response) -> None:
        response.json(await request.json())

    await serve(server)
    with caplog.at_level(logging.ERROR, logger="hyperws"):
        got = await fetch(server.port, "POST", "/json", b"{not json")
    assert got.status == 500
    assert any(isinstance(r.exc_info[1], ValueError) for r in caplog.records if r.exc_info)


async def test_chunked_bodies_are_decoded(serve):
    server = hyperws.Server()

    @server.post("/upload")
    async def upload(request: hyperws.Request, response: hyperws.Response) -> None:
        response.send(await request.bytes())

    await serve(server)
    chunked = b"5\r\nhello\r\n7;ext=x\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    async with await HttpConnection.open(server.port) as conn:
        head = request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
        for piece in (head + chunked[:9], chunked[9:20], chunked[20:]):
            await conn.send(piece)
            await asyncio.sleep(0.01)
        got = await conn.read()
        assert (got.status, got.body) == (200, b"hello, world")
        # The connection goes on after a chunked body.
        assert (await conn.exchange("POST", "/upload", b"again")).body == b"again"


async def test_bodies_over_max_body_length_get_413(serve):
    calls: list[bytes] = []

    async def record(request: hyperws.Request, response: hyperws.Response) -> None:
        calls.append(await request.bytes())
        response.send("ok")

    server = hyperws.Server(max_body_length=1000)
    server.post("/upload", record)
    await serve(server)
    assert (await fetch(server.port, "POST", "/upload", b"x" * 1000)).status == 200
    assert (await fetch(server.port, "POST", "/upload", b"x" * 1001)).status == 413
    # Announced larger: refused at once, without waiting for the body.
    async with await HttpConnection.open(server.port) as conn:
        await conn.send(request("POST", "/upload", headers=[("Content-Length", "10000000")]))
        assert (await conn.read()).status == 413
        assert await conn.closed_by_server()
    async with await HttpConnection.open(server.port) as conn:
        head = request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
        await conn.send(head + b"3e8\r\n" + b"y" * 1000 + b"\r\n1\r\nz\r\n0\r\n\r\n")
        assert (await conn.read()).status == 413
    assert calls == [b"x" * 1000]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], 400),
        ([("Content-Length", "5"), ("Content-Length", "6")], 400),
        ([("Content-Length", "five")], 400),
        ([("Transfer-Encoding", "gzip, chunked")], 501),
    ],
)
async def test_ambiguous_or_unsupported_framing_is_refused(serve, headers, status):
    server = hyperws.Server()
    server.post("/upload", hello)
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send(request("POST", "/upload", headers=headers) + b"hello")
        assert (await conn.read()).status == status
        assert await conn.closed_by_server()


async def test_malformed_chunked_framing_is_400(serve):
    server = hyperws.Server()
    server.post("/upload", hello)
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        head = request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
        await conn.send(head + b"zz\r\nhello\r\n")
        assert (await conn.read()).status == 400


async def test_expect_100_continue_is_answered_before_the_body(serve):
    server = hyperws.Server()

    @server.post("/upload")
    async def upload(request: hyperws.Request, response: hyperws.Response) -> None:
        response.send(f"{len(await request.bytes())} bytes")

    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        headers = [("Content-Length", "4"), ("Expect", "100-continue")]
        await conn.send(request("POST", "/upload", headers=headers))
        assert (await read_response_head(conn.reader)).status == 100
        await conn.send(b"data")
        assert (await conn.read()).body == b"4 bytes"


async def test_middlewares_run_global_router_route_then_handler(serve):
    order: list[str] = []

    def global_mw(request, response, next):
        order.append("global")
        next()

    async def router_mw(request, response):
        await asyncio.sleep(0)
        order.append("router")

    def route_mw(request, response, next):
        order.append("route")
        if request.query_parameters.get("stop"):
            response.status(403).send("stopped")
            return
        next()

    def handler(request, response):
        order.append("handler")
        response.send("done")

    server = hyperws.Server()
    server.use(global_mw)
    router = hyperws.Router()
    router.use(router_mw)
    router.get("/thing/:id", {"middlewares": [route_mw]}, handler)
    server.use("/api", router)
    await serve(server)
    got = await fetch(server.port, "GET", "/api/thing/1")
    assert (got.status, got.body) == (200, b"done")
    assert order == ["global", "router", "route", "handler"]
    order.clear()
    stopped = await fetch(server.port, "GET", "/api/thing/1?stop=1")
    assert (stopped.status, stopped.body) == (403, b"stopped")
    assert order == ["global", "router", "route"]


async def test_keep_alive_serves_several_requests_on_one_connection(serve):
    server = hyperws.Server()
    server.get("/n/:n", lambda request, response: response.send(request.path_parameters["n"]))
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        for n in range(5):
            got = await conn.exchange("GET", f"/n/{n}")
            assert (got.body, got.header("Connection")) == (str(n).encode(), None)
        last = await conn.exchange("GET", "/n/last", headers=[("Connection", "close")])
        assert (last.body, last.header("Connection")) == (b"last", "close")
        assert await conn.closed_by_server()


async def test_http_1_0_closes_unless_it_asks_for_keep_alive(serve):
    server = hyperws.Server()
    server.get("/", hello)
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        got = await conn.exchange("GET", "/", version="1.0")
        assert (got.status, got.header("Connection")) == (200, "close")
        assert await conn.closed_by_server()
    async with await HttpConnection.open(server.port) as conn:
        headers = [("Connection", "keep-alive")]
        for _ in range(2):
            got = await conn.exchange("GET", "/", version="1.0", headers=headers)
            assert (got.status, got.header("Connection")) == (200, "keep-alive")


async def test_a_handler_may_close_the_connection(serve):
    server = hyperws.Server()
    server.get("/bye", lambda request, response: response.header("Connection", "close").send("bye"))
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        got = await conn.exchange("GET", "/bye")
        assert (got.body, got.header("Connection")) == (b"bye", "close")
        assert await conn.closed_by_server()


async def test_pipelined_requests_are_answered_in_order(serve):
    server = hyperws.Server()

    @server.get("/slow/:n")
    async def slow(request: hyperws.Request, response: hyperws.Response) -> None:
        n = int(request.path_parameters["n"])
        await asyncio.sleep(0.01 * (n % 3))  # later requests may finish first if run at once
        response.send(str(n))

    @server.post("/echo")
    async def echo(request: hyperws.Request, response: hyperws.Response) -> None:
        response.send(await request.bytes())

    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        burst = b"".join(
            request("GET", f"/slow/{n}") if n % 2 else request("POST", "/echo", f"e{n}".encode())
            for n in range(40)
        )
        await conn.send(burst)
        bodies = [(await conn.read()).body for _ in range(40)]
        assert bodies == [str(n).encode() if n % 2 else f"e{n}".encode() for n in range(40)]


async def test_a_handler_that_never_answers_gets_the_client_a_503(serve):
    server = hyperws.Server()

    @server.get("/stuck", handler_timeout=0.2)
    async def stuck(request: hyperws.Request, response: hyperws.Response) -> None:
        await asyncio.sleep(60)

    kept: list[hyperws.Response] = []
    server.get("/forgotten", lambda request, response: kept.append(response), handler_timeout=0.2)
    await serve(server)
    for path in ("/stuck", "/forgotten"):
        async with await HttpConnection.open(server.port) as conn:
            got = await conn.exchange("GET", path)
            assert got.status == 503
            assert await conn.closed_by_server()
    with pytest.raises(RuntimeError, match="can no longer be answered"):
        kept[0].send("too late")


async def test_an_exception_is_a_500_and_is_logged(serve, caplog):
    server = hyperws.Server()

    @server.get("/boom")
    def boom(request: hyperws.Request, response: hyperws.Response) -> None:
        raise KeyError("oops")

    @server.get("/middleware-boom", middlewares=[lambda request, response: 1 / 0])
    def unreachable(request: hyperws.Request, response: hyperws.Response) -> None:
        response.send("no")

    await serve(server)
    with caplog.at_level(logging.ERROR, logger="hyperws"):
        async with await HttpConnection.open(server.port) as conn:
            assert (await conn.exchange("GET", "/boom")).status == 500
            assert await conn.closed_by_server()
        assert (await fetch(server.port, "GET", "/middleware-boom")).status == 500
    errors = [r for r in caplog.records if r.name == "hyperws" and r.exc_info]
    assert [type(r.exc_info[1]) for r in errors] == [KeyError, ZeroDivisionError]
    assert "GET /boom" in errors[0].getMessage()


async def test_answering_twice_or_upgrading_a_plain_request_raises(serve):
    errors: list[BaseException] = []

    def twice(request: hyperws.Request, response: hyperws.Response) -> None:
        response.send("first")
        for attempt in (lambda: response.send("second"), lambda: response.upgrade({})):
            try:
                attempt()
            except RuntimeError as error:
                errors.append(error)

    server = hyperws.Server()
    server.get("/twice", twice)
    server.get("/upgrade", lambda request, response: response.upgrade({}))
    await serve(server)
    assert (await fetch(server.port, "GET", "/twice")).body == b"first"
    assert "already answered" in str(errors[0])
    assert "not plain HTTP requests" in str(errors[1])
    assert (await fetch(server.port, "GET", "/upgrade")).status == 500


async def test_http_and_ws_routes_share_a_path(serve):
    rec = Recorder()
    server = hyperws.Server()
    server.get("/chat", lambda request, response: response.send("the chat page"))

    @server.ws("/chat")
    def on_open(ws: hyperws.Websocket) -> None:
        rec.record("open")
        ws.on("message", lambda message, is_binary: ws.send(message, is_binary))

    await serve(server)
    assert (await fetch(server.port, "GET", "/chat")).body == b"the chat page"
    async with connect(url(server, "/chat"), open_timeout=T) as client:
        await client.send("hi")
        assert await asyncio.wait_for(client.recv(), T) == "hi"
    assert len(rec.of("open")) == 1


async def test_a_keep_alive_connection_may_upgrade_later(serve):
    server = hyperws.Server()
    server.get("/", lambda request, response: response.send("page"))
    server.ws("/ws", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)))
    await serve(server)
    conn = await HttpConnection.open(server.port)
    for _ in range(2):
        assert (await conn.exchange("GET", "/")).body == b"page"
    await conn.send(upgrade_request("/ws", key=new_key()))
    response = await read_response_head(conn.reader)
    assert response.status == 101
    async with RawWebSocket(conn.reader, conn.writer, response) as raw:
        await raw.send_text("after http")
        assert await raw.read_message() == (TEXT, b"after http")
        await raw.send_binary(b"\x00\x01")
        assert await raw.read_message() == (BINARY, b"\x00\x01")


async def test_upgrade_handler_and_http_route_see_the_same_request_members(serve):
    seen: list[tuple[str, str]] = []

    def check(request: hyperws.Request, response: hyperws.Response) -> None:
        seen.append((request.ip, request.proxy_ip))
        response.upgrade()

    server = hyperws.Server()
    server.upgrade("/ws", check)
    server.ws("/ws", lambda ws: seen.append((ws.ip, ws.proxy_ip)))
    await serve(server)
    async with connect(url(server, "/ws"), open_timeout=T):
        pass
    assert seen[:2] == [("127.0.0.1", ""), ("127.0.0.1", "")]


async def test_a_real_http_client_with_keep_alive(serve):
    server = hyperws.Server()
    server.get("/health", lambda request, response: response.json({"status": "ok"}))

    @server.post("/items")
    async def add(request: hyperws.Request, response: hyperws.Response) -> None:
        response.status(201).json(await request.json())

    await serve(server)

    def client() -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=T)
        results = []
        for _ in range(3):
            conn.request("GET", "/health")
            reply = conn.getresponse()
            results.append((reply.status, reply.read()))
        conn.request(
            "POST", "/items", body=b'{"x": 1}', headers={"Content-Type": "application/json"}
        )
        reply = conn.getresponse()
        results.append((reply.status, reply.read()))
        conn.close()
        return results

    results = await asyncio.to_thread(client)
    assert results == [(200, b'{"status": "ok"}')] * 3 + [(201, b'{"x": 1}')]


async def test_nested_routers_prefix_http_routes(serve):
    api = hyperws.Router()
    v1 = hyperws.Router()
    v1.get("/users/:id", lambda request, response: response.json(request.path_parameters))
    api.use("/v1", v1)
    server = hyperws.Server()
    server.use("/api", api)
    await serve(server)
    got = await fetch(server.port, "GET", "/api/v1/users/42")
    assert json.loads(got.body) == {"id": "42"}
    assert (await fetch(server.port, "GET", "/v1/users/42")).status == 404


def test_route_and_server_options_are_checked():
    server = hyperws.Server()
    with pytest.raises(ValueError, match="unknown HTTP route option"):
        server.get("/", hello, idle_timeout=3)
    with pytest.raises(ValueError, match="handler_timeout"):
        server.post("/", hello, handler_timeout=0)
    with pytest.raises(ValueError, match="middlewares"):
        server.put("/", hello, middlewares=["nope"])
    with pytest.raises(TypeError, match="callable"):
        server.delete("/", {}, "not a handler")
    with pytest.raises(ValueError):
        server.get("no-slash", hello)
    with pytest.raises(ValueError, match="max_body_length"):
        hyperws.Server(max_body_length=0)


async def test_duplicate_routes_are_refused_at_listen(serve):
    server = hyperws.Server()
    server.get("/a/:x", hello)
    server.get("/a/:y", hello)
    with pytest.raises(ValueError, match="duplicate HTTP route"):
        await serve(server)


async def test_the_auth_example_serves_its_page_its_health_and_token_upgrades(serve):
    path = Path(__file__).resolve().parent.parent / "examples" / "auth.py"
    spec = importlib.util.spec_from_file_location("auth_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    server = await serve(example.server)
    page = await fetch(server.port, "GET", "/")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert b"new WebSocket(" in page.body and b"?token=" in page.body
    health = await fetch(server.port, "GET", "/health")
    assert json.loads(health.body) == {"status": "ok", "connections": 0}
    async with connect(url(server, "/rooms/lobby?token=secret"), open_timeout=T) as client:
        assert await asyncio.wait_for(client.recv(), T) == "hello ada, you are in lobby"
        health = await fetch(server.port, "GET", "/health")
        assert json.loads(health.body)["connections"] == 1


async def test_a_handler_that_returns_without_answering_gets_the_client_a_500(serve):
    server = hyperws.Server()
    server.get("/silent", lambda request, response: None)
    await serve(server)
    got = await fetch(server.port, "GET", "/silent")
    assert got.status == 500
    assert b"without answering" in got.body


async def test_a_client_pipelining_without_reading_is_answered_in_order(serve):
    server = hyperws.Server()
    server.get("/n/:n", lambda request, response: response.send(request.path_parameters["n"] * 50))
    await serve(server)
    count = 2000  # far more answers than the socket buffers hold while the client does not read
    async with await HttpConnection.open(server.port) as conn:
        conn.writer.write(b"".join(request("GET", f"/n/{n}") for n in range(count)))
        await asyncio.sleep(0.2)
        for n in range(count):
            assert (await conn.read()).body == str(n).encode() * 50
        await conn.writer.drain()


async def test_an_idle_kept_alive_connection_is_closed_after_request_timeout(serve):
    server = hyperws.Server(request_timeout=0.3)
    server.get("/", hello)
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        assert (await conn.exchange("GET", "/")).status == 200
        assert await conn.closed_by_server()


async def test_a_body_slower_than_request_timeout_is_disconnected_before_any_handler(serve):
    calls: list[str] = []
    server = hyperws.Server(request_timeout=0.3)
    server.post("/upload", lambda request, response: calls.append("called"))
    await serve(server)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send(request("POST", "/upload", headers=[("Content-Length", "10")]) + b"abc")
        assert await conn.closed_by_server()
    assert calls == []
