"""The benchmark app on picows.

/echo: every frame back with the same type; /sub: joins the subscriber set; /pub: every message received is sent
to every subscriber transport in a plain loop (picows has no pub/sub of its own); /slow: frames go to a queue that
a task works through, SLOW_DELAY per binary message, with the socket's reading paused while 16 or more wait (the
flow control picows leaves to the app); a text message is answered with the tally. No /echoz: picows has no
permessage-deflate; /json: the "typical app" (`_common.json_reply`) answering each message from `on_ws_frame`.
Prints READY once listening.
"""

from __future__ import annotations

import asyncio

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
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

SUBSCRIBERS: set[WSTransport] = set()


class Base(WSListener):  # type: ignore[misc]
    def on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        transport.send_close(frame.get_close_code(), frame.get_close_message())
        transport.disconnect()


class Echo(Base):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.on_close_frame(transport, frame)
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)


class Json(Base):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.on_close_frame(transport, frame)
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            reply = json_reply(frame.get_payload_as_bytes())
            transport.send(WSMsgType.TEXT, reply.encode())


class Sub(Base):
    def on_ws_connected(self, transport: WSTransport) -> None:
        SUBSCRIBERS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        SUBSCRIBERS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.on_close_frame(transport, frame)


class Pub(Base):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.on_close_frame(transport, frame)
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            msg_type, payload = frame.msg_type, frame.get_payload_as_bytes()
            for sub in SUBSCRIBERS:
                sub.send(msg_type, payload)


class Slow(Base):
    PAUSE_AT = 16

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[WSMsgType, bytes]] = asyncio.Queue()
        self.paused = False
        self.worker: asyncio.Task[None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.worker = asyncio.get_running_loop().create_task(self.work(transport))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.worker:
            self.worker.cancel()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.on_close_frame(transport, frame)
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.queue.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))
            if self.queue.qsize() >= self.PAUSE_AT and not self.paused:
                self.paused = True
                transport.underlying_transport.pause_reading()

    async def work(self, transport: WSTransport) -> None:
        tally = Tally()
        while True:
            msg_type, payload = await self.queue.get()
            if msg_type == WSMsgType.TEXT:
                transport.send(WSMsgType.TEXT, tally.answer().encode())
            else:
                tally.add(payload)
                await asyncio.sleep(SLOW_DELAY)
            if self.paused and self.queue.qsize() < self.PAUSE_AT // 2:
                self.paused = False
                transport.underlying_transport.resume_reading()


ROUTES = {b"/echo": Echo, b"/json": Json, b"/sub": Sub, b"/pub": Pub, b"/slow": Slow}


def listener_factory(request: WSUpgradeRequest) -> WSListener | None:
    cls = ROUTES.get(request.path)
    return cls() if cls else None  # None: 404


async def main(host: str, port: int) -> None:
    server = await ws_create_server(
        listener_factory,
        host,
        port,
        max_frame_size=16 * 1024 * 1024,
        websocket_handshake_timeout=None,
    )
    async with server:
        unsupported("/echoz", "picows has no permessage-deflate")
        ready("picows", loop_name())
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(main(args.host, args.port), args.no_uvloop)
