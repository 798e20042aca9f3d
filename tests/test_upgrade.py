"""Upgrade routes: the (request, response) handler that accepts an upgrade with a context or rejects
it with an HTTP response, middlewares (global, router, route), the Request members, subprotocol
selection, the handler's timeout and errors, and nested routers. Real sockets on 127.0.0.1: the
``websockets`` client for upgrades, raw sockets for HTTP-level details."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import hyperws

from helpers import Recorder, until, url
from rawws import RawWebSocket, http_exchange, new_key, read_response_head, upgrade_request

T = 5  # safety-net timeout (seconds) for awaits, not a speed assertion

REQUEST_FIELDS = (
    "method",
    "path",
    "url",
    "path_parameters",
    "query",
    "query_parameters",
    "cookies",
    "ip",
    "protocols",
    "extensions",
)


def describe(request: Any) -> dict[str, Any]:
    """The request's members as plain values (an attribute that fails shows as its error, so that
    a missing member fails the comparison with a readable diff instead of becoming a 500)."""
    out: dict[str, Any] = {}
    for name in REQUEST_FIELDS:
        try:
            value = getattr(request, name)
            if name in ("path_parameters", "query_parameters", "cookies"):
                value = dict(value)
            elif name in ("protocols", "extensions"):
                value = list(value)
        except Exception as error:
            value = f"<{type(error).__name__}: {error}>"
        out[name] = value
    return out


def recording_open(rec: Recorder):
    """A ws handler that records ``("open", context, protocol)`` and echoes messages."""

    def on_open(ws: hyperws.Websocket) -> None:
        rec.record("open", ws.context, ws.protocol)
        ws.on("message", lambda message, is_binary: ws.send(message, is_binary))

    return on_open


async def refusal(server: hyperws.Server, path: str, **kwargs: Any):
    """Connects with the websockets client, expects an HTTP rejection and returns its response."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(server, path), open_timeout=T, **kwargs):
            pass
    return info.value.response


async def accepted(server: hyperws.Server, path: str, rec: Recorder, **kwargs: Any):
    """Connects with the websockets client, checks that the connection works (echo), and returns
    ``(context, protocol, client subprotocol, response headers)`` of the opened connection."""
    count = len(rec.of("open")) + 1
    async with connect(url(server, path), open_timeout=T, **kwargs) as client:
        context, protocol = (await rec.wait("open", count))[count - 1]
        await client.send("ping?")
        assert await asyncio.wait_for(client.recv(), T) == "ping?"
        return context, protocol, client.subprotocol, client.response.headers


async def raw_refusal(port: int, path: str, extra: list[tuple[str, str]] | None = None):
    """Sends an upgrade request on a raw socket; returns the response (head and body)."""
    return await http_exchange(port, upgrade_request(path, key=new_key(), extra=extra))


# -- the three forms, on Router and Server -------------------------------------------------------


async def test_form_options_dict_then_handler_on_a_router(serve):
    rec = Recorder()
    router = hyperws.Router()

    def handler(request, response):
        response.upgrade({"form": "dict"})

    router.upgrade("/connect", {"upgrade_timeout": 5}, handler)
    router.ws("/connect", recording_open(rec))
    server = hyperws.Server()
    server.use("/ws", router)
    await serve(server)
    context, *_ = await accepted(server, "/ws/connect", rec)
    assert context == {"form": "dict"}


async def test_form_handler_then_keyword_options_on_a_router(serve):
    rec = Recorder()
    router = hyperws.Router()

    def handler(request, response):
        response.upgrade({"form": "keywords"})

    router.upgrade("/connect", handler, upgrade_timeout=5)
    router.ws("/connect", recording_open(rec))
    server = hyperws.Server()
    server.use("/ws", router)
    await serve(server)
    context, *_ = await accepted(server, "/ws/connect", rec)
    assert context == {"form": "keywords"}


async def test_form_decorator_on_a_router(serve):
    rec = Recorder()
    router = hyperws.Router()

    @router.upgrade("/connect", upgrade_timeout=5)
    async def handler(request, response):
        response.upgrade({"form": "decorator"})

    router.ws("/connect", recording_open(rec))
    server = hyperws.Server()
    server.use("/ws", router)
    await serve(server)
    context, *_ = await accepted(server, "/ws/connect", rec)
    assert context == {"form": "decorator"}


async def test_form_handler_without_options_on_the_server(serve):
    rec = Recorder()
    server = hyperws.Server()

    def handler(request, response):
        response.upgrade({"form": "server"})

    server.upgrade("/connect", handler)
    server.ws("/connect", recording_open(rec))
    await serve(server)
    context, *_ = await accepted(server, "/connect", rec)
    assert context == {"form": "server"}


