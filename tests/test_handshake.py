"""The HTTP upgrade: 101 with the right accept key, and the refusals (404, 426, 400, 431), with raw
requests on real sockets."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import Recorder, url
from rawws import (
    TEXT,
    RawWebSocket,
    accept_key,
    build_frame,
    http_exchange,
    new_key,
    read_response_head,
    upgrade_request,
)

T = 5


@pytest.fixture
async def hs(serve):
    """A server with an echo route ``/ws`` that records each open; max_header_bytes=2048 and a short
    request_timeout. Returns (server, recorder)."""
    rec = Recorder()
    server = hyperws.Server(max_header_bytes=2048, request_timeout=0.5)

    def on_open(ws):
        rec.record("open")
        ws.on("message", lambda m, b: ws.send(m, b))

    server.ws("/ws", on_open)
    return await serve(server), rec


async def test_upgrade_answers_101_with_the_accept_key(hs):
    server, rec = hs
    key = new_key()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(upgrade_request("/ws", key=key))
        response = await read_response_head(reader)
        assert response.status == 101
        assert response.header("Upgrade").lower() == "websocket"
        assert "upgrade" in response.header("Connection").lower()
        assert response.header("Sec-WebSocket-Accept") == accept_key(key)
        # no subprotocol or extension is chosen when none was asked for
        assert response.header("Sec-WebSocket-Protocol") is None
        assert response.header("Sec-WebSocket-Extensions") is None
        await rec.first("open")
    finally:
        writer.close()


async def test_rfc_sample_key(hs):
    # RFC 6455 section 1.3
    server, _ = hs
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(upgrade_request("/ws", key="dGhlIHNhbXBsZSBub25jZQ=="))
        response = await read_response_head(reader)
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    finally:
        writer.close()


async def test_plain_get_to_a_ws_route_is_426(hs):
    server, rec = hs
    response = await http_exchange(server.port, upgrade_request("/ws", upgrade=False, version=None))
    assert response.status == 426
    assert response.header("Upgrade").lower() == "websocket"
    assert response.body  # a short explanation
    assert rec.of("open") == []


async def test_upgrade_header_other_than_websocket_is_426(hs):
    server, _ = hs
    request = upgrade_request("/ws", key=new_key()).replace(b"Upgrade: websocket", b"Upgrade: h2c")
    assert (await http_exchange(server.port, request)).status == 426


async def test_connection_header_without_upgrade_is_refused(hs):
    server, _ = hs
    request = upgrade_request("/ws", key=new_key()).replace(
        b"Connection: Upgrade", b"Connection: keep-alive"
    )
    assert (await http_exchange(server.port, request)).status in (400, 426)


@pytest.mark.parametrize("with_upgrade", [True, False])
async def test_unknown_path_is_404(hs, with_upgrade):
    server, rec = hs
    request = (
        upgrade_request("/nowhere", key=new_key())
        if with_upgrade
        else upgrade_request("/nowhere", upgrade=False, version=None)
    )
    response = await http_exchange(server.port, request)
    assert response.status == 404
    assert rec.of("open") == []


async def test_websockets_client_gets_404_for_an_unknown_path(hs):
    from websockets.exceptions import InvalidStatus

    server, _ = hs
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(server, "/nowhere"), open_timeout=T):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", "abc"])
async def test_other_websocket_version_is_400_naming_13(hs, version):
    server, rec = hs
    response = await http_exchange(
        server.port, upgrade_request("/ws", key=new_key(), version=version)
    )
    assert response.status == 400
    assert response.header("Sec-WebSocket-Version") == "13"
    assert rec.of("open") == []


async def test_missing_websocket_version_is_400(hs):
    server, _ = hs
    response = await http_exchange(server.port, upgrade_request("/ws", key=new_key(), version=None))
    assert response.status in (400, 426)


@pytest.mark.parametrize(
    "key",
    [
        None,  # missing
        "",
        "abc",  # not 16 bytes
        "not base64 at all!!!!!!!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # 20 bytes
    ],
)
async def test_missing_or_invalid_key_is_400(hs, key):
    server, rec = hs
    response = await http_exchange(server.port, upgrade_request("/ws", key=key))
    assert response.status == 400
    assert rec.of("open") == []


async def test_request_head_over_max_header_bytes_is_431(hs):
    server, rec = hs
    request = upgrade_request("/ws", key=new_key(), extra=[("X-Padding", "a" * 4000)])
    response = await http_exchange(server.port, request)
    assert response.status == 431
    assert rec.of("open") == []


async def test_request_head_just_under_max_header_bytes_is_accepted(hs):
    server, _ = hs
    base = upgrade_request("/ws", key=new_key(), extra=[("X-Padding", "")])
    padding = 2048 - len(base) - 8  # a little room: the limit may count the head differently
    request = upgrade_request("/ws", key=new_key(), extra=[("X-Padding", "a" * padding)])
    assert len(request) < 2048
    assert (await http_exchange(server.port, request)).status == 101


async def test_default_max_header_bytes_accepts_a_large_browser_like_head(serve):
    server = hyperws.Server()
    server.ws("/ws", lambda ws: None)
    await serve(server)
    cookie = "session=" + "c" * 8000
    request = upgrade_request("/ws", key=new_key(), extra=[("Cookie", cookie)])
    assert (await http_exchange(server.port, request)).status == 101
    too_big = upgrade_request("/ws", key=new_key(), extra=[("Cookie", "c" * 20000)])
    assert (await http_exchange(server.port, too_big)).status == 431


@pytest.mark.parametrize(
    "request_bytes", [b"garbage\r\n\r\n", b"GET\r\n\r\n", b"\x16\x03\x01\x00\xa5\r\n\r\n"]
)
async def test_malformed_request_is_400(hs, request_bytes):
    server, _ = hs
    assert (await http_exchange(server.port, request_bytes)).status == 400


async def test_non_get_method_is_refused(hs):
    server, rec = hs
    request = upgrade_request("/ws", key=new_key()).replace(b"GET ", b"POST ", 1)
    response = await http_exchange(server.port, request)
    assert 400 <= response.status < 500
    assert rec.of("open") == []


async def test_http_1_0_upgrade_is_refused(hs):
    server, _ = hs
    request = upgrade_request("/ws", key=new_key()).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    response = await http_exchange(server.port, request)
    assert response.status == 400


async def test_missing_host_is_400(hs):
    server, _ = hs
    request = upgrade_request("/ws", key=new_key()).replace(b"Host: 127.0.0.1\r\n", b"")
    assert (await http_exchange(server.port, request)).status == 400


async def test_header_names_and_tokens_are_case_insensitive(hs):
    server, _ = hs
    key = new_key()
    request = (
        "GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nUPGRADE: WebSocket\r\n"
        "connection: keep-alive, upgrade\r\n"
        f"sec-websocket-key: {key}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
    ).encode()
    response = await http_exchange(server.port, request)
    assert response.status == 101
    assert response.header("sec-websocket-accept") == accept_key(key)


async def test_subprotocol_and_extension_offers_are_not_accepted(hs):
    server, _ = hs
    extra = [
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("Origin", "http://example.com"),
    ]
    async with await RawWebSocket.connect(server.port, "/ws", extra=extra) as ws:
        assert ws.response.header("Sec-WebSocket-Protocol") is None
        assert ws.response.header("Sec-WebSocket-Extensions") is None
        await ws.send_text("plain frames")
        assert await ws.read_message() == (TEXT, b"plain frames")


async def test_websockets_client_offering_compression_still_echoes(hs):
    server, _ = hs
    async with connect(url(server, "/ws"), open_timeout=T, compression="deflate") as client:
        await client.send("x" * 1000)
        assert await asyncio.wait_for(client.recv(), T) == "x" * 1000


async def test_request_head_split_across_many_writes(hs):
    server, _ = hs
    key = new_key()
    request = upgrade_request("/ws", key=key)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for i in range(0, len(request), 7):
            writer.write(request[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        response = await read_response_head(reader)
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == accept_key(key)
        ws = RawWebSocket(reader, writer, response)
        await ws.send_text("after a slow head")
        assert await ws.read_message() == (TEXT, b"after a slow head")
    finally:
        writer.close()


async def test_silent_connection_is_dropped_after_request_timeout(hs):
    server, rec = hs  # request_timeout=0.5
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        data = await asyncio.wait_for(reader.read(), 10)  # EOF (or an error response), not a hang
        assert not data.startswith(b"HTTP/1.1 101")
    finally:
        writer.close()
    assert rec.of("open") == []
    assert server.connections == 0


async def test_partial_head_is_dropped_after_request_timeout(hs):
    server, _ = hs
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(upgrade_request("/ws", key=new_key())[:30])
        data = await asyncio.wait_for(reader.read(), 10)
        assert not data.startswith(b"HTTP/1.1 101")
    finally:
        writer.close()


async def test_refused_requests_do_not_count_as_connections(hs):
    server, rec = hs
    for request in (
        upgrade_request("/nowhere", key=new_key()),
        upgrade_request("/ws", key=None),
        upgrade_request("/ws", upgrade=False),
    ):
        await http_exchange(server.port, request)
    assert server.connections == 0
    assert rec.of("open") == []
    # and the server still upgrades the next one
    async with connect(url(server, "/ws"), open_timeout=T) as client:
        await client.send("ok")
        assert await asyncio.wait_for(client.recv(), T) == "ok"


async def test_frames_pipelined_behind_a_refused_request_are_not_processed(hs):
    server, rec = hs
    request = upgrade_request("/ws", key=new_key(), version="8") + build_frame(TEXT, b"sneaky")
    response = await http_exchange(server.port, request)
    assert response.status == 400
    assert rec.of("open") == []


async def test_ipv6_loopback_when_listening_on_it():
    server = hyperws.Server()
    server.ws("/ws", lambda ws: ws.on("message", lambda m, b: ws.send(ws.ip)))
    try:
        await server.listen(0, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        async with connect(f"ws://[::1]:{server.port}/ws", open_timeout=T) as client:
            await client.send("who am i")
            assert await asyncio.wait_for(client.recv(), T) == "::1"
    finally:
        await asyncio.wait_for(server.close(), 30)
