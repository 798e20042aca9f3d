"""Helpers shared by the benchmark servers: argument parsing, the event loop choice, the READY line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any


def parse_args(description: str, pubsub: bool = False) -> argparse.Namespace:
    """The servers' common options; with `pubsub`, also `--pubsub URL` (the broker that connects this server
    to the others of a cross-node run, required by the servers that only serve through a broker) and
    `--pubsub-prefix` (a namespace on it)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop")
    p.add_argument("--cert", help="PEM certificate chain: serve TLS (wss://) with it and --key")
    p.add_argument("--key", help="PEM private key of --cert")
    if pubsub:
        p.add_argument(
            "--pubsub", help="broker URL (redis://... or nats://...) shared with other nodes"
        )
        p.add_argument(
            "--pubsub-prefix", default="bench", help="namespace of the topics on the broker"
        )
    args = p.parse_args()
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key go together")
    return args


# /slow: the flood target. Each binary message costs the handler this long (an `await` of a sleep, or the peer's
# equivalent); a text message asks for the tally, answered as "<messages> <bytes>" once every binary message
# before it has been handled.
SLOW_DELAY = 0.001


class Tally:
    """What /slow counts: binary messages and their bytes."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def add(self, message: bytes | bytearray | memoryview | str) -> None:
        self.messages += 1
        self.bytes += len(message)

    def answer(self) -> str:
        return f"{self.messages} {self.bytes}"


# /json: the "typical app" every Python peer serves with this same function. Each message is a JSON text
# {"room": ..., "text": ...}; the handler counts it for its room and answers with a small JSON text.
ROOM_COUNTS: dict[str, int] = {}


def json_reply(message: str | bytes | bytearray | memoryview) -> str:
    """The /json app's answer to one message (json.loads takes str, bytes and bytearray)."""
    request = json.loads(bytes(message) if isinstance(message, memoryview) else message)
    room = request["room"]
    count = ROOM_COUNTS.get(room, 0) + 1
    ROOM_COUNTS[room] = count
    return json.dumps({"room": room, "count": count, "length": len(request["text"])})


def unsupported(route: str, why: str) -> None:
    """Tells the driver (before READY) that a route of the bench app is not served, e.g. no compression."""
    print(f"UNSUPPORTED {route} {why}", flush=True)


def ready(name: str, loop_name: str) -> None:
    """The driver waits for this exact line on stdout."""
    print(f"{name}: listening ({loop_name})", file=sys.stderr, flush=True)
    print("READY", flush=True)


def run(main: Coroutine[Any, Any, None], no_uvloop: bool) -> None:
    """Runs `main` on uvloop when installed (the peers' best configuration), else on asyncio's loop."""
    if not no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
