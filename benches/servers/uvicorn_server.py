"""The benchmark app as a plain ASGI app served by uvicorn (no framework in between).

/echo: `receive()` and `send()` each message back with the same type; /sub: joins the subscriber set and waits for
the disconnect; /pub: every message received is queued to every subscriber (ASGI has no pub/sub, and an ASGI
`send` may wait for a slow client, so each subscriber has its own sender task and a bounded queue; a message that
finds it full is dropped); /slow: `await asyncio.sleep(SLOW_DELAY)` per binary message in the receive loop, a text message answered
with the tally; /echoz: /echo (uvicorn enables permessage-deflate per server with `ws_per_message_deflate`, so it
is negotiated on any path where the client offers it: the load generator offers it only to /echoz); /json: the
"typical app" (`_common.json_reply`) answering each message with a text `send()`.

`--ws` picks uvicorn's WebSocket implementation (default `websockets-sansio`; see benches/README.md for the
measured choice). Runs on uvloop when installed, with httptools. Prints READY once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from _common import SLOW_DELAY, Tally, json_reply

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
QUEUE_BOUND = 1024


class Subscriber:
    """One subscriber's bounded queue and the task that sends from it."""

    def __init__(self, send: Send) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_BOUND)
        self.task = asyncio.create_task(self.pump(send))

    async def pump(self, send: Send) -> None:
        while True:
            await send(await self.queue.get())

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            pass  # a slow subscriber loses what its queue cannot hold


SUBSCRIBERS: set[Subscriber] = set()
ROUTES = {"/echo", "/echoz", "/json", "/sub", "/pub", "/slow"}


def out(message: dict[str, Any]) -> dict[str, Any]:
    """The send event that carries a received message back out, same type."""
    if message.get("text") is not None:
        return {"type": "websocket.send", "text": message["text"]}
    return {"type": "websocket.send", "bytes": message.get("bytes") or b""}


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found\n"})
        return
    if scope["type"] != "websocket":
        return
    path = scope["path"]
    await receive()  # websocket.connect
    if path not in ROUTES:
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    subscriber = Subscriber(send) if path == "/sub" else None
    if subscriber:
        SUBSCRIBERS.add(subscriber)
    tally = Tally()
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if path in ("/echo", "/echoz"):
                await send(out(message))
            elif path == "/json":
                data = message.get("text")
                reply = json_reply(data if data is not None else message.get("bytes") or b"")
                await send({"type": "websocket.send", "text": reply})
            elif path == "/pub":
                event = out(message)
                for s in SUBSCRIBERS:
                    s.offer(event)
            elif path == "/slow":
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": tally.answer()})
                else:
                    tally.add(message.get("bytes") or b"")
                    await asyncio.sleep(SLOW_DELAY)
    finally:
        if subscriber:
            SUBSCRIBERS.discard(subscriber)
            subscriber.task.cancel()


async def main(host: str, port: int, ws: str, loop: str) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http="httptools",
        ws=ws,
        ws_max_size=16 * 1024 * 1024,
        ws_ping_interval=None,
        ws_per_message_deflate=True,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            return
        await asyncio.sleep(0.05)
    name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"uvicorn: listening ({name}, ws={ws})", file=sys.stderr, flush=True)
    print("READY", flush=True)
    await task


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ws", default="websockets-sansio")
    p.add_argument("--no-uvloop", action="store_true")
    a = p.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    if uvloop is not None and not a.no_uvloop:
        uvloop.run(main(a.host, a.port, a.ws, "none"))
    else:
        asyncio.run(main(a.host, a.port, a.ws, "none"))
