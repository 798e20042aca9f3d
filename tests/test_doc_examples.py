"""Every Python example in README.md and on the documentation site's pages runs, as written there: the
blocks are read from the pages (not copied), so an example that raises, hangs or stops working fails
the suite. docs/api.md and the design pages hold fragments of code, not examples, and are not run;
code of other libraries (for comparison) is fenced as `py`, not `python`.

Each block runs in its own namespace with the names it leaves to the reader (``load_user``, ``PAGE``,
``updates()``...). Its server listens on a free port of 127.0.0.1 whatever port the block names, and
its top-level publishes run once it listens. A block that defines routes needs a
check below, found by a line of the block."""

from __future__ import annotations

import ast
import asyncio
import builtins
import json
import logging
import re
import struct
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect

import hyperws

from helpers import TIMEOUT, until, url
from httpclient import request
from rawws import BINARY, RawWebSocket, http_exchange

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *(ROOT / "docs" / name for name in ("index.md", "getting-started.md", "tutorial.md")),
    *sorted((ROOT / "docs" / "howto").glob("*.md")),
    ROOT / "docs" / "migrating.md",
]
UPDATES = 16_000  # 16 MiB of 1 KiB updates for the Backpressure example: more than socket buffers
WAIT = 30.0


def python_blocks() -> list[str]:
    return [
        block
        for page in PAGES
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    ]


def block_ids() -> list[str]:
    return [
        f"{page.relative_to(ROOT)}:{index}"
        for page in PAGES
        for index, _ in enumerate(re.findall(r"```python\n", page.read_text()))
    ]


class Example:
    """One README block, run: its namespace, its server and the calls it makes once listening."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.servers: list[hyperws.Server] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.deferred: list[ast.stmt] = []
        self.namespace: dict[str, Any] = self._namespace()

    def _namespace(self) -> dict[str, Any]:
        servers = self.servers

        class LocalServer(hyperws.Server):
            """Listens on a free port of 127.0.0.1, whatever the example asks for."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                servers.append(self)

            async def listen(self, port: int = 0, host: str = "0.0.0.0") -> None:
                await super().listen(0, "127.0.0.1")

        def run_in_background(coroutine: Awaitable[Any]) -> None:
            self.tasks.append(asyncio.ensure_future(coroutine))

        async def load_user(ip: str) -> str:
            await asyncio.sleep(0)
            return f"user at {ip}"

        async def save(user: str, message: str | bytes) -> None:
            await asyncio.sleep(0)

        async def updates() -> AsyncIterator[bytes]:
            for n in range(UPDATES):
                yield struct.pack(">I", n) + bytes(1020)

        def on_open(ws: hyperws.Websocket) -> None:
            ws.send("welcome")

        def authenticate(request: hyperws.Request, response: hyperws.Response) -> None:
            """Lets every request through (the README's own is an upgrade handler)."""

        shim = types.ModuleType("hyperws")
        shim.__dict__.update(vars(hyperws))
        shim.Server = LocalServer  # type: ignore[attr-defined]
        asyncio_shim = types.ModuleType("asyncio")
        asyncio_shim.__dict__.update(vars(asyncio))
        asyncio_shim.run = run_in_background  # type: ignore[attr-defined]
        shims = {"hyperws": shim, "asyncio": asyncio_shim}

        def import_shims(name: str, *args: Any, **kwargs: Any) -> Any:
            return shims.get(name) or builtins.__import__(name, *args, **kwargs)

        return {
            "__name__": "readme_example",
            "__builtins__": {**vars(builtins), "__import__": import_shims},
            "hyperws": shim,
            "asyncio": asyncio_shim,
            "server": LocalServer(),
            "router": hyperws.Router(),
            "load_user": load_user,
            "save": save,
            "updates": updates,
            "on_open": on_open,
            "authenticate": authenticate,
            "PAGE": "<h1>hello</h1>",
            "snapshot_json": json.dumps({"price": 1}),
        }

    def run_definitions(self) -> None:
        """Runs the block but its top-level calls that need a listening server, kept for
        ``run_deferred``."""
        tree = ast.parse(self.source)
        body = []
        for statement in tree.body:
            if _calls_server(statement):
                self.deferred.append(statement)
            else:
                body.append(statement)
        exec(compile(ast.Module(body, []), "README.md", "exec"), self.namespace)
        if "server.use(" not in self.source:
            self.namespace["server"].use(self.namespace["router"])

    def run_deferred(self) -> list[Any]:
        results = []
        for statement in self.deferred:
            expression = ast.Expression(statement.value)  # type: ignore[attr-defined]
            results.append(eval(compile(expression, "README.md", "eval"), self.namespace))
        return results

    @property
    def server(self) -> hyperws.Server:
        return self.namespace["server"]

    async def listen(self) -> hyperws.Server:
        if self.tasks:  # the block listens by itself (asyncio.run(main()))
            await until(lambda: self.server._port is not None)
        else:
            await self.server.listen()
        return self.server

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for server in self.servers:
            await asyncio.wait_for(server.close(timeout=2.0), WAIT)


