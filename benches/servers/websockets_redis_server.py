"""Cross-node fan-out peer: the `websockets` library with redis-py's asyncio pub/sub, the hand-made recipe.

One task per process reads the channel "bench" (`redis.asyncio` `PubSub.listen`) and sends each message to
every /sub connection of this process with `websockets.asyncio.server.broadcast`; /pub: every message
received is published (`await redis.publish`), one at a time. Every node, the publisher's included, receives
from Redis. Takes `--pubsub redis://...` (required) and `--pubsub-prefix` (the channel's namespace). Runs on
uvloop when installed. Prints READY once listening and subscribed.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis
from _common import loop_name, parse_args, ready, run
from websockets.asyncio.server import ServerConnection, broadcast, serve

ARGS = parse_args(__doc__ or "", pubsub=True)
if not ARGS.pubsub or not ARGS.pubsub.startswith("redis://"):
    sys.exit("websockets_redis_server.py needs --pubsub redis://...")
CHANNEL = f"{ARGS.pubsub_prefix}:bench"
SUBSCRIBERS: set[ServerConnection] = set()


async def relay(pubsub: aioredis.client.PubSub) -> None:
    async for message in pubsub.listen():
        if message["type"] == "message":
            broadcast(SUBSCRIBERS, message["data"])


async def main(host: str, port: int) -> None:
    client = aioredis.from_url(ARGS.pubsub, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    relaying = asyncio.create_task(relay(pubsub))

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        if path == "/sub":
            SUBSCRIBERS.add(ws)
            try:
                await ws.wait_closed()
            finally:
                SUBSCRIBERS.discard(ws)
        elif path == "/pub":
            async for message in ws:
                await client.publish(CHANNEL, message)
        else:
            await ws.close(1008)

    async with serve(handler, host, port, max_size=16 * 1024 * 1024, ping_interval=None):
        ready("websockets+redis-py", loop_name())
        await relaying


if __name__ == "__main__":
    run(main(ARGS.host, ARGS.port), ARGS.no_uvloop)
