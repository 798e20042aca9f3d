"""The benchmark app on aiohttp's web server.

/echo: `async for msg in ws` and `send_str`/`send_bytes` back; /sub: joins the subscriber set; /pub: every message
received is sent to every subscriber with `send_str`/`send_bytes` in a loop (aiohttp has no pub/sub or broadcast
of its own), skipping a subscriber whose transport is above its high-water mark (awaiting its drain would stall every
other subscriber: what `websockets.broadcast` does); /slow: `await asyncio.sleep(SLOW_DELAY)` per binary message in the receive loop, a text message
answered with the tally; /echoz: /echo with `compress=True` (permessage-deflate when the client offers it);
/json: the "typical app" (`_common.json_reply`) answering each message with `send_str`.
Prints READY once listening.
"""

from __future__ import annotations

import asyncio

from _common import SLOW_DELAY, Tally, json_reply, loop_name, parse_args, ready, run
from aiohttp import WSMsgType, web

MAX = 16 * 1024 * 1024
SUBSCRIBERS: dict[web.WebSocketResponse, asyncio.Transport] = {}


async def open_ws(request: web.Request, compress: bool = False) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=compress, max_msg_size=MAX, autoping=True)
    await ws.prepare(request)
    return ws


async def send(ws: web.WebSocketResponse, msg_type: WSMsgType, data: str | bytes) -> None:
    if msg_type == WSMsgType.TEXT:
        await ws.send_str(data)  # type: ignore[arg-type]
    else:
        await ws.send_bytes(data)  # type: ignore[arg-type]


async def echo_loop(ws: web.WebSocketResponse) -> web.WebSocketResponse:
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            await send(ws, msg.type, msg.data)
    return ws


async def echo(request: web.Request) -> web.WebSocketResponse:
    return await echo_loop(await open_ws(request))


async def echoz(request: web.Request) -> web.WebSocketResponse:
    return await echo_loop(await open_ws(request, compress=True))


async def json_app(request: web.Request) -> web.WebSocketResponse:
    ws = await open_ws(request)
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            await ws.send_str(json_reply(msg.data))
    return ws


async def sub(request: web.Request) -> web.WebSocketResponse:
    ws = await open_ws(request)
    transport = request.transport
    if (
        transport is not None
    ):  # (uvloop's transports are not asyncio.Transport subclasses: no isinstance)
        SUBSCRIBERS[ws] = transport
    try:
        async for _ in ws:
            pass
    finally:
        SUBSCRIBERS.pop(ws, None)
    return ws


def can_take(transport: asyncio.Transport, size: int) -> bool:
    """Whether `size` more bytes stay under the transport's high-water mark (so the send does not wait)."""
    return transport.get_write_buffer_size() + size + 16 < transport.get_write_buffer_limits()[1]


async def pub(request: web.Request) -> web.WebSocketResponse:
    ws = await open_ws(request)
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            size = len(msg.data)
            for s, transport in list(SUBSCRIBERS.items()):
                if not s.closed and can_take(transport, size):
                    await send(s, msg.type, msg.data)
    return ws


async def slow(request: web.Request) -> web.WebSocketResponse:
    ws = await open_ws(request)
    tally = Tally()
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(tally.answer())
        elif msg.type == WSMsgType.BINARY:
            tally.add(msg.data)
            await asyncio.sleep(SLOW_DELAY)
    return ws


async def main(host: str, port: int) -> None:
    app = web.Application()
    app.add_routes(
        [
            web.get("/echo", echo),
            web.get("/echoz", echoz),
            web.get("/json", json_app),
            web.get("/sub", sub),
            web.get("/pub", pub),
            web.get("/slow", slow),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    ready("aiohttp", loop_name())
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(main(args.host, args.port), args.no_uvloop)
