"""The server that tests/test_hostile_clients.py attacks, run in its own process so that its
/proc/<pid>/status measures the server alone. Prints its port, then serves until stdin closes.

Server: request_timeout=1 s, max_header_bytes=8 KiB. Routes:
/echo (echo, default options), /fragments (echo, max_payload_length=50 000),
/fragments-large (echo, max_payload_length=200 000), /idle (echo, idle_timeout=2 s),
/feed (subscribes to "feed", max_backpressure=64 KiB, for the subscriber that never reads),
/reader (subscribes to "feed", counts what it gets: for the subscribers that read).
GET /publish?count=N&size=S publishes N messages of S bytes to "feed" (paced by the readers'
`buffered`) and answers when done. GET /stats answers JSON: the engine's stats() plus the largest
`buffered` of /feed connections.
"""

from __future__ import annotations

import asyncio
import sys

import hyperws

REQUEST_TIMEOUT = 1.0
MAX_HEADER_BYTES = 8 * 1024
SMALL_PAYLOAD_LIMIT = 50_000
LARGE_PAYLOAD_LIMIT = 200_000
IDLE_TIMEOUT = 2
FEED_BACKPRESSURE = 64 * 1024
# The publisher waits while a reader has more than this queued, so that what the readers hold does
# not blur what the subscriber that never reads costs.
READER_QUEUE = 256 * 1024


async def main() -> None:
    server = hyperws.Server(
        request_timeout=REQUEST_TIMEOUT, max_header_bytes=MAX_HEADER_BYTES, close_timeout=1.0
    )
    feeds: set[hyperws.Websocket] = set()
    readers: set[hyperws.Websocket] = set()

    def echo(ws: hyperws.Websocket) -> None:
        ws.on("message", lambda message, is_binary: ws.send(message, is_binary))

    def tracked(sockets: set[hyperws.Websocket], ws: hyperws.Websocket) -> None:
        sockets.add(ws)
        ws.on("close", lambda code, message: sockets.discard(ws))
        ws.subscribe("feed")

    def reader(ws: hyperws.Websocket) -> None:
        tracked(readers, ws)

    server.ws("/echo", echo)
    server.ws("/fragments", echo, max_payload_length=SMALL_PAYLOAD_LIMIT)
    server.ws("/fragments-large", echo, max_payload_length=LARGE_PAYLOAD_LIMIT)
    server.ws("/idle", echo, idle_timeout=IDLE_TIMEOUT)
    server.ws("/feed", lambda ws: tracked(feeds, ws), max_backpressure=FEED_BACKPRESSURE)
    server.ws("/reader", reader, max_backpressure=16 * 1024 * 1024)

    async def publish(count: int, size: int) -> None:
        message = bytes(size)
        for _ in range(count):
            while any(ws.buffered > READER_QUEUE for ws in readers):
                await asyncio.sleep(0.001)
            server.publish("feed", message)
            await asyncio.sleep(0)

    @server.get("/publish")
    async def publish_route(request: hyperws.Request, response: hyperws.Response) -> None:
        parameters = request.query_parameters
        await publish(int(parameters["count"]), int(parameters["size"]))
        response.json({"published": True})

    @server.get("/stats")
    def stats(request: hyperws.Request, response: hyperws.Response) -> None:
        buffered = max((ws.buffered for ws in feeds), default=0)
        response.json({**server.stats(), "feed_buffered": buffered})

    await server.listen(0, "127.0.0.1")
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close(timeout=2.0)


if __name__ == "__main__":
    asyncio.run(main())
