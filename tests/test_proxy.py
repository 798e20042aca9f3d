"""The client's address behind proxies: ``trust_proxy`` (hop counts and address/network lists) with
``X-Forwarded-For`` or ``Forwarded``, spoofing attempts, and the PROXY protocol v1 and v2 (LOCAL,
UNKNOWN, malformed headers), for HTTP routes, upgrade handlers and ``ws.ip``. Real sockets on
127.0.0.1: raw HTTP (the PROXY header is sent as the balancer would) and the ``websockets`` client."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import struct
from typing import Any

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import Recorder, url
from httpclient import HttpConnection, fetch, request
from rawws import RawWebSocket, new_key, read_response_head, upgrade_request

T = 5  # safety-net timeout (seconds) for awaits, not a speed assertion

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def who(request: hyperws.Request, response: hyperws.Response) -> None:
    response.json({"ip": request.ip, "proxy_ip": request.proxy_ip})


async def who_server(serve, **options: Any) -> hyperws.Server:
    server = hyperws.Server(**options)
    server.get("/who", who)
    return await serve(server)


async def seen(server: hyperws.Server, headers: list[tuple[str, str]]) -> dict[str, str]:
    got = await fetch(server.port, "GET", "/who", headers=headers)
    assert got.status == 200, got
    return json.loads(got.body)


def proxy_v2(source: str, source_port: int, command: int = 0x1) -> bytes:
    """A PROXY protocol v2 header for a TCP connection from ``source`` to 127.0.0.1:80."""
    ip = ipaddress.ip_address(source)
    if ip.version == 4:
        family, destination = 0x11, ipaddress.ip_address("127.0.0.1")
    else:
        family, destination = 0x21, ipaddress.ip_address("::1")
    addresses = ip.packed + destination.packed + struct.pack("!HH", source_port, 80)
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, family])
        + struct.pack("!H", len(addresses))
        + addresses
    )


def proxy_v2_local() -> bytes:
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


# trust_proxy


async def test_without_trust_proxy_forwarding_headers_are_ignored(serve):
    server = await who_server(serve)
    headers = [("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=198.51.100.1")]
    assert await seen(server, headers) == {"ip": "127.0.0.1", "proxy_ip": ""}


async def test_one_trusted_hop_takes_the_address_the_proxy_appended(serve):
    server = await who_server(serve, trust_proxy=1)
    # The client sent "X-Forwarded-For: 6.6.6.6" itself; the proxy appended the address it saw.
    spoofed = [("X-Forwarded-For", "6.6.6.6, 203.0.113.9")]
    assert await seen(server, spoofed) == {"ip": "203.0.113.9", "proxy_ip": "127.0.0.1"}
    # A header per hop is the same list.
    split = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.9")]
    assert (await seen(server, split))["ip"] == "203.0.113.9"
    # No header: the peer is the client.
    assert await seen(server, []) == {"ip": "127.0.0.1", "proxy_ip": ""}


async def test_hop_counts_read_that_many_addresses_from_the_right(serve):
    server = await who_server(serve, trust_proxy=2)
    chain = [("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.0.0.2")]
    assert await seen(server, chain) == {"ip": "203.0.113.9", "proxy_ip": "127.0.0.1"}
    short = [("X-Forwarded-For", "203.0.113.9")]
    assert (await seen(server, short))["ip"] == "203.0.113.9"


async def test_trusted_networks_believe_only_listed_proxies(serve):
    server = await who_server(serve, trust_proxy=["127.0.0.0/8", "10.0.0.0/8"])
    chain = [("X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.1.1.1, 10.2.2.2")]
    assert await seen(server, chain) == {"ip": "198.51.100.1", "proxy_ip": "127.0.0.1"}
    # An entry that is not an address stops the walk: nothing left of it can be attributed.
    garbage = [("X-Forwarded-For", "6.6.6.6, bogus, 10.2.2.2")]
    assert (await seen(server, garbage))["ip"] == "10.2.2.2"


async def test_a_peer_outside_the_trusted_networks_is_the_client(serve):
    server = await who_server(serve, trust_proxy=["10.0.0.0/8", "2001:db8::/32"])
    headers = [("X-Forwarded-For", "203.0.113.9")]
    assert await seen(server, headers) == {"ip": "127.0.0.1", "proxy_ip": ""}


async def test_forwarded_header_when_chosen_and_only_then(serve):
    server = await who_server(serve, trust_proxy=1, proxy_header="Forwarded")
    headers = [
        ("Forwarded", 'for=6.6.6.6;proto=http, for="[2001:db8::7]:4711";by=10.0.0.1'),
        ("X-Forwarded-For", "198.51.100.99"),  # sent by the client: not the header the proxy sets
    ]
    assert await seen(server, headers) == {"ip": "2001:db8::7", "proxy_ip": "127.0.0.1"}
    assert (await seen(server, [("X-Forwarded-For", "198.51.100.99")]))["ip"] == "127.0.0.1"
    hidden = [("Forwarded", "for=_hidden")]
    assert (await seen(server, hidden))["ip"] == "127.0.0.1"


async def test_ws_ip_and_the_upgrade_request_use_the_trusted_address(serve):
    rec = Recorder()
    server = hyperws.Server(trust_proxy=["127.0.0.1"])

    def check(request: hyperws.Request, response: hyperws.Response) -> None:
        rec.record("upgrade", request.ip, request.proxy_ip)
        response.upgrade()

    server.upgrade("/checked", check)
    server.ws("/checked", lambda ws: rec.record("open", ws.ip, ws.proxy_ip))
    server.ws("/direct", lambda ws: rec.record("open", ws.ip, ws.proxy_ip))
    await serve(server)
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    async with connect(url(server, "/checked"), open_timeout=T, additional_headers=headers):
        await rec.wait("open")
    async with connect(url(server, "/direct"), open_timeout=T, additional_headers=headers):
        await rec.wait("open", 2)
    async with connect(url(server, "/direct"), open_timeout=T):
        await rec.wait("open", 3)
    assert rec.of("upgrade") == [("203.0.113.9", "127.0.0.1")]
    assert rec.of("open") == [
        ("203.0.113.9", "127.0.0.1"),
        ("203.0.113.9", "127.0.0.1"),
        ("127.0.0.1", ""),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trust_proxy": True}, "trust_proxy=True would trust any peer"),
        ({"trust_proxy": -1}, "proxy hops >= 0"),
        ({"trust_proxy": "10.0.0.0/8"}, "non-empty list"),
        ({"trust_proxy": []}, "non-empty list"),
        ({"trust_proxy": ["10.0.0.0/8", "proxy.local"]}, "'proxy.local' is not an IP address"),
        ({"trust_proxy": ["10.0.0.0/33"]}, "is not an IP address or network"),
        ({"proxy_header": "X-Real-IP"}, "proxy_header must be one of"),
        ({"proxy_protocol": "yes"}, "proxy_protocol must be True or False"),
    ],
)
def test_bad_proxy_options_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        hyperws.Server(**options)


# PROXY protocol


async def test_proxy_v1_names_the_client_for_every_request_of_the_connection(serve):
    server = await who_server(serve, proxy_protocol=True)
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 80\r\n"
    async with await HttpConnection.open(server.port, header) as conn:
        for _ in range(2):
            got = await conn.exchange("GET", "/who")
            assert json.loads(got.body) == {"ip": "203.0.113.9", "proxy_ip": "127.0.0.1"}


async def test_proxy_v1_tcp6_and_unknown(serve):
    server = await who_server(serve, proxy_protocol=True)
    v6 = b"PROXY TCP6 2001:db8::9 ::1 4000 443\r\n"
    async with await HttpConnection.open(server.port, v6) as conn:
        got = await conn.exchange("GET", "/who")
        assert json.loads(got.body) == {"ip": "2001:db8::9", "proxy_ip": "127.0.0.1"}
    unknown = b"PROXY UNKNOWN\r\n"
    async with await HttpConnection.open(server.port, unknown) as conn:
        got = await conn.exchange("GET", "/who")
        assert json.loads(got.body) == {"ip": "127.0.0.1", "proxy_ip": ""}


async def test_proxy_v2_proxy_and_local(serve):
    server = await who_server(serve, proxy_protocol=True)
    for source, expected in (("198.51.100.7", "198.51.100.7"), ("2001:db8::5", "2001:db8::5")):
        async with await HttpConnection.open(server.port, proxy_v2(source, 40000)) as conn:
            got = await conn.exchange("GET", "/who")
            assert json.loads(got.body) == {"ip": expected, "proxy_ip": "127.0.0.1"}
    # LOCAL: the balancer's own connection (a health check): the socket peer stays.
    async with await HttpConnection.open(server.port, proxy_v2_local()) as conn:
        got = await conn.exchange("GET", "/who")
        assert json.loads(got.body) == {"ip": "127.0.0.1", "proxy_ip": ""}


async def test_a_header_arriving_in_pieces_is_read_whole(serve):
    server = await who_server(serve, proxy_protocol=True)
    header = proxy_v2("198.51.100.8", 1234)
    async with await HttpConnection.open(server.port) as conn:
        for piece in (header[:5], header[5:14], header[14:] + request("GET", "/who")[:10]):
            await conn.send(piece)
            await asyncio.sleep(0.01)
        await conn.send(request("GET", "/who")[10:])
        assert json.loads((await conn.read()).body)["ip"] == "198.51.100.8"


async def test_websocket_through_a_proxy_protocol_balancer(serve):
    rec = Recorder()
    server = hyperws.Server(proxy_protocol=True)
    server.ws("/ws", lambda ws: rec.record("open", ws.ip, ws.proxy_ip))
    await serve(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"PROXY TCP4 203.0.113.50 127.0.0.1 5555 80\r\n")
    writer.write(upgrade_request("/ws", key=new_key()))
    response = await read_response_head(reader)
    assert response.status == 101
    async with RawWebSocket(reader, writer, response):
        assert await rec.first("open") == ("203.0.113.50", "127.0.0.1")


@pytest.mark.parametrize(
    "start",
    [
        request("GET", "/who"),  # no PROXY header at all
        b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\nGET /who HTTP/1.1\r\n\r\n",
        b"PROXY TCP9 1.2.3.4 127.0.0.1 1 2\r\nGET /who HTTP/1.1\r\n\r\n",
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
        V2_SIGNATURE + b"\x2f\x11\x00\x0c" + bytes(12),  # command 15
        b"PROXY " + b"x" * 200 + b"\r\n",
    ],
)
async def test_a_connection_without_a_valid_proxy_header_is_closed_unanswered(serve, start):
    server = await who_server(serve, proxy_protocol=True)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send(start)
        assert await asyncio.wait_for(conn.reader.read(), T) == b""


async def test_a_proxy_header_without_the_option_is_a_bad_request(serve):
    server = await who_server(serve)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 80\r\n" + request("GET", "/who"))
        assert (await conn.read()).status == 400


async def test_proxy_protocol_and_trusted_forwarding_together(serve):
    # An L4 balancer in front of an L7 proxy at 10.0.0.7, which appends X-Forwarded-For.
    server = await who_server(serve, proxy_protocol=True, trust_proxy=["10.0.0.0/8"])
    header = b"PROXY TCP4 10.0.0.7 127.0.0.1 6000 80\r\n"
    async with await HttpConnection.open(server.port, header) as conn:
        got = await conn.exchange("GET", "/who", headers=[("X-Forwarded-For", "198.51.100.2")])
        assert json.loads(got.body) == {"ip": "198.51.100.2", "proxy_ip": "10.0.0.7"}
        got = await conn.exchange("GET", "/who")
        assert json.loads(got.body) == {"ip": "10.0.0.7", "proxy_ip": "127.0.0.1"}
