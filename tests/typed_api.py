"""Uses the whole public API as an app would, for `mypy --strict` (scripts/test.sh checks it): a
change to the stubs that breaks typed user code fails there. Not run by pytest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import hyperws

server = hyperws.Server(
    io_threads=2,
    max_header_bytes=16 * 1024,
    request_timeout=10.0,
    close_timeout=5.0,
    max_pending_bytes=1 << 20,
    max_pending_bytes_total=64 << 20,
    max_body_length=1 << 20,
    trust_proxy=["10.0.0.0/8"],
    proxy_header="Forwarded",
    proxy_protocol=False,
    pubsub="redis://127.0.0.1:6379/0",
    pubsub_prefix="app",
    pubsub_required=False,
    access_log=True,
)
server.access_log = False
router = hyperws.Router()


def middleware(request: hyperws.Request, response: hyperws.Response, next: object) -> None:
    assert callable(next)
    next()


@router.upgrade("/rooms/:room", middlewares=[middleware], upgrade_timeout=5)
async def decide(request: hyperws.Request, response: hyperws.Response) -> None:
    certificate: hyperws.PeerCertificate | None = request.peer_certificate
    names: list[str] = certificate.alt_names if certificate is not None else []
    if not names and request.query_parameters.get("token") != "secret":
        response.status(401).header("X-Why", "token").send("unauthorized")
        return
    response.upgrade({"room": request.path_parameters["room"], "ip": request.ip})


async def chunks() -> AsyncIterator[bytes]:
    yield b"part"


@router.ws("/rooms/:room", idle_timeout=60, max_payload_length=1 << 16, compression="shared")
async def on_open(ws: hyperws.Websocket) -> None:
    topic = f"rooms/{ws.context['room']}"
    ws.subscribe(topic)
    subscribed: bool = ws.is_subscribed(topic)
    topics: list[str] = ws.topics
    assert subscribed and topics and ws.ip and not ws.closed and ws.buffered >= 0

    @ws.on("message")
    async def on_message(message: str | bytes, is_binary: bool) -> None:
        if not ws.send(message, is_binary, compress=True):
            await ws.drain()
        ws.publish(topic, message)

    ws.on("close", lambda code, reason: None).once("drain", lambda: None)
    identity: tuple[int, str] = (ws.id, ws.route)
    assert identity

    @ws.on("close")
    def on_close(code: int, reason: str) -> None:  # a "String" route's close reason is a str
        pass

    @ws.once("ping")
    def on_ping(data: bytes) -> None:
        pass

    ws.atomic(lambda: ws.ping(b"p"))
    await ws.stream(chunks())
    async with ws.writable as writer:
        writer.write(b"piece")
    async for message in ws:
        ws.send(message)
    ws.close(1000, "bye")


# A route's message_type sets what its listeners receive.
@router.ws("/bytes", message_type="Buffer")
def on_bytes(ws: hyperws.Websocket[bytes]) -> None:
    def on_message(message: bytes, is_binary: bool) -> None:
        ws.send(message.upper(), is_binary)

    def on_close(code: int, reason: bytes) -> None:
        pass

    ws.on("message", on_message).on("close", on_close).on("pong", lambda data: None)


async def on_views(ws: hyperws.Websocket[memoryview]) -> None:
    @ws.on("message")
    def on_message(message: memoryview, is_binary: bool) -> None:
        ws.send(message.tobytes(), is_binary)

    ws.on("ping", lambda data: print(data.nbytes))
    async for message in ws:
        size: int = message.nbytes
        assert size >= 0


router.ws("/views", on_views, message_type="ArrayBuffer", idle_timeout=30)
router.ws("/any", {"message_type": "Buffer"}, on_bytes)  # with an options mapping: not checked


@server.get("/health")
def health(request: hyperws.Request, response: hyperws.Response) -> None:
    stats: dict[str, int] = server.stats()
    response.json({"ok": True, "connections": server.connections, "events": stats["events"]})


@server.post("/echo")
async def echo(request: hyperws.Request, response: hyperws.Response) -> None:
    response.type("application/octet-stream").send(await request.bytes())


server.use("/", router)


async def main() -> None:
    async with server:
        await server.listen(9001, "127.0.0.1", reuse_port=True)
        server.add_server_name("example.com", cert_file="c.pem", key_file="k.pem")
        server.publish("rooms/lobby", "hello", compress=False)
        count: int = server.num_subscribers("rooms/+")
        assert count >= 0 and server.port
        await asyncio.sleep(0)


if __name__ == "__main__":
    server.run(9001, workers=2)
