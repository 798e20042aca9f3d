"""The benchmark app on picows.

/echo: every frame back with the same type; /sub: joins the subscriber set; /pub: every message received is sent
to every subscriber transport in a plain loop (picows has no pub/sub of its own). Prints READY once listening.
"""

from __future__ import annotations

from _common import loop_name, parse_args, ready, run
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


ROUTES = {b"/echo": Echo, b"/sub": Sub, b"/pub": Pub}


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
        ready("picows", loop_name())
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    run(main(args.host, args.port), args.no_uvloop)
