"""The benchmark app on hyperws, with ordinary Python handlers (the number a user gets with Python in the loop).

/echo: every message back with the same type; /sub: subscribes to topic "bench"; /pub: every message received is
published to "bench"; /slow: an `async def` listener that sleeps SLOW_DELAY per binary message and answers a text
message with the tally (hyperws's read-side flow control pauses the socket while it is busy); /echoz: /echo with
`compression="shared"` and every echo sent with `compress=True` (skipped, with UNSUPPORTED on stdout, while this hyperws has no compression); /json: the
"typical app" (`_common.json_reply`), a plain `on("message")` handler that answers with `ws.send`. Prints READY
once listening. If this hyperws has no pub/sub yet, /echo is still served and /sub, /pub say so on stderr.

With `--cert` and `--key` the server serves TLS (wss://) with them (`hyperws.Server(cert_file=..., key_file=...)`).
With `--pubsub URL` it is one node of several sharing that broker (`hyperws.Server(pubsub=URL,
pubsub_prefix=...)`): a publish on /pub reaches the /sub connections of every node (benches/cross_node.py).

HYPERWS_BENCH_IO_READS=1 in the environment (`hyperws_ioreads_server.py`, the `hyperws-ioreads` entry of
compare.py) serves with `inline_reads=False`: every connection read on the I/O threads, for A/B runs.

SIGUSR1 prints `STATS <json of server.stats()>` on stderr: the driver sends it at the start and the end of the
measured window to count loop wake-ups and events handed to Python.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import hyperws
from _common import (
    SLOW_DELAY,
    Tally,
    json_reply,
    loop_name,
    parse_args,
    ready,
    run,
    unsupported,
)

MAX = 16 * 1024 * 1024
TOPIC = "bench"

ARGS = parse_args(__doc__ or "", pubsub=True)
TLS = {"cert_file": ARGS.cert, "key_file": ARGS.key} if ARGS.cert else {}
BROKER = (
    {"pubsub": ARGS.pubsub, "pubsub_prefix": ARGS.pubsub_prefix, "pubsub_required": True}
    if ARGS.pubsub
    else {}
)
READS = {"inline_reads": False} if os.environ.get("HYPERWS_BENCH_IO_READS") == "1" else {}
server = hyperws.Server(**TLS, **BROKER, **READS)
_warned: set[str] = set()


def missing(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        print(f"hyperws: {what} does not exist yet", file=sys.stderr, flush=True)


@server.ws("/echo", max_payload_length=MAX)
def echo(ws: Any) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))


@server.ws("/json", max_payload_length=MAX)
def json_app(ws: Any) -> None:
    def on_message(message: Any, is_binary: bool) -> None:
        ws.send(json_reply(message), False)

    ws.on("message", on_message)


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


@server.ws("/slow", max_payload_length=MAX)
def slow(ws: Any) -> None:
    tally = Tally()

    async def on_message(message: Any, is_binary: bool) -> None:
        if is_binary:
            tally.add(message)
            await asyncio.sleep(SLOW_DELAY)
        else:
            ws.send(tally.answer(), False)

    ws.on("message", on_message)


def echoz(ws: Any) -> None:
    # compress=True: like uWebSockets, hyperws compresses only the sends that ask for it
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary, True))


try:
    server.ws("/echoz", echoz, max_payload_length=MAX, compression="shared")
except ValueError as e:  # this hyperws has no compression yet
    print(f"hyperws: /echoz not served: {e}", file=sys.stderr, flush=True)
    unsupported("/echoz", "no compression route option in this hyperws")


def print_stats() -> None:
    print("STATS " + json.dumps(server.stats()), file=sys.stderr, flush=True)


async def main(host: str, port: int) -> None:
    await server.listen(port, host)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, print_stats)
    ready("hyperws" + (" (TLS)" if TLS else ""), loop_name())
    await asyncio.Event().wait()


if __name__ == "__main__":
    run(main(ARGS.host, ARGS.port), ARGS.no_uvloop)
