"""The benchmark app on the `websockets` asyncio server.

/echo: every message back with the same type; /sub: joins the broadcast set; /pub: every message received is
sent to every /sub connection with `websockets.asyncio.server.broadcast`; /slow: `await asyncio.sleep(SLOW_DELAY)`
per binary message in the receive loop, a text message answered with the tally; /echoz: /echo, where the client
negotiated permessage-deflate (websockets enables compression per server, not per path: it is negotiated only
when a client offers it, and the load generator offers it only to /echoz); /json: the "typical app"
(`_common.json_reply`) answering each message. Prints READY once listening.
"""

from __future__ import annotations

import asyncio
import http

from _common import SLOW_DELAY, Tally, json_reply, loop_name, parse_args, ready, run
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

SUBSCRIBERS: set[ServerConnection] = set()
ROUTES = {"/echo", "/json", "/sub", "/pub", "/slow", "/echoz"}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else ""
    if path in ("/echo", "/echoz"):
        async for message in ws:
            await ws.send(message)
    elif path == "/json":
        async for message in ws:
            await ws.send(json_reply(message))
    elif path == "/sub":
        SUBSCRIBERS.add(ws)
        try:
            await ws.wait_closed()
        finally:
            SUBSCRIBERS.discard(ws)
    elif path == "/pub":
        async for message in ws:
            broadcast(SUBSCRIBERS, message)
    elif path == "/slow":
        tally = Tally()
        async for message in ws:
            if isinstance(message, str):
                await ws.send(tally.answer())
            else:
                tally.add(message)
                await asyncio.sleep(SLOW_DELAY)


def route(ws: ServerConnection, request: Request) -> Response | None:
    if request.path not in ROUTES:
        return ws.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def main(host: str, port: int) -> None:
    async with serve(
        handler,
        host,
        port,
        process_request=route,
        compression="deflate",
        max_size=16 * 1024 * 1024,
        ping_interval=None,
    ):
        ready("websockets", loop_name())
        await asyncio.Event().wait()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(main(args.host, args.port), args.no_uvloop)
