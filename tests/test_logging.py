"""Logging: every record goes through the ``hyperws`` logger and its children, records about a
connection carry its id, peer and route, and the access log (off by default) writes one Combined Log
Format line per answered HTTP request and upgrade on ``hyperws.access``. Real server, real clients."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import hyperws

from helpers import until
from httpclient import fetch

T = 5.0
HERE = Path(__file__).parent
# 127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 200 5 "-" "agent"
CLF = re.compile(
    r"^(?P<peer>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"$'
)


class Boom(Exception):
    pass


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [CLF.match(r.getMessage()) for r in records(caplog, "hyperws.access")]
    assert all(lines), [r.getMessage() for r in records(caplog, "hyperws.access")]
    return [line for line in lines if line is not None]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_error_in_a_handler_is_logged_with_the_connection_id_peer_and_route(
    serve, caplog, kind
):
    caplog.set_level(logging.ERROR, logger="hyperws")
    server = hyperws.Server()
    opened: asyncio.Queue[hyperws.Websocket] = asyncio.Queue()

    def on_message(message: str | bytes, is_binary: bool) -> None:
        raise Boom(message)

    async def on_message_async(message: str | bytes, is_binary: bool) -> None:
        await asyncio.sleep(0)
        raise Boom(message)

    @server.ws("/rooms/:room")
    def on_open(ws: hyperws.Websocket) -> None:
        ws.on("message", on_message if kind == "sync" else on_message_async)
        opened.put_nowait(ws)

    await serve(server)
    async with connect(f"ws://127.0.0.1:{server.port}/rooms/lobby", open_timeout=T) as client:
        ws = await asyncio.wait_for(opened.get(), T)
        await client.send("boom")
        await until(lambda: records(caplog, "hyperws"))
    [record] = records(caplog, "hyperws")
    assert isinstance(record.exc_info and record.exc_info[1], Boom)
    assert (record.connection_id, record.peer, record.route) == (ws.id, "127.0.0.1", "/rooms/:room")
    # (An async listener's error is reported for its 'handler', the awaitable it returned.)
    assert record.getMessage().endswith(
        f"handler of connection #{ws.id} from 127.0.0.1 on /rooms/:room"
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_error_in_a_request_handler_is_logged_with_the_connection_and_route(
    serve, caplog, kind
):
    caplog.set_level(logging.ERROR, logger="hyperws")
    server = hyperws.Server()

    def fail(request: hyperws.Request, response: hyperws.Response) -> None:
        raise Boom("no")

    async def fail_async(request: hyperws.Request, response: hyperws.Response) -> None:
        await asyncio.sleep(0)
        raise Boom("no")

    server.get("/items/:id", fail if kind == "sync" else fail_async)
    await serve(server)
    assert (await fetch(server.port, "GET", "/items/7?x=1")).status == 500
    [record] = records(caplog, "hyperws")
    assert (record.peer, record.route) == ("127.0.0.1", "/items/:id")
    assert isinstance(record.connection_id, int)
    assert record.getMessage() == (
        f"error in the request handler of connection #{record.connection_id} from 127.0.0.1 on "
        "/items/:id: GET /items/7?x=1"
    )


async def access_log_server(serve, access_log: bool = True) -> hyperws.Server:
    """``GET /hello`` (200 "hello"), ``/ws`` (open), ``/private`` (upgrades refused with 401 by a
    middleware unless ``?token=yes``)."""
    server = hyperws.Server(access_log=access_log)
    server.get("/hello", lambda request, response: response.send("hello"))
    server.ws("/ws", lambda ws: None)

    def require_token(request: hyperws.Request, response: hyperws.Response) -> None:
        if request.query_parameters.get("token") != "yes":
            response.status(401).send("who are you?")

    server.upgrade(
        "/private", lambda request, response: response.upgrade(), middlewares=[require_token]
    )
    server.ws("/private", lambda ws: None)
    return await serve(server)


async def test_the_access_log_writes_a_combined_log_format_line_per_answer(serve, caplog):
    caplog.set_level(logging.INFO, logger="hyperws.access")
    server = await access_log_server(serve)
    headers = [("Referer", "http://example.test/"), ("User-Agent", "probe/1")]
    assert (await fetch(server.port, "GET", "/hello", headers=headers)).status == 200
    assert (await fetch(server.port, "GET", "/nowhere")).status == 404
    async with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=T):
        pass
    with pytest.raises(InvalidStatus):
        async with connect(f"ws://127.0.0.1:{server.port}/private", open_timeout=T):
            pass
    async with connect(f"ws://127.0.0.1:{server.port}/private?token=yes", open_timeout=T):
        pass
    await until(lambda: len(records(caplog, "hyperws.access")) == 5)
    ok, missing, upgraded, refused, allowed = access_lines(caplog)
    assert ok["peer"] == "127.0.0.1"
    assert (ok["request"], ok["status"], ok["bytes"]) == ("GET /hello HTTP/1.1", "200", "5")
    assert (ok["referer"], ok["agent"]) == ("http://example.test/", "probe/1")
    assert (missing["request"], missing["status"], missing["referer"]) == (
        "GET /nowhere HTTP/1.1",
        "404",
        "-",
    )
    assert (upgraded["request"], upgraded["status"], upgraded["bytes"]) == (
        "GET /ws HTTP/1.1",
        "101",
        "-",
    )
    assert upgraded["agent"].startswith("Python/")  # the websockets client names itself
    assert (refused["request"], refused["status"], refused["bytes"]) == (
        "GET /private HTTP/1.1",
        "401",
        str(len("who are you?")),
    )
    assert (allowed["request"], allowed["status"]) == ("GET /private?token=yes HTTP/1.1", "101")
    ok_record, _, upgraded_record, *_ = records(caplog, "hyperws.access")
    assert (ok_record.route, ok_record.status, ok_record.peer) == ("/hello", 200, "127.0.0.1")
    assert upgraded_record.route == "/ws"
    assert ok_record.connection_id != upgraded_record.connection_id


async def test_an_upgraded_connection_keeps_the_id_of_its_access_log_line(serve, caplog):
    caplog.set_level(logging.INFO, logger="hyperws.access")
    server = hyperws.Server(access_log=True)
    ids: asyncio.Queue[int] = asyncio.Queue()
    server.ws("/ws", lambda ws: ids.put_nowait(ws.id))
    await serve(server)
    async with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=T):
        ws_id = await asyncio.wait_for(ids.get(), T)
    await until(lambda: records(caplog, "hyperws.access"))
    assert records(caplog, "hyperws.access")[0].connection_id == ws_id


async def test_the_access_log_is_off_by_default(serve, caplog):
    caplog.set_level(logging.DEBUG, logger="hyperws")
    server = await access_log_server(serve, access_log=False)
    assert not server.access_log
    assert (await fetch(server.port, "GET", "/hello")).status == 200
    assert (await fetch(server.port, "GET", "/nowhere")).status == 404
    async with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=T):
        pass
    assert (await fetch(server.port, "GET", "/hello")).status == 200  # after the events above
    assert records(caplog, "hyperws.access") == []


async def test_access_log_is_a_flag_set_before_listen(serve):
    with pytest.raises(ValueError, match="access_log must be True or False"):
        hyperws.Server(access_log="yes")  # type: ignore[arg-type]
    server = await access_log_server(serve, access_log=False)
    with pytest.raises(RuntimeError, match="before listen"):
        server.access_log = True


async def test_connections_are_logged_at_debug_with_their_close_code(serve, caplog):
    caplog.set_level(logging.DEBUG, logger="hyperws.connections")
    server = hyperws.Server()
    server.ws("/ws", lambda ws: None, max_payload_length=16)
    await serve(server)
    async with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=T) as client:
        await client.send("x" * 100)  # over max_payload_length: closed with 1009
        await asyncio.wait_for(client.wait_closed(), T)
    await until(lambda: len(records(caplog, "hyperws.connections")) == 2)
    opened, closed = records(caplog, "hyperws.connections")
    assert opened.getMessage() == f"connection #{opened.connection_id} from 127.0.0.1 opened on /ws"
    assert closed.code == 1009 and closed.connection_id == opened.connection_id
    assert closed.getMessage().startswith(
        f"connection #{opened.connection_id} from 127.0.0.1 on /ws closed: 1009"
    )


async def test_a_failed_tls_handshake_is_logged_at_debug(serve, caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger="hyperws.connections")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(cert_file)
    certificate.private_key_pem.write_to_path(key_file)
    server = hyperws.Server(cert_file=cert_file, key_file=key_file)
    server.ws("/ws", lambda ws: None)
    await serve(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
    await asyncio.wait_for(reader.read(), T)
    writer.close()
    await until(lambda: records(caplog, "hyperws.connections"))
    [record] = records(caplog, "hyperws.connections")
    assert record.levelno == logging.DEBUG and record.peer == "127.0.0.1"
    assert "failed the TLS handshake" in record.getMessage()
    assert server.stats()["tls_handshake_failures"] == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("flag", ["--access-log", None])
async def test_the_cli_access_log_flag(flag):
    port = free_port()
    command = [sys.executable, "-m", "hyperws", "worker_app:server", "--port", str(port)]
    process = await asyncio.create_subprocess_exec(
        *command,
        *([flag] if flag else []),
        cwd=HERE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(300):  # until it listens (safety net: about 30 s)
            try:
                async with connect(f"ws://127.0.0.1:{port}/pid", open_timeout=T) as client:
                    await asyncio.wait_for(client.recv(), T)
                break
            except OSError:
                await asyncio.sleep(0.1)
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = [line for line in stderr.decode().splitlines() if "hyperws.access" in line]
    if flag:
        assert len(lines) == 1, stderr.decode()
        assert re.search(
            r'INFO hyperws.access: 127\.0\.0\.1 - - \[.*\] "GET /pid HTTP/1\.1" 101 - ', lines[0]
        )
    else:
        assert lines == [], stderr.decode()
    assert process.returncode == 0


def test_nothing_is_printed_by_the_library():
    """The library's own code writes through logging only (tests, benches and examples aside)."""
    package = HERE.parent / "python" / "hyperws"
    sources = HERE.parent / "src"
    printing = re.compile(r"\bprint\(|\beprintln!|\bprintln!|\beprint!|\bdbg!")
    found = []
    for path in [*package.glob("*.py"), *sources.rglob("*.rs")]:
        text = path.read_text()
        if path.suffix == ".rs":
            text = text.split("#[cfg(test)]")[0]
        found += [
            f"{path.name}: {line.strip()}" for line in text.splitlines() if printing.search(line)
        ]
    assert found == []
