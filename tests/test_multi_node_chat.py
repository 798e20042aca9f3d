"""examples/chat.py run as two servers sharing the local Redis (PUBSUB=redis://...): a client of one
sees the messages of a client of the other in the same room, and only in that room."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from helpers import TIMEOUT

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat.py"
REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def two_nodes() -> Iterator[list[int]]:
    ports = [free_port(), free_port()]
    # A prefix of its own per run would need the example to take one: a fresh room name isolates instead.
    env = {**os.environ, "PUBSUB": REDIS}
    nodes = [
        subprocess.Popen([sys.executable, str(EXAMPLE), str(port)], env=env, stderr=subprocess.PIPE)
        for port in ports
    ]
    try:
        yield ports
    finally:
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            assert node.wait(30) == 0, node.stderr.read() if node.stderr else ""


async def join(port: int, name: str, room: str) -> ClientConnection:
    url = f"ws://127.0.0.1:{port}/chat?name={name}&room={room}"

    async def attempt() -> ClientConnection:
        while True:
            try:
                return await connect(url)
            except OSError:
                await asyncio.sleep(0.05)  # the node is still starting

    client = await asyncio.wait_for(attempt(), TIMEOUT * 4)
    welcome = json.loads(await asyncio.wait_for(client.recv(), TIMEOUT))
    assert welcome["type"] == "notice" and welcome["text"].startswith(f"welcome to #{room}")
    return client


async def next_message(client: ClientConnection) -> dict[str, str]:
    """The next chat message (notices of joins are skipped)."""
    while True:
        event = json.loads(await asyncio.wait_for(client.recv(), TIMEOUT))
        if event["type"] == "message":
            return event


async def test_a_room_spans_two_servers_sharing_redis(two_nodes):
    room, other_room = f"r{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    alice = await join(two_nodes[0], "alice", room)
    bob = await join(two_nodes[1], "bob", room)
    carol = await join(two_nodes[1], "carol", other_room)
    try:
        # Bob's subscription takes a broker round trip to reach Redis: send until it arrives.
        for attempt in range(50):
            await alice.send(f"hello {attempt}")
            try:
                event = await asyncio.wait_for(next_message(bob), 0.2)
                break
            except asyncio.TimeoutError:
                continue
        else:
            raise AssertionError("bob, on the other server, never got alice's message")
        assert event["name"] == "alice" and event["text"].startswith("hello")
        await bob.send("hi alice")
        while (reply := await next_message(alice))["name"] != "bob":
            pass
        assert reply["text"] == "hi alice"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(next_message(carol), 0.5)
    finally:
        for client in (alice, bob, carol):
            await client.close()
