"""Helpers of the scale-out tests: server processes (``backplane_node.py``) sharing a broker, clients
that drive them, and a private redis-server that a test may stop and start again.

Every wait is bounded (``T``); nothing sleeps to assert."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

T = 10.0  # safety net (seconds) per wait, never a speed assertion
NODE = Path(__file__).with_name("backplane_node.py")
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


def unique_prefix() -> str:
    """A namespace on the shared broker that no other test run uses."""
    return f"t{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_broker(host: str, port: int, name: str) -> None:
    """Fails (never skips) when the broker the test needs is not listening."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as error:
        raise AssertionError(
            f"{name} is not reachable on {host}:{port} ({error}); start it (see the machine notes)"
        ) from None


async def until(predicate: Callable[[], bool], what: str, timeout: float = T) -> None:
    """Polls ``predicate()`` until true, or fails after ``timeout`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for: {what}")
        await asyncio.sleep(0.02)


class Node:
    """A server process sharing the broker at ``pubsub`` under ``prefix``."""

    def __init__(self, pubsub: str, prefix: str, env: dict[str, str] | None = None) -> None:
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, str(NODE), pubsub, prefix],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        self.port = 0
        self._final_log = ""

    async def started(self) -> Node:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), T)
        if not line.startswith("PORT "):
            raise AssertionError(f"the node did not start: {line!r}\n{self.log()}")
        self.port = int(line.split()[1])
        return self

    def stats(self) -> dict[str, Any]:
        address = f"http://127.0.0.1:{self.port}/stats"
        with urllib.request.urlopen(address, timeout=T) as answer:
            stats: dict[str, Any] = json.load(answer)
            return stats

    async def wait_stats(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = T
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(stats := await asyncio.to_thread(self.stats)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {self.port}: waited {timeout} s for {what}; stats: {stats}"
                )
            await asyncio.sleep(0.02)

    async def client(self) -> Client:
        return Client(await connect(f"ws://127.0.0.1:{self.port}/", max_size=None))

    def log(self) -> str:
        """What the node wrote to stderr (its warnings), so far or until it stopped."""
        if not self._log.closed:
            self._log.seek(0)
            self._final_log = self._log.read()
        return self._final_log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(T)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log()
        self._log.close()


async def subscriptions_settled(node: Node, count: int) -> None:
    """Waits until `node` holds `count` broker subscriptions (confirmed by the broker)."""
    await node.wait_stats(
        f"{count} broker subscriptions", lambda s: s["broker_subscriptions"] == count
    )


async def lose_the_broker(broker: PrivateBroker, a: Node, b: Node) -> tuple[Client, Client, Client]:
    """Subscribes a client of each node to news/#, sees a publish cross, stops the broker, and sees
    local delivery go on while the publish for the other node is dropped (counted). Returns the
    publisher, its neighbour and the client of the other node."""
    publisher, local, far = await a.client(), await a.client(), await b.client()
    await local.subscribe("news/#")
    await far.subscribe("news/#")
    await subscriptions_settled(b, 2)
    await publisher.publish("news/1", "before")
    assert await local.take(1) == ["before"]
    assert await far.take(1) == ["before"]
    broker.stop()
    for node in (a, b):
        await node.wait_stats("disconnected", lambda s: not s["broker_connected"])
    await publisher.publish("news/2", "during")
    assert await local.take(1) == ["during"], "local delivery goes on"
    await a.wait_stats("a drop", lambda s: s["broker_dropped"] >= 1)
    return publisher, local, far


async def delivery_resumes(publisher: Client, local: Client, far: Client) -> None:
    """After `lose_the_broker` and the broker's return: a publish crosses again, and what was published
    during the outage is not delivered later."""
    await publisher.publish("news/3", "after")
    assert await local.take(1) == ["after"]
    assert await far.take(1) == ["after"], "cross-node delivery resumes"
    await far.command("sub", filters=[])
    assert far.received == [], "what was published during the outage is not delivered later"


def outage_logged_once(*nodes: Node) -> None:
    for node in nodes:
        log = node.log()
        assert log.count("pub/sub broker unreachable") == 1, log
        assert log.count("pub/sub broker reachable again") == 1, log


async def stop_nodes(*nodes: Node) -> None:
    """Stops the nodes together, the loop running meanwhile (so that this process's clients answer
    their close handshakes)."""
    await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes))


async def start_nodes(
    pubsub: str, count: int, prefix: str | None = None, env: dict[str, str] | None = None
) -> list[Node]:
    """``env``: more environment variables for the nodes."""
    prefix = prefix or unique_prefix()
    nodes = [Node(pubsub, prefix, env) for _ in range(count)]
    try:
        return list(await asyncio.gather(*(node.started() for node in nodes)))
    except BaseException:
        for node in nodes:
            node.stop()
        raise


class Client:
    """A WebSocket client of one node; commands are acknowledged in order with the messages."""

    _ids = itertools.count(1)

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.received: list[str | bytes] = []

    async def command(self, op: str, **arguments: Any) -> None:
        """Sends a command and waits for its ack; what arrives meanwhile goes to ``received``."""
        ack = f"ack:{next(self._ids)}"
        await self.connection.send(json.dumps({"id": int(ack[4:]), "op": op, **arguments}))
        while (message := await self.recv()) != ack:
            self.received.append(message)

    async def subscribe(self, *filters: str) -> None:
        await self.command("sub", filters=list(filters))

    async def unsubscribe(self, *filters: str) -> None:
        await self.command("unsub", filters=list(filters))

    async def publish(self, topic: str, *messages: str, **options: Any) -> None:
        await self.command("publish", topic=topic, messages=list(messages), **options)

    async def recv(self) -> str | bytes:
        return await asyncio.wait_for(self.connection.recv(), T)

    async def take(self, count: int) -> list[str | bytes]:
        """The next ``count`` messages (what ``command`` set aside first)."""
        while len(self.received) < count:
            self.received.append(await self.recv())
        taken, self.received = self.received[:count], self.received[count:]
        return taken

    async def close(self) -> None:
        await self.connection.close()


@dataclass
class BrokerCertificate:
    """A broker's certificate and key (PEM files) and the CA that signed them."""

    ca: Path
    cert: Path
    key: Path


