"""One server process of a scale-out test: ``python backplane_node.py URL PREFIX`` serves on a free port
and prints ``PORT <n>``. Clients drive it over WebSocket with JSON commands (answered ``ack:<id>``):
``{"id": 1, "op": "sub", "filters": [...]}``, ``{"op": "unsub", ...}``, and
``{"op": "publish", "topic": t, "messages": [...], "binary": false, "compress": false, "via": "ws"}``
(``via: "server"`` publishes with ``server.publish``), ``{"op": "flood", "topic": t, "size": n, "count": c,
"random": false, "compress": false, "from": "handler"}`` (``c`` binary messages of ``n`` zero or random
bytes, by ``server.publish`` called from this handler, an asyncio ``"task"`` or another ``"thread"``; acked
when all are published). ``GET /stats`` answers ``server.stats()`` as JSON.
Warnings (the broker's outages) go to stderr."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

import hyperws


def handle(server: hyperws.Server, ws: hyperws.Websocket, message: Any, is_binary: bool) -> None:
    command = json.loads(message)
    op = command["op"]
    if op == "sub":
        for topic_filter in command["filters"]:
            ws.subscribe(topic_filter)
    elif op == "unsub":
        for topic_filter in command["filters"]:
            ws.unsubscribe(topic_filter)
    elif op == "publish":
        publish = ws.publish if command.get("via", "ws") == "ws" else server.publish
        for text in command["messages"]:
            payload = text.encode() if command.get("binary") else text
            publish(
                command["topic"], payload, command.get("binary"), command.get("compress", False)
            )
    elif op == "flood":
        where = command.get("from", "handler")
        if where != "handler":
            flooding = asyncio.get_running_loop().create_task(flood_from(where, server, command))
            flooding.add_done_callback(lambda _: ws.send(f"ack:{command['id']}"))
            return
        flood(server, command)
    ws.send(f"ack:{command['id']}")


def flood(server: hyperws.Server, command: dict[str, Any]) -> None:
    size = command["size"]
    payload = os.urandom(size) if command.get("random") else bytes(size)
    for _ in range(command["count"]):
        server.publish(command["topic"], payload, True, command.get("compress", False))


async def flood_from(where: str, server: hyperws.Server, command: dict[str, Any]) -> None:
    if where == "thread":
        await asyncio.to_thread(flood, server, command)
    else:
        flood(server, command)


async def main(pubsub: str, prefix: str) -> None:
    server = hyperws.Server(io_threads=1, pubsub=pubsub, pubsub_prefix=prefix)

    @server.ws("/", compression="shared")
    def connected(ws: hyperws.Websocket) -> None:
        ws.on("message", lambda message, is_binary: handle(server, ws, message, is_binary))

    @server.get("/stats")
    def stats(request: hyperws.Request, response: hyperws.Response) -> None:
        response.type("application/json").send(json.dumps(server.stats()))

    await server.listen(0, "127.0.0.1")
    print(f"PORT {server.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt:
        pass
