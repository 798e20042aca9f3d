"""10 000 concurrent idle connections on one server, and the server still echoes on them.

The clients run in a child process (tests/many_clients.py, raw sockets upgraded in batches): the two
ends of 10 000 connections need 20 000 descriptors, more than one process may have here."""

from __future__ import annotations

import asyncio
import resource
import sys
from pathlib import Path

import pytest

import hyperws

from helpers import until

COUNT = 10_000
BATCH = 500
SAFETY = 120  # seconds, per step: only so that a broken server fails instead of hanging

CLIENTS = Path(__file__).with_name("many_clients.py")


@pytest.fixture
def fd_limit():
    """Raises RLIMIT_NOFILE for the server's end of the connections; restores it after."""
    needed = COUNT + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
        except (ValueError, OSError):
            if hard < needed:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} and cannot be raised")
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    try:
        current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, current_hard))
    except (ValueError, OSError):
        pass


class Clients:
    """The child process that holds the client ends."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    @classmethod
    async def start(cls, port: int, path: str) -> Clients:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLIENTS),
            str(port),
            path,
            str(COUNT),
            str(BATCH),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def answer(self) -> str:
        line = await asyncio.wait_for(self.process.stdout.readline(), SAFETY)
        text = line.decode().strip()
        assert text.startswith("ok "), f"client process: {text or 'exited without an answer'}"
        return text

    async def command(self, command: str) -> str:
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.answer()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), SAFETY)


async def test_ten_thousand_idle_connections(serve, fd_limit):
    opened = 0
    closed = 0

    def on_open(ws):
        nonlocal opened
        opened += 1
        ws.on("message", lambda m, b: ws.send(m, b))

        def on_close(code, message):
            nonlocal closed
            closed += 1

        ws.on("close", on_close)

    server = hyperws.Server()
    server.ws("/ws", on_open, idle_timeout=0)  # idle for as long as the test takes
    await serve(server)

    clients = await Clients.start(server.port, "/ws")
    try:
        assert await clients.answer() == f"ok ready {COUNT}"
        await until(lambda: server.connections == COUNT, timeout=SAFETY)
        await until(lambda: opened == COUNT, timeout=SAFETY)
        assert server.stats()["connections"] == COUNT

        # a few connections echo, then all of them at once, each its own message
        assert await clients.command("echo") == f"ok echo {COUNT}"
        assert server.connections == COUNT

        assert await clients.command("close") == "ok closed"
        await until(lambda: server.connections == 0, timeout=SAFETY)
        await until(lambda: closed == COUNT, timeout=SAFETY)
    finally:
        await clients.stop()