async def test_forms_on_the_server_with_options_dict_and_decorator(serve):
    rec = Recorder()
    server = hyperws.Server()
    server.upgrade("/a", {"upgrade_timeout": 5}, lambda req, res: res.upgrade({"route": "a"}))

    @server.upgrade("/b", upgrade_timeout=5)
    def handler_b(request, response):
        response.upgrade({"route": "b"})

    server.ws("/a", recording_open(rec))
    server.ws("/b", recording_open(rec))
    await serve(server)
    async with connect(url(server, "/a"), open_timeout=T):
        assert (await rec.wait("open", 1))[0][0] == {"route": "a"}
    async with connect(url(server, "/b"), open_timeout=T):
        assert (await rec.wait("open", 2))[1][0] == {"route": "b"}


@pytest.mark.parametrize("options", [{"idle_timeout": 5}, {"bogus": 1}])
def test_unknown_upgrade_option_is_a_value_error(options):
    router = hyperws.Router()

    def handler(request, response):
        response.upgrade()

    with pytest.raises(ValueError):
        router.upgrade("/x", options, handler)
    with pytest.raises(ValueError):
        router.upgrade("/x", handler, **options)
    with pytest.raises(ValueError):
        hyperws.Server().upgrade("/x", options, handler)


async def test_upgrade_route_without_a_ws_route_fails_at_listen():
    server = hyperws.Server()
    server.ws("/other", lambda ws: None)
    server.upgrade("/lonely", lambda request, response: response.upgrade())
    try:
        with pytest.raises(ValueError):
            await server.listen(0, "127.0.0.1")
    finally:
        await asyncio.wait_for(server.close(timeout=1.0), T)


# -- without an upgrade route --------------------------------------------------------------------


async def test_without_an_upgrade_route_every_upgrade_is_accepted_with_an_empty_context(serve):
    rec = Recorder()
    server = hyperws.Server()
    server.ws("/plain", recording_open(rec))
    await serve(server)
    context, protocol, subprotocol, _ = await accepted(server, "/plain", rec)
    assert context == {}
    assert protocol == ""
    assert subprotocol is None


async def test_without_an_upgrade_route_no_subprotocol_is_picked(serve):
    rec = Recorder()
    server = hyperws.Server()
    server.ws("/plain", recording_open(rec))
    await serve(server)
    _, protocol, subprotocol, headers = await accepted(
        server, "/plain", rec, subprotocols=["chat.v1", "chat.v2"]
    )
    assert protocol == ""
    assert subprotocol is None
    assert "Sec-WebSocket-Protocol" not in headers


# -- accept and reject ---------------------------------------------------------------------------


def chat_app(rec: Recorder, handler) -> hyperws.Server:
    """The spec's example: ``/ws/chat/:room`` with ``handler`` as its upgrade route."""
    server = hyperws.Server()
    router = hyperws.Router()
    router.upgrade("/chat/:room", handler)
    router.ws("/chat/:room", {"idle_timeout": 60}, recording_open(rec))
    server.use("/ws", router)
    return server


async def authenticate(request, response):
    token = request.query_parameters.get("token")
    if token != "secret":
        return response.status(401).send("unauthorized")
    response.upgrade({"token": token, "room": request.path_parameters["room"]})


async def test_accept_with_a_context_the_ws_handler_sees(serve):
    rec = Recorder()
    server = await serve(chat_app(rec, authenticate))
    context, protocol, *_ = await accepted(server, "/ws/chat/lobby?token=secret", rec)
    assert context == {"token": "secret", "room": "lobby"}
    assert protocol == ""


async def test_reject_401_with_a_body_the_client_reads(serve):
    rec = Recorder()
    server = await serve(chat_app(rec, authenticate))
    response = await refusal(server, "/ws/chat/lobby?token=wrong")
    assert response.status_code == 401
    assert response.body == b"unauthorized"
    response = await refusal(server, "/ws/chat/lobby")
    assert response.status_code == 401
    assert rec.of("open") == []
    # the server keeps serving after rejections
    context, *_ = await accepted(server, "/ws/chat/lobby?token=secret", rec)
    assert context["room"] == "lobby"


async def test_reject_with_a_bytes_body(serve):
    rec = Recorder()

    def handler(request, response):
        response.status(403).send(b"\x00forbidden\xff")

    server = await serve(chat_app(rec, handler))
    response = await refusal(server, "/ws/chat/lobby")
    assert response.status_code == 403
    assert response.body == b"\x00forbidden\xff"
    raw = await raw_refusal(server.port, "/ws/chat/lobby")
    assert raw.status == 403
    assert raw.body == b"\x00forbidden\xff"
    assert rec.of("open") == []


async def test_reject_with_json(serve):
    rec = Recorder()
    payload = {"error": "token expired", "retry": False, "codes": [1, 2]}

    def handler(request, response):
        response.status(422).json(payload)

    server = await serve(chat_app(rec, handler))
    raw = await raw_refusal(server.port, "/ws/chat/lobby")
    assert raw.status == 422
    assert raw.header("Content-Type").split(";")[0].strip() == "application/json"
    assert json.loads(raw.body) == payload
    response = await refusal(server, "/ws/chat/lobby")
    assert response.status_code == 422
    assert json.loads(response.body) == payload
    assert rec.of("open") == []


