"""The benchmark app on hyperws, with ordinary Python handlers (the number a user gets with Python in the loop).

/echo: every message back with the same type; /sub: subscribes to topic "bench"; /pub: every message received is
published to "bench". Prints READY once listening. If this hyperws has no pub/sub yet, /echo is still served and
/sub, /pub say so on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import hyperws
from _common import loop_name, parse_args, ready, run

MAX = 16 * 1024 * 1024
TOPIC = "bench"

server = hyperws.Server()
_warned: set[str] = set()


def missing(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        print(f"hyperws: {what} does not exist yet", file=sys.stderr, flush=True)


@server.ws("/echo", max_payload_length=MAX)
def echo(ws: Any) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))


@server.ws("/sub", max_payload_length=MAX)
def sub(ws: Any) -> None:
    if hasattr(ws, "subscribe"):
        ws.subscribe(TOPIC)
    else:
        missing("ws.subscribe (/sub receives nothing)")


@server.ws("/pub", max_payload_length=MAX)
def pub(ws: Any) -> None:
    if hasattr(ws, "publish"):
        ws.on("message", lambda message, is_binary: ws.publish(TOPIC, message, is_binary))
    else:
        missing("ws.publish (/pub drops every message)")


async def main(host: str, port: int) -> None:
    await server.listen(port, host)
    ready("hyperws", loop_name())
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(main(args.host, args.port), args.no_uvloop)
