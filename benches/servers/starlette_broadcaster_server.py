"""Cross-node fan-out peer: Starlette on uvicorn with the `broadcaster` package's Redis backend, the usual
recipe for WebSocket pub/sub across processes in Python (Starlette's and broadcaster's chat examples).

/sub: joins the channel "bench" (`broadcast.subscribe`) and sends every message it gets as text, until the
client disconnects; /pub: every text message received is published (`await broadcast.publish`), one at a time.
Every node, the publisher's included, receives from Redis. Takes `--pubsub redis://...` (required) and
`--pubsub-prefix` (the channel's namespace). uvicorn with `--ws websockets-sansio` (as in uvicorn_server.py),
httptools, uvloop when installed. Prints READY once listening and connected to Redis.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from _common import loop_name, parse_args, ready, run
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

ARGS = parse_args(__doc__ or "", pubsub=True)
if not ARGS.pubsub or not ARGS.pubsub.startswith("redis://"):
    sys.exit("starlette_broadcaster_server.py needs --pubsub redis://...")
CHANNEL = f"{ARGS.pubsub_prefix}:bench"
broadcast = Broadcast(ARGS.pubsub)


async def sub(websocket: WebSocket) -> None:
    await websocket.accept()
    async with broadcast.subscribe(channel=CHANNEL) as subscriber:

        async def forward() -> None:
            async for event in subscriber:  # type: ignore[union-attr]
                await websocket.send_text(event.message)

        forwarding = asyncio.create_task(forward())
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            forwarding.cancel()


async def pub(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await broadcast.publish(channel=CHANNEL, message=text)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    # Two races of broadcaster 0.3.1, worked around by subscribing this process to the channel at
    # start-up, for its whole life: (1) its Redis backend wakes its reader on the first subscription,
    # before redis-py 8 has recorded it; the reader finds none, stops, and waits for another channel's
    # (hence a second channel); (2) connections subscribing at the same time to a channel nobody holds
    # yet each replace the channel's set of queues, so all but one receive nothing (and fail with a
    # KeyError when they leave). The held subscription's messages are read and dropped.
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(broadcast.subscribe(channel=f"{CHANNEL}:start"))
            held = await stack.enter_async_context(broadcast.subscribe(channel=CHANNEL))

            async def drop_all() -> None:
                async for _ in held:  # type: ignore[union-attr]
                    pass

            dropping = asyncio.create_task(drop_all())
            yield
            dropping.cancel()
    finally:
        await broadcast.disconnect()


app = Starlette(
    routes=[WebSocketRoute("/sub", sub), WebSocketRoute("/pub", pub)], lifespan=lifespan
)


async def main(host: str, port: int) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        ws="websockets-sansio",
        ws_ping_interval=None,
        lifespan="on",
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
    ready("starlette+broadcaster", loop_name())
    await task


if __name__ == "__main__":
    run(main(ARGS.host, ARGS.port), ARGS.no_uvloop)