# What a server does only once it listens.
WHEN_LISTENING = {"publish", "num_subscribers", "stats", "connections"}


def _calls_server(statement: ast.stmt) -> bool:
    """Whether ``statement`` is a call like ``server.publish(...)`` (needs a listening server)."""
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        return False
    method = statement.value.func
    return (
        isinstance(method, ast.Attribute)
        and method.attr in WHEN_LISTENING
        and isinstance(method.value, ast.Name)
        and method.value.id == "server"
    )


# -- the checks, one per example that serves something --------------------------------------------


async def check_use(example: Example) -> None:
    server = await example.listen()
    async with connect(url(server, "/ws/connect")) as client:
        await client.send("hello")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello"


async def check_three_forms(example: Example) -> None:
    server = await example.listen()
    async with connect(url(server, "/chat")) as client:
        await client.send("hello")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "saved"


async def check_upgrades(example: Example) -> None:
    server = await example.listen()
    refused = await http_exchange(server.port, _upgrade_request("/chat/lobby"))
    assert (refused.status, refused.body) == (401, b"unauthorized")
    async with connect(url(server, "/chat/lobby?token=secret")) as client:
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "welcome to lobby"


async def check_http_routes(example: Example) -> None:
    server = await example.listen()
    page = await http_exchange(server.port, request("GET", "/"))
    assert (page.status, page.body) == (200, b"<h1>hello</h1>")
    health = await http_exchange(server.port, request("GET", "/health"))
    assert json.loads(health.body) == {"status": "ok", "connections": 0}
    body, json_type = b'{"name": "x"}', ("Content-Type", "application/json")
    refused = await http_exchange(server.port, request("POST", "/items", body, [json_type]))
    assert refused.status == 401
    token = ("Authorization", "Bearer secret")
    added = await http_exchange(server.port, request("POST", "/items", body, [json_type, token]))
    assert (added.status, json.loads(added.body)) == (201, {"name": "x"})


async def check_pubsub(example: Example) -> None:
    server = await example.listen()
    async with connect(url(server, "/chat")) as sender, connect(url(server, "/chat")) as other:
        await until(lambda: server.num_subscribers("chat/lobby") == 2)
        assert example.run_deferred() == [True, 2]  # the alert reaches both; two in the lobby
        assert await asyncio.wait_for(other.recv(), TIMEOUT) == "disk full"
        assert await asyncio.wait_for(sender.recv(), TIMEOUT) == "disk full"
        await sender.send("hi all")
        assert await asyncio.wait_for(other.recv(), TIMEOUT) == "hi all"


async def check_backpressure(example: Example) -> None:
    server = await example.listen()
    client = await RawWebSocket.connect(server.port, "/feed")
    client.writer.transport.pause_reading()  # a slow client: it reads nothing at first...
    await until(lambda: server.stats()["dropped"] > 0, timeout=WAIT)  # the loop waits now
    client.writer.transport.resume_reading()  # ...then everything
    for n in range(UPDATES):
        opcode, payload = await client.read_message(timeout=WAIT)
        assert (opcode, payload[:4]) == (BINARY, struct.pack(">I", n))
    await client.aclose()


async def check_compression(example: Example) -> None:
    server = await example.listen()
    async with connect(url(server, "/feed")) as client:
        await until(lambda: server.num_subscribers("prices") == 1)
        assert example.run_deferred() == [True]
        assert json.loads(await asyncio.wait_for(client.recv(), TIMEOUT)) == {"price": 1}


async def check_tutorial_names(example: Example) -> None:
    server = await example.listen()
    refused = await http_exchange(server.port, _upgrade_request("/chat/lobby?name=a%20b"))
    assert refused.status == 400
    async with connect(url(server, "/chat/lobby?name=ada")) as ada:
        async with connect(url(server, "/chat/lobby?name=bob")) as bob:
            assert await asyncio.wait_for(ada.recv(), TIMEOUT) == "bob joined"
            await bob.send("hi")
            assert await asyncio.wait_for(ada.recv(), TIMEOUT) == "bob: hi"
        assert await asyncio.wait_for(ada.recv(), TIMEOUT) == "bob left"