async def test_extra_headers_on_a_rejection(serve):
    rec = Recorder()

    def handler(request, response):
        result = response.status(401).header("WWW-Authenticate", 'Bearer realm="chat"')
        result.header("X-Reason", "expired").send("unauthorized")

    server = await serve(chat_app(rec, handler))
    response = await refusal(server, "/ws/chat/lobby")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="chat"'
    assert response.headers["X-Reason"] == "expired"
    assert response.body == b"unauthorized"
    raw = await raw_refusal(server.port, "/ws/chat/lobby")
    assert raw.header("x-reason") == "expired"


async def test_extra_header_set_before_upgrade_goes_into_the_101(serve):
    rec = Recorder()

    def handler(request, response):
        response.header("X-Session", "abc123").header("X-Node", "7").upgrade({"ok": True})

    server = await serve(chat_app(rec, handler))
    context, _, _, headers = await accepted(server, "/ws/chat/lobby", rec)
    assert context == {"ok": True}
    assert headers["X-Session"] == "abc123"
    assert headers["X-Node"] == "7"
    async with await RawWebSocket.connect(server.port, "/ws/chat/lobby") as raw:
        assert raw.response.status == 101
        assert raw.response.header("x-session") == "abc123"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_sync_and_async_handlers_accept_and_reject(serve, kind):
    rec = Recorder()
    calls: list[str] = []

    def decide(request, response):
        calls.append(request.path)
        if request.path_parameters["room"] == "closed":
            response.status(403).send("room closed")
        else:
            response.upgrade({"kind": kind})

    if kind == "sync":
        handler = decide
    else:

        async def handler(request, response):
            await asyncio.sleep(0)  # really suspends before answering
            decide(request, response)

    server = await serve(chat_app(rec, handler))
    context, *_ = await accepted(server, "/ws/chat/open", rec)
    assert context == {"kind": kind}
    response = await refusal(server, "/ws/chat/closed")
    assert response.status_code == 403
    assert response.body == b"room closed"
    assert calls == ["/ws/chat/open", "/ws/chat/closed"]


async def test_upgrade_without_a_context_gives_an_empty_dict(serve):
    rec = Recorder()
    server = await serve(chat_app(rec, lambda request, response: response.upgrade()))
    context, protocol, *_ = await accepted(server, "/ws/chat/lobby", rec)
    assert context == {}
    assert protocol == ""


# -- the Request ---------------------------------------------------------------------------------


def capturing_app(rec: Recorder, pattern: str, prefix: str = "/ws") -> hyperws.Server:
    """An app whose upgrade handler records ``describe(request)`` and a few header lookups."""

    def handler(request, response):
        rec.record("request", describe(request))
        headers = request.headers
        try:
            bracket = headers["X-Custom"]
        except KeyError:
            bracket = None
        rec.record(
            "headers",
            {
                "x-custom": headers.get("x-custom"),
                "X-CUSTOM": headers.get("X-CUSTOM"),
                "[X-Custom]": bracket,
                "missing": headers.get("x-not-sent"),
                "upgrade": headers.get("upgrade"),
                "host": headers.get("host"),
                "names_lower": all(name == name.lower() for name in headers),
            },
        )
        response.upgrade()

    server = hyperws.Server()
    router = hyperws.Router()
    router.upgrade(pattern, handler)
    router.ws(pattern, recording_open(rec))
    server.use(prefix, router)
    return server


