"""The server that tests/test_memory_bounds.py attacks, run in its own process so that its
/proc/<pid>/status measures the server alone. Prints its port, then serves until stdin closes. Over TLS
when given a certificate file and its key file.

Routes: /echo (echo, default options), /ping (echo; pings are counted), /fill (sends until
refused, max_backpressure=1 MiB; "filled?" answers how many were), /partial (echo), /big (echo,
max_payload_length=16 MiB), /inflate (compression "shared", max_payload_length=8 MiB; messages are
counted, not echoed), /slow (a listener that blocks the loop 1 ms per message, which it counts),
/slow_async (an `async def` listener that awaits 1 ms per message, then counts it). GET
/stats answers JSON: pings received, messages received on /inflate and on /slow, connections closed,
open connections and the largest `buffered` among them.

HYPERWS_TEST_IO_READS=1 in the environment serves with `inline_reads=False` (every connection read on the
I/O threads); otherwise with the default.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import hyperws

MAX_BACKPRESSURE = 1024 * 1024
INFLATE_LIMIT = 8 * 1024 * 1024


async def main() -> None:
    tls = {"cert_file": sys.argv[1], "key_file": sys.argv[2]} if len(sys.argv) > 2 else {}
    reads = {"inline_reads": False} if os.environ.get("HYPERWS_TEST_IO_READS") == "1" else {}
    server = hyperws.Server(close_timeout=1.0, **reads, **tls)
    counts = {"pings": 0, "inflated": 0, "closed": 0, "filled": 0, "slow": 0}
    sockets: set[hyperws.Websocket] = set()

    def count(name: str) -> None:
        counts[name] += 1

    def track(ws: hyperws.Websocket) -> None:
        sockets.add(ws)

        def closed(code: int, message: str) -> None:
            sockets.discard(ws)
            count("closed")

        ws.on("close", closed)

    def echo(ws: hyperws.Websocket) -> None:
        track(ws)
        ws.on("message", lambda message, is_binary: ws.send(message, is_binary))
        ws.on("ping", lambda message: count("pings"))

    def sink(ws: hyperws.Websocket) -> None:
        track(ws)
        ws.on("message", lambda message, is_binary: count("inflated"))

    def slow(ws: hyperws.Websocket) -> None:
        def on_message(message: bytes, is_binary: bool) -> None:
            time.sleep(0.001)
            count("slow")

        track(ws)
        ws.on("message", on_message)

    def slow_async(ws: hyperws.Websocket) -> None:
        async def on_message(message: bytes, is_binary: bool) -> None:
            await asyncio.sleep(0.001)
            count("slow")

        track(ws)
        ws.on("message", on_message)

    def fill(ws: hyperws.Websocket) -> None:
        # "fill": sends 64 KiB messages until one is refused over max_backpressure; "filled?": answers
        # how many connections were filled so far.
        def on_message(message: bytes, is_binary: bool) -> None:
            if message == b"filled?":
                ws.send(str(counts["filled"]))
                return
            while ws.send(bytes(64 * 1024), True):
                pass
            count("filled")

        track(ws)
        ws.on("message", on_message)

    server.ws("/echo", echo)
    server.ws("/fill", fill, max_backpressure=MAX_BACKPRESSURE, message_type="Buffer")
    server.ws("/ping", echo, max_backpressure=MAX_BACKPRESSURE)
    server.ws("/partial", echo)
    server.ws("/big", echo, max_payload_length=16 * 1024 * 1024)
    server.ws("/slow", slow, max_payload_length=1024 * 1024)
    server.ws("/slow_async", slow_async, max_payload_length=1024 * 1024)
    server.ws("/inflate", sink, compression="shared", max_payload_length=INFLATE_LIMIT)

    @server.get("/stats")
    def stats(request: hyperws.Request, response: hyperws.Response) -> None:
        buffered = max((ws.buffered for ws in sockets), default=0)
        response.json({**counts, "connections": server.connections, "buffered": buffered})

    await server.listen(0, "127.0.0.1")
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close(timeout=2.0)


if __name__ == "__main__":
    asyncio.run(main())