async def check_tutorial_history(example: Example) -> None:
    server = await example.listen()
    async with connect(url(server, "/chat")) as first, connect(url(server, "/chat")) as second:
        await first.send("one")
        assert await asyncio.wait_for(second.recv(), TIMEOUT) == "one"
    async with connect(url(server, "/chat")) as late:
        assert await asyncio.wait_for(late.recv(), TIMEOUT) == "one"


async def check_logging(example: Example) -> None:
    """The logging how-to: an access-log line for a request and the upgrade, and a handler's error
    with the connection's fields, through the handler the block installs."""
    hyperws_logger = logging.getLogger("hyperws")
    installed = list(hyperws_logger.handlers)
    captured: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = captured.append  # type: ignore[method-assign]
    for handler in installed:
        capture.addFilter(handler.filters[0])
    hyperws_logger.addHandler(capture)
    try:
        server = await example.listen()
        health = await http_exchange(server.port, request("GET", "/health"))
        assert health.status == 200
        async with connect(url(server, "/rooms/lobby")) as client:
            await client.send("crash")
            await until(lambda: any(r.levelno == logging.ERROR for r in captured))
            await client.send("still here")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still here"
        access = [r.getMessage() for r in captured if r.name == "hyperws.access"]
        assert '"GET /health HTTP/1.1" 200 12' in access[0]
        assert '"GET /rooms/lobby HTTP/1.1" 101 -' in access[1]
        [error] = [r for r in captured if r.levelno == logging.ERROR]
        assert (error.route, error.peer) == ("/rooms/:room", "127.0.0.1")
        formatted = installed[0].format(error)
        assert formatted.startswith(f"ERROR hyperws #{error.connection_id} /rooms/:room: error in")
        assert "RuntimeError: a bug in a handler" in formatted
        startup = logging.LogRecord("hyperws", logging.INFO, "", 0, "no connection", (), None)
        assert installed[0].filter(startup) and installed[0].format(startup).startswith("INFO")
    finally:
        for handler in (*installed, capture):
            hyperws_logger.removeHandler(handler)
        hyperws_logger.setLevel(logging.NOTSET)


CHECKS: dict[str, Callable[[Example], Awaitable[None]]] = {
    "class ConnectionFields": check_logging,
    "def admit(": check_tutorial_names,
    "history: list[str] = []": check_tutorial_history,
    'router.ws("/connect"': check_use,
    'router.ws("/a"': check_three_forms,
    "async def authenticate": check_upgrades,
    "send(PAGE)": check_http_routes,
    'ws.subscribe("alerts/+/critical")': check_pubsub,
    "# a fast producer": check_backpressure,
    'compression="shared"': check_compression,
}


def _check_for(source: str) -> Callable[[Example], Awaitable[None]] | None:
    found = [check for line, check in CHECKS.items() if line in source]
    assert len(found) <= 1, "a documented block matches several checks"
    return found[0] if found else None


def _upgrade_request(path: str) -> bytes:
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    return request("GET", path, headers=headers)


def test_every_check_matches_a_documented_block():
    sources = python_blocks()
    for line in CHECKS:
        assert any(line in source for source in sources), (
            f"no documented block has {line!r} any more"
        )


@pytest.fixture
def pem_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The certificate files the TLS examples name, in the current directory."""
    ca = trustme.CA()
    files = (("cert.pem", "key.pem"), ("org.pem", "org.key"), ("fullchain.pem", "privkey.pem"))
    for cert, key in files:
        leaf = ca.issue_cert("localhost")
        (tmp_path / cert).write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        (tmp_path / key).write_bytes(leaf.private_key_pem.bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("index", range(len(python_blocks())), ids=block_ids())
async def test_documented_example(index, pem_files):
    source = python_blocks()[index]
    example = Example(source)
    try:
        example.run_definitions()
        check = _check_for(source)
        if check is None:
            assert not example.deferred, "a documented block calls the server: give it a check"
            assert not example.tasks, "a documented block runs a server: give it a check"
            await example.server.listen()  # what it configured is accepted
        else:
            await asyncio.wait_for(check(example), 4 * WAIT)
    finally:
        await example.close()
