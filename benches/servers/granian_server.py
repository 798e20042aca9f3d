"""The benchmark app as an RSGI app on granian, embedded in this process (granian.server.embed: the Rust runtime
with one thread, the app on this process's asyncio loop, no worker processes).

/echo: `await transport.receive()` and `send_str`/`send_bytes` back; /sub: joins the subscriber set and waits for
the close; /pub: every message received is sent to every subscriber transport in a loop (granian has no pub/sub);
/slow: `await asyncio.sleep(SLOW_DELAY)` per binary message in the receive loop, a text message answered with the
tally; /json: the "typical app" (`_common.json_reply`) answering each message with `send_str`. No /echoz:
granian's WebSockets have no permessage-deflate. Prints READY once the port accepts connections.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from _common import SLOW_DELAY, Tally, json_reply, loop_name, parse_args, run, unsupported
from granian.constants import Interfaces
from granian.log import LogLevels
from granian.rsgi import WebsocketMessageType
from granian.server.embed import Server

SUBSCRIBERS: set[Any] = set()
ROUTES = {"/echo", "/json", "/sub", "/pub", "/slow"}


async def send(transport: Any, kind: WebsocketMessageType, data: Any) -> None:
    if kind == WebsocketMessageType.string:
        await transport.send_str(data)
    else:
        await transport.send_bytes(data)


async def websocket(scope: Any, proto: Any) -> None:
    path = scope.path
    if path not in ROUTES:
        proto.close(1008)
        return
    transport = await proto.accept()
    if path == "/sub":
        SUBSCRIBERS.add(transport)
    tally = Tally()
    try:
        while True:
            msg = await transport.receive()
            if msg.kind == WebsocketMessageType.close:
                break
            if path == "/echo":
                await send(transport, msg.kind, msg.data)
            elif path == "/json":
                await transport.send_str(json_reply(msg.data))
            elif path == "/pub":
                for s in list(SUBSCRIBERS):
                    await send(s, msg.kind, msg.data)
            elif path == "/slow":
                if msg.kind == WebsocketMessageType.string:
                    await transport.send_str(tally.answer())
                else:
                    tally.add(msg.data)
                    await asyncio.sleep(SLOW_DELAY)
    except Exception:  # the client went away mid-send
        pass
    finally:
        SUBSCRIBERS.discard(transport)
    proto.close(1000)


class App:
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto == "ws":
            await websocket(scope, proto)
        else:
            proto.response_str(404, [("content-type", "text/plain")], "not found\n")


async def wait_listening(host: str, port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def main(host: str, port: int) -> None:
    logging.getLogger("_granian").setLevel(logging.ERROR)
    server = Server(
        App(),
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        websockets=True,
        runtime_threads=1,
        log_level=LogLevels.warning,
    )
    task = asyncio.create_task(server.serve())
    await wait_listening(host, port)
    unsupported("/echoz", "granian has no permessage-deflate")
    print(f"granian: listening ({loop_name()}, embedded)", file=sys.stderr, flush=True)
    print("READY", flush=True)
    await task


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(main(args.host, args.port), args.no_uvloop)