async def test_request_basics(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    await accepted(server, "/ws/chat/lobby", rec)
    (request,) = await rec.first("request")
    assert request["method"] == "GET"
    assert request["path"] == "/ws/chat/lobby"
    assert request["url"] == "/ws/chat/lobby"
    assert request["path_parameters"] == {"room": "lobby"}
    assert request["query"] == ""
    assert request["query_parameters"] == {}
    assert request["cookies"] == {}
    assert request["ip"] == "127.0.0.1"


async def test_path_and_query_parameters(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/rooms/:room/users/:user"))
    query = "token=abc&page=2&empty="
    await accepted(server, f"/ws/rooms/general/users/42?{query}", rec)
    (request,) = await rec.first("request")
    assert request["path"] == "/ws/rooms/general/users/42"
    assert request["url"] == f"/ws/rooms/general/users/42?{query}"
    assert request["query"] == query
    assert request["path_parameters"] == {"room": "general", "user": "42"}
    assert request["query_parameters"] == {"token": "abc", "page": "2", "empty": ""}


async def test_repeated_query_key_last_value_wins(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    await accepted(server, "/ws/chat/lobby?a=1&b=x&a=2&a=3", rec)
    (request,) = await rec.first("request")
    assert request["query"] == "a=1&b=x&a=2&a=3"
    assert request["query_parameters"] == {"a": "3", "b": "x"}


async def test_parameters_are_percent_decoded(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/rooms/:room/users/:user"))
    await accepted(
        server, "/ws/rooms/caf%C3%A9/users/a%20b%2Fc?name=J%C3%BCrgen%20M&sym=%26%3D", rec
    )
    (request,) = await rec.first("request")
    assert request["path_parameters"] == {"room": "café", "user": "a b/c"}
    assert request["query_parameters"] == {"name": "Jürgen M", "sym": "&="}
    # the raw query string stays as sent
    assert request["query"] == "name=J%C3%BCrgen%20M&sym=%26%3D"


async def test_headers_and_cookies(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    await accepted(
        server,
        "/ws/chat/lobby",
        rec,
        additional_headers={"X-Custom": "Value 1", "Cookie": "session=abc123; theme=dark"},
    )
    (request,) = await rec.first("request")
    (headers,) = await rec.first("headers")
    assert request["cookies"] == {"session": "abc123", "theme": "dark"}
    assert headers["x-custom"] == "Value 1"
    assert headers["X-CUSTOM"] == "Value 1"
    assert headers["[X-Custom]"] == "Value 1"
    assert headers["missing"] is None
    assert headers["upgrade"].lower() == "websocket"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["names_lower"] is True


async def test_offered_protocols_and_extensions_are_readable(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    extra = [
        ("Sec-WebSocket-Protocol", "chat.v1, chat.v2"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-custom-ext"),
    ]
    async with await RawWebSocket.connect(server.port, "/ws/chat/lobby", extra=extra) as raw:
        assert raw.response.status == 101
        (request,) = await rec.first("request")
        assert request["protocols"] == ["chat.v1", "chat.v2"]
        assert request["extensions"] == ["permessage-deflate", "x-custom-ext"]
        # the handler chose no subprotocol: none in the 101
        assert raw.response.header("Sec-WebSocket-Protocol") is None


async def test_no_protocols_or_extensions_offered(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    async with await RawWebSocket.connect(server.port, "/ws/chat/lobby"):
        (request,) = await rec.first("request")
        assert request["protocols"] == []
        assert request["extensions"] == []


# -- subprotocols --------------------------------------------------------------------------------


async def test_handler_chooses_a_subprotocol(serve):
    rec = Recorder()

    def handler(request, response):
        rec.record("offered", list(request.protocols))
        response.upgrade({"p": 1}, protocol="chat.v2")

    server = await serve(chat_app(rec, handler))
    context, protocol, subprotocol, headers = await accepted(
        server, "/ws/chat/lobby", rec, subprotocols=["chat.v1", "chat.v2"]
    )
    assert (await rec.first("offered")) == (["chat.v1", "chat.v2"],)
    assert context == {"p": 1}
    assert protocol == "chat.v2"
    assert subprotocol == "chat.v2"
    assert headers["Sec-WebSocket-Protocol"] == "chat.v2"


async def test_protocol_keyword_alone(serve):
    rec = Recorder()
    server = await serve(
        chat_app(rec, lambda request, response: response.upgrade(protocol="chat.v1"))
    )
    context, protocol, subprotocol, _ = await accepted(
        server, "/ws/chat/lobby", rec, subprotocols=["chat.v1"]
    )
    assert context == {}
    assert protocol == "chat.v1"
    assert subprotocol == "chat.v1"


async def test_a_protocol_the_client_did_not_offer_is_a_value_error(serve):
    rec = Recorder()

    def handler(request, response):
        try:
            response.upgrade({"x": 1}, protocol="not-offered")
        except ValueError as error:
            rec.record("error", error)
        response.upgrade({"x": 2})

    server = await serve(chat_app(rec, handler))
    context, protocol, subprotocol, headers = await accepted(
        server, "/ws/chat/lobby", rec, subprotocols=["chat.v1"]
    )
    assert len(rec.of("error")) == 1
    assert context == {"x": 2}
    assert protocol == ""
    assert subprotocol is None
    assert "Sec-WebSocket-Protocol" not in headers


async def test_a_protocol_when_the_client_offered_none_is_a_value_error(serve):
    rec = Recorder()

    def handler(request, response):
        try:
            response.upgrade(protocol="chat.v1")
        except ValueError as error:
            rec.record("error", error)
            response.status(400).send("no subprotocol")

    server = await serve(chat_app(rec, handler))
    response = await refusal(server, "/ws/chat/lobby")
    assert response.status_code == 400
    assert response.body == b"no subprotocol"
    assert len(rec.of("error")) == 1


async def test_no_subprotocol_chosen_when_the_handler_picks_none(serve):
    rec = Recorder()
    server = await serve(chat_app(rec, lambda request, response: response.upgrade({"a": 1})))
    context, protocol, subprotocol, headers = await accepted(
        server, "/ws/chat/lobby", rec, subprotocols=["chat.v1", "chat.v2"]
    )
    assert context == {"a": 1}
    assert protocol == ""
    assert subprotocol is None
    assert "Sec-WebSocket-Protocol" not in headers


# -- middlewares ---------------------------------------------------------------------------------


def sync_mw(order: list[str], name: str):
    def middleware(request, response, next):
        order.append(name)
        next()

    return middleware


def async_mw(order: list[str], name: str):
    async def middleware(request, response):
        await asyncio.sleep(0)
        order.append(name)

    return middleware


async def test_middlewares_run_global_then_router_then_route_then_handler(serve):
    rec = Recorder()
    order: list[str] = []

    async def handler(request, response):
        order.append("handler")
        response.upgrade({"order": list(order)})

    server = hyperws.Server()
    server.use(sync_mw(order, "global-sync"))
    server.use(async_mw(order, "global-async"))
    router = hyperws.Router()
    router.use(async_mw(order, "router-async"))
    router.use(sync_mw(order, "router-sync"))
    router.upgrade(
        "/chat/:room",
        {"middlewares": [sync_mw(order, "route-sync"), async_mw(order, "route-async")]},
        handler,
    )
    router.ws("/chat/:room", recording_open(rec))
    server.use("/ws", router)
    await serve(server)
    context, *_ = await accepted(server, "/ws/chat/lobby", rec)
    expected = [
        "global-sync",
        "global-async",
        "router-async",
        "router-sync",
        "route-sync",
        "route-async",
        "handler",
    ]
    assert order == expected
    assert context == {"order": expected}


async def test_route_middlewares_with_keyword_and_decorator_forms(serve):
    rec = Recorder()
    order: list[str] = []
    server = hyperws.Server()

    def handler_a(request, response):
        order.append("handler-a")
        response.upgrade()

    server.upgrade("/a", handler_a, middlewares=[sync_mw(order, "mw-a")])

    @server.upgrade("/b", middlewares=[async_mw(order, "mw-b")])
    async def handler_b(request, response):
        order.append("handler-b")
        response.upgrade()

    server.ws("/a", recording_open(rec))
    server.ws("/b", recording_open(rec))
    await serve(server)
    async with connect(url(server, "/a"), open_timeout=T):
        await rec.wait("open", 1)
    async with connect(url(server, "/b"), open_timeout=T):
        await rec.wait("open", 2)
    assert order == ["mw-a", "handler-a", "mw-b", "handler-b"]


async def test_a_middleware_sees_the_request(serve):
    rec = Recorder()

    def middleware(request, response, next):
        rec.record("seen", describe(request))
        next()

    server = hyperws.Server()
    server.use(middleware)
    server.upgrade("/chat/:room", lambda request, response: response.upgrade())
    server.ws("/chat/:room", recording_open(rec))
    await serve(server)
    await accepted(server, "/chat/lobby?x=1", rec)
    (seen,) = await rec.first("seen")
    assert seen["path"] == "/chat/lobby"
    assert seen["url"] == "/chat/lobby?x=1"
    assert seen["query_parameters"] == {"x": "1"}


async def test_a_middleware_header_goes_into_the_101(serve):
    rec = Recorder()

    async def middleware(request, response):
        response.header("X-From-Middleware", "yes")

    server = hyperws.Server()
    server.upgrade(
        "/x", {"middlewares": [middleware]}, lambda request, response: response.upgrade()
    )
    server.ws("/x", recording_open(rec))
    await serve(server)
    _, _, _, headers = await accepted(server, "/x", rec)
    assert headers["X-From-Middleware"] == "yes"


@pytest.mark.parametrize("level", ["global", "router", "route"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_middleware_that_rejects_stops_the_chain(serve, level, kind):
    rec = Recorder()
    order: list[str] = []

    if kind == "sync":

        def rejecting(request, response, next):
            order.append("rejecting")
            response.status(429).header("Retry-After", "3").send("slow down")

    else:

        async def rejecting(request, response):
            await asyncio.sleep(0)
            order.append("rejecting")
            response.status(429).header("Retry-After", "3").send("slow down")

    def handler(request, response):
        order.append("handler")
        response.upgrade()

    server = hyperws.Server()
    router = hyperws.Router()
    route_mws = [rejecting] if level == "route" else []
    route_mws.append(sync_mw(order, "after"))
    if level == "global":
        server.use(rejecting)
    if level == "router":
        router.use(rejecting)
    router.upgrade("/chat/:room", {"middlewares": route_mws}, handler)
    router.ws("/chat/:room", recording_open(rec))
    server.use("/ws", router)
    await serve(server)
    response = await refusal(server, "/ws/chat/lobby")
    assert response.status_code == 429
    assert response.body == b"slow down"
    assert response.headers["Retry-After"] == "3"
    assert order == ["rejecting"]
    assert rec.of("open") == []


async def test_global_and_router_middlewares_run_for_a_ws_route_without_upgrade_route(serve):
    rec = Recorder()
    order: list[str] = []

    def global_mw(request, response, next):
        order.append(f"global {request.path}")
        next()

    async def router_mw(request, response):
        order.append(f"router {request.path}")

    server = hyperws.Server()
    server.use(global_mw)
    router = hyperws.Router()
    router.use(router_mw)
    router.ws("/plain", recording_open(rec))
    server.use("/ws", router)
    server.ws("/top", recording_open(rec))
    await serve(server)
    async with connect(url(server, "/ws/plain"), open_timeout=T):
        context, protocol = (await rec.wait("open", 1))[0]
    assert context == {}
    assert protocol == ""
    assert order == ["global /ws/plain", "router /ws/plain"]
    async with connect(url(server, "/top"), open_timeout=T):
        await rec.wait("open", 2)
    assert order == ["global /ws/plain", "router /ws/plain", "global /top"]


async def test_global_middleware_rejects_a_ws_route_without_upgrade_route(serve):
    rec = Recorder()

    def global_mw(request, response, next):
        if request.query_parameters.get("key") != "k":
            response.status(403).send("forbidden")
        else:
            next()

    server = hyperws.Server()
    server.use(global_mw)
    server.ws("/plain", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/plain")
    assert response.status_code == 403
    assert response.body == b"forbidden"
    assert rec.of("open") == []
    context, *_ = await accepted(server, "/plain?key=k", rec)
    assert context == {}


# -- timeout, exceptions, answering twice --------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_never_answers_gets_503_and_the_socket_closes(serve, kind):
    rec = Recorder()
    release = asyncio.Event()

    if kind == "sync":

        def handler(request, response):
            rec.record("called")

    else:

        async def handler(request, response):
            rec.record("called")
            await release.wait()

    server = hyperws.Server()
    server.upgrade("/slow", {"upgrade_timeout": 0.3}, handler)
    server.ws("/slow", recording_open(rec))
    await serve(server)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(upgrade_request("/slow", key=new_key()))
            await writer.drain()
            response = await read_response_head(reader)
            assert response.status == 503
            # then the server closes the connection (EOF after at most the response body)
            try:
                await asyncio.wait_for(reader.read(), T)
            except ConnectionResetError:
                pass
            assert reader.at_eof()
        finally:
            writer.close()
        assert rec.of("called") == [()]
        # the websockets client sees the same
        response = await refusal(server, "/slow")
        assert response.status_code == 503
        assert rec.of("open") == []
    finally:
        release.set()


async def test_an_async_handler_that_answers_in_time_is_not_a_503(serve):
    rec = Recorder()

    async def handler(request, response):
        await asyncio.sleep(0.05)
        response.upgrade({"late": False})

    server = hyperws.Server()
    server.upgrade("/x", {"upgrade_timeout": 5}, handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    context, *_ = await accepted(server, "/x", rec)
    assert context == {"late": False}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_exception_in_the_handler_is_a_500_and_is_logged(serve, caplog, kind):
    caplog.set_level(logging.ERROR, logger="hyperws")
    rec = Recorder()

    class Boom(Exception):
        pass

    if kind == "sync":

        def handler(request, response):
            if request.query_parameters.get("ok") != "1":
                raise Boom("upgrade handler failed")
            response.upgrade({"ok": True})

    else:

        async def handler(request, response):
            await asyncio.sleep(0)
            if request.query_parameters.get("ok") != "1":
                raise Boom("upgrade handler failed")
            response.upgrade({"ok": True})

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/x")
    assert response.status_code == 500
    await until(
        lambda: any(
            r.name == "hyperws" and r.exc_info and isinstance(r.exc_info[1], Boom)
            for r in caplog.records
        )
    )
    assert rec.of("open") == []
    # the server keeps serving
    context, *_ = await accepted(server, "/x?ok=1", rec)
    assert context == {"ok": True}


async def test_an_exception_in_a_middleware_is_a_500_and_is_logged(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")
    rec = Recorder()
    called: list[str] = []

    def failing(request, response, next):
        raise KeyError("middleware failed")

    def handler(request, response):
        called.append("handler")
        response.upgrade()

    server = hyperws.Server()
    server.upgrade("/x", {"middlewares": [failing]}, handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/x")
    assert response.status_code == 500
    await until(
        lambda: any(
            r.name == "hyperws" and r.exc_info and isinstance(r.exc_info[1], KeyError)
            for r in caplog.records
        )
    )
    assert called == []
    assert rec.of("open") == []


async def test_upgrade_twice_raises(serve):
    rec = Recorder()

    def handler(request, response):
        response.upgrade({"first": True})
        try:
            response.upgrade({"second": True})
        except RuntimeError as error:
            rec.record("error", error)

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    context, *_ = await accepted(server, "/x", rec)
    assert context == {"first": True}
    assert len(rec.of("error")) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_send_twice_raises(serve, kind):
    rec = Recorder()

    def answer(response):
        response.status(403).send("first")
        try:
            response.send("second")
        except RuntimeError as error:
            rec.record("error", error)

    if kind == "sync":

        def handler(request, response):
            answer(response)

    else:

        async def handler(request, response):
            await asyncio.sleep(0)
            answer(response)

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/x")
    assert response.status_code == 403
    assert response.body == b"first"
    assert len(rec.of("error")) == 1
    assert rec.of("open") == []


async def test_upgrade_after_send_and_send_after_upgrade_raise(serve):
    rec = Recorder()

    def handler(request, response):
        if request.query_parameters.get("mode") == "reject":
            response.status(401).send("no")
            try:
                response.upgrade({"sneaky": True})
            except RuntimeError as error:
                rec.record("error", "upgrade after send", error)
        else:
            response.upgrade({"fine": True})
            try:
                response.status(500).send("too late")
            except RuntimeError as error:
                rec.record("error", "send after upgrade", error)

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/x?mode=reject")
    assert response.status_code == 401
    assert response.body == b"no"
    assert rec.of("open") == []
    context, *_ = await accepted(server, "/x?mode=accept", rec)
    assert context == {"fine": True}
    assert [e[0] for e in rec.of("error")] == ["upgrade after send", "send after upgrade"]


# -- nested routers ------------------------------------------------------------------------------


async def test_nested_routers_with_prefixes_and_parameters(serve):
    rec = Recorder()
    order: list[str] = []

    def handler(request, response):
        order.append("handler")
        rec.record("request", describe(request))
        response.upgrade({"id": request.path_parameters["id"]})

    server = hyperws.Server()
    server.use(sync_mw(order, "global"))
    r1 = hyperws.Router()
    r1.use(async_mw(order, "r1"))
    r2 = hyperws.Router()
    r2.use(sync_mw(order, "r2"))
    r2.upgrade("/rooms/:id", {"middlewares": [async_mw(order, "route")]}, handler)
    r2.ws("/rooms/:id", recording_open(rec))
    r1.use("/v1", r2)
    server.use("/api", r1)
    await serve(server)
    context, *_ = await accepted(server, "/api/v1/rooms/7?q=1", rec)
    assert context == {"id": "7"}
    (request,) = await rec.first("request")
    assert request["path"] == "/api/v1/rooms/7"
    assert request["url"] == "/api/v1/rooms/7?q=1"
    assert request["path_parameters"] == {"id": "7"}
    assert order == ["global", "r1", "r2", "route", "handler"]
    # the unprefixed path is not a route
    response = await refusal(server, "/rooms/7")
    assert response.status_code == 404


async def test_nested_router_parameters_in_the_prefix_route(serve):
    rec = Recorder()

    def handler(request, response):
        response.upgrade(dict(request.path_parameters))

    r2 = hyperws.Router()
    r2.upgrade("/users/:user/rooms/:id", handler)
    r2.ws("/users/:user/rooms/:id", recording_open(rec))
    r1 = hyperws.Router()
    r1.use("/v2", r2)
    server = hyperws.Server()
    server.use("/api", r1)
    await serve(server)
    context, *_ = await accepted(server, "/api/v2/users/ada/rooms/99", rec)
    assert context == {"user": "ada", "id": "99"}


# -- more middleware and handler behaviour -------------------------------------------------------


async def test_a_sync_middleware_may_call_next_later(serve):
    rec = Recorder()
    order: list[str] = []

    def deferring(request, response, next):
        order.append("deferring")
        asyncio.get_running_loop().call_soon(next)

    def handler(request, response):
        order.append("handler")
        response.upgrade({"deferred": True})

    server = hyperws.Server()
    server.upgrade("/x", {"middlewares": [deferring]}, handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    context, *_ = await accepted(server, "/x", rec)
    assert context == {"deferred": True}
    assert order == ["deferring", "handler"]


async def test_a_middleware_that_never_answers_gets_503(serve):
    rec = Recorder()
    called: list[str] = []

    def stuck(request, response, next):
        pass  # neither next() nor a response

    def handler(request, response):
        called.append("handler")
        response.upgrade()

    server = hyperws.Server()
    server.upgrade("/x", {"middlewares": [stuck], "upgrade_timeout": 0.3}, handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/x")
    assert response.status_code == 503
    assert called == []
    assert rec.of("open") == []


async def test_an_exception_in_an_async_middleware_is_a_500_and_is_logged(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")
    rec = Recorder()

    async def failing(request, response):
        await asyncio.sleep(0)
        raise LookupError("async middleware failed")

    server = hyperws.Server()
    server.use(failing)
    server.ws("/plain", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/plain")
    assert response.status_code == 500
    await until(
        lambda: any(
            r.name == "hyperws" and r.exc_info and isinstance(r.exc_info[1], LookupError)
            for r in caplog.records
        )
    )
    assert rec.of("open") == []


async def test_concurrent_upgrades_answered_out_of_order_keep_their_own_context(serve):
    rec = Recorder()
    n = 10
    gates = {str(i): asyncio.Event() for i in range(n)}

    async def handler(request, response):
        room = request.path_parameters["room"]
        rec.record("waiting", room)
        await gates[room].wait()
        response.upgrade({"room": room})

    def on_open(ws):
        ws.on("message", lambda message, is_binary: ws.send(f"{ws.context['room']}:{message}"))

    server = hyperws.Server()
    server.upgrade("/rooms/:room", handler)
    server.ws("/rooms/:room", on_open)
    await serve(server)

    async def client(room: str) -> str:
        async with connect(url(server, f"/rooms/{room}"), open_timeout=T) as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), T)

    tasks = [asyncio.create_task(client(str(i))) for i in range(n)]
    try:
        await rec.wait("waiting", n)
        for i in reversed(range(n)):
            gates[str(i)].set()
            await asyncio.sleep(0)
        replies = await asyncio.wait_for(asyncio.gather(*tasks), T)
    finally:
        for event in gates.values():
            event.set()
    assert replies == [f"{i}:hi" for i in range(n)]


async def test_answering_after_the_client_left_does_not_break_the_server(serve):
    rec = Recorder()
    gate = asyncio.Event()

    async def handler(request, response):
        rec.record("called", request.query_parameters.get("n"))
        if request.query_parameters.get("n") == "1":
            await gate.wait()
        try:
            response.upgrade({"n": request.query_parameters.get("n")})
        except Exception as error:
            rec.record("error", error)
        rec.record("answered")

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade_request("/x?n=1", key=new_key()))
    await writer.drain()
    await rec.first("called")
    writer.close()
    await writer.wait_closed()
    gate.set()
    await rec.first("answered")
    # the late accept for a vanished client is harmless: the server goes on serving
    async with connect(url(server, "/x?n=2"), open_timeout=T) as client:
        await client.send("still there?")
        assert await asyncio.wait_for(client.recv(), T) == "still there?"
    assert {"n": "2"} in [args[0] for args in rec.of("open")]


async def test_a_router_middleware_does_not_run_for_a_sibling_router(serve):
    rec = Recorder()
    order: list[str] = []
    server = hyperws.Server()
    a, b = hyperws.Router(), hyperws.Router()
    a.use(sync_mw(order, "a"))
    b.use(async_mw(order, "b"))
    for router, name in ((a, "a"), (b, "b")):
        router.upgrade("/room", lambda request, response, name=name: response.upgrade({"r": name}))
        router.ws("/room", recording_open(rec))
    server.use("/a", a)
    server.use("/b", b)
    await serve(server)
    async with connect(url(server, "/b/room"), open_timeout=T):
        assert (await rec.wait("open", 1))[0][0] == {"r": "b"}
    assert order == ["b"]
    async with connect(url(server, "/a/room"), open_timeout=T):
        assert (await rec.wait("open", 2))[1][0] == {"r": "a"}
    assert order == ["b", "a"]


async def test_an_exception_after_upgrade_keeps_the_connection_and_is_logged(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")
    rec = Recorder()

    async def handler(request, response):
        response.upgrade({"up": True})
        raise ZeroDivisionError("after the answer")

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    context, *_ = await accepted(server, "/x", rec)
    assert context == {"up": True}
    await until(
        lambda: any(
            r.name == "hyperws" and r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError)
            for r in caplog.records
        )
    )


async def test_an_exception_after_a_rejection_keeps_the_rejection(serve, caplog):
    caplog.set_level(logging.ERROR, logger="hyperws")
    rec = Recorder()

    def handler(request, response):
        response.status(418).send("teapot")
        raise ZeroDivisionError("after the answer")

    server = hyperws.Server()
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await refusal(server, "/x")
    assert response.status_code == 418
    assert response.body == b"teapot"


async def test_protocols_from_repeated_headers_and_odd_spacing(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    extra = [
        ("Sec-WebSocket-Protocol", "a.v1 ,b.v1"),
        ("Sec-WebSocket-Protocol", "c.v1"),
    ]
    async with await RawWebSocket.connect(server.port, "/ws/chat/lobby", extra=extra):
        (request,) = await rec.first("request")
        assert request["protocols"] == ["a.v1", "b.v1", "c.v1"]


async def test_cookie_values_may_contain_equals_signs(serve):
    rec = Recorder()
    server = await serve(capturing_app(rec, "/chat/:room"))
    await accepted(server, "/ws/chat/lobby", rec, additional_headers={"Cookie": "jwt=a.b=; flag=1"})
    (request,) = await rec.first("request")
    assert request["cookies"] == {"jwt": "a.b=", "flag": "1"}


@pytest.mark.parametrize(
    "request_bytes",
    [
        upgrade_request("/x", key=new_key(), version="8"),
        upgrade_request("/x", key="not-a-valid-key"),
        upgrade_request("/x", key=None),
    ],
    ids=["bad-version", "bad-key", "no-key"],
)
async def test_an_invalid_handshake_never_reaches_middlewares_or_the_handler(serve, request_bytes):
    rec = Recorder()
    calls: list[str] = []

    def global_mw(request, response, next):
        calls.append("global")
        next()

    def handler(request, response):
        calls.append("handler")
        response.upgrade()

    server = hyperws.Server()
    server.use(global_mw)
    server.upgrade("/x", handler)
    server.ws("/x", recording_open(rec))
    await serve(server)
    response = await http_exchange(server.port, request_bytes)
    assert response.status == 400
    # a valid upgrade afterwards runs both (so the list above would have caught a call)
    await accepted(server, "/x", rec)
    assert calls == ["global", "handler"]