class PrivateBroker:
    """A broker of the test's own on a free port, which it may stop and start again (never the shared
    one): ``PrivateBroker.redis()`` or ``PrivateBroker.nats()`` (with HTTP monitoring on
    ``monitor_port``)."""

    def __init__(self, command: list[str], port: int, url: str, monitor_port: int = 0) -> None:
        if shutil.which(command[0]) is None and not Path(command[0]).exists():
            raise AssertionError(f"{command[0]} is not installed")
        self.command = command
        self.port = port
        self.url = url
        self.monitor_port = monitor_port
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def redis(cls, *options: str, tls: BrokerCertificate | None = None) -> PrivateBroker:
        """``options``: more of redis-server's command line; with ``tls``, it listens with TLS only
        (the URL is ``rediss://``)."""
        port = free_port()
        listen = ["--port", str(port)]
        if tls is not None:
            listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key)]
            listen += ["--tls-ca-cert-file", str(tls.ca)]
        command = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            *listen,
            "--save",
            "",
            "--appendonly",
            "no",
            *options,
        ]
        scheme = "redis" if tls is None else "rediss"
        return cls(command, port, f"{scheme}://127.0.0.1:{port}/0")

    @classmethod
    def nats(cls, tls: BrokerCertificate | None = None) -> PrivateBroker:
        """With ``tls``, the server requires TLS (the URL is ``tls://``)."""
        port, monitor_port = free_port(), free_port()
        command = [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(monitor_port),
        ]
        if tls is not None:
            command += ["--tls", "--tlscert", str(tls.cert), "--tlskey", str(tls.key)]
        scheme = "nats" if tls is None else "tls"
        return cls(command, port, f"{scheme}://127.0.0.1:{port}", monitor_port)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
        )
        deadline = time.monotonic() + T
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"{self.command[0]} did not start") from None
                time.sleep(0.02)

    def nats_subscriptions(self, prefix: str) -> dict[str, list[str]]:
        """NATS's own view: the subjects under ``prefix.`` each client connection (by address)
        subscribes to."""
        address = f"http://127.0.0.1:{self.monitor_port}/connz?subs=1"
        with urllib.request.urlopen(address, timeout=T) as answer:
            connz = json.load(answer)
        return {
            f"{c['ip']}:{c['port']}": sorted(
                s for s in c.get("subscriptions_list", []) if s.startswith(f"{prefix}.")
            )
            for c in connz["connections"]
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(T)
        self.process = None
