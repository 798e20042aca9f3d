"""A read that returns less than it asked for marks the socket not readable without a second read (see
`read_tcp` in src/net/transport.rs). What must still hold: data that arrives after such a read is read,
and an end of stream that arrived with the last data is seen."""

from __future__ import annotations

import asyncio
import socket

import hyperws

from conftest import Serve
from rawws import TIMEOUT, RawWebSocket, build_frame, new_key, upgrade_request

TEXT, PING, PONG = 0x1, 0x9, 0xA


def send_then_end(port: int, message: bytes) -> bytes:
    """Upgrades, sends `message` in a frame with the FIN right behind it (one segment: MSG_MORE, then
    shutdown), and returns what the server sent after the upgrade until it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(upgrade_request("/", "127.0.0.1", new_key()))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        received = head.split(b"\r\n\r\n", 1)[1]
        sock.send(build_frame(TEXT, message), socket.MSG_MORE)
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
        return received


async def test_the_end_of_the_stream_behind_the_last_message_is_seen(serve: Serve) -> None:
    server = hyperws.Server()
    messages: list[str] = []
    closes: list[int] = []

    @server.ws("/")
    def record(ws: hyperws.Websocket) -> None:
        ws.on("message", lambda message, is_binary: messages.append(message))
        ws.on("close", lambda code, reason: closes.append(code))

    await serve(server)
    for n in range(20):
        # The client's end is read: the server closes (a hang here is a FIN never seen).
        await asyncio.to_thread(send_then_end, server.port, f"last words {n}".encode())
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while len(closes) < 20:
        assert asyncio.get_running_loop().time() < deadline, f"{len(closes)} closes of 20"
        await asyncio.sleep(0.01)
    assert messages == [f"last words {n}" for n in range(20)]
    assert closes == [1006] * 20, "no close frame came: an abnormal closure"


async def test_the_rest_of_a_frame_after_a_short_read_is_read(echo_server: hyperws.Server) -> None:
    async with await RawWebSocket.connect(echo_server.port, "/echo") as raw:
        for n in range(20):
            frame = build_frame(TEXT, f"message {n}".encode())
            # A ping and half a frame: the pong says the server read them (a short read).
            await raw.send_raw(build_frame(PING, b"p") + frame[:5])
            pong = await raw.read_frame()
            assert (pong.opcode, pong.payload) == (PONG, b"p")
            await raw.send_raw(frame[5:])
            assert await raw.read_message() == (TEXT, f"message {n}".encode())
