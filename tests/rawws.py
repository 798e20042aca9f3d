"""A tiny raw WebSocket client for frame-level tests: it opens a TCP connection, sends an upgrade
request, reads the 101, and then sends and reads frames byte by byte, so that tests can send what a
well-behaved client library never would (unmasked frames, reserved opcodes, RSV bits, bad UTF-8...).

Every read has a timeout (a safety net so that a broken server fails a test instead of hanging it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from dataclasses import dataclass

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

TIMEOUT = 5.0


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(
    path: str = "/",
    host: str = "127.0.0.1",
    key: str | None = None,
    version: str | None = "13",
    extra: list[tuple[str, str]] | None = None,
    upgrade: bool = True,
) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    for name, value in extra or []:
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    mask_key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One frame as a client would send it. ``rsv`` is the 3-bit RSV1..RSV3 field (4 = RSV1).
    ``length`` overrides the length written in the header (to lie about it)."""
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    head = bytes([first])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def close_payload(code: int | None = None, reason: str | bytes = b"") -> bytes:
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        return self.payload[2:].decode()


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


async def read_response_head(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    version, status, *reason = lines[0].split(" ", 2)
    assert version.startswith("HTTP/1."), lines[0]
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return Response(int(status), reason[0] if reason else "", headers, b"")


async def http_exchange(
    port: int, request: bytes, host: str = "127.0.0.1", timeout: float = TIMEOUT
) -> Response:
    """Sends raw request bytes and reads one response head (and its Content-Length body, if any)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        await writer.drain()
        response = await read_response_head(reader, timeout)
        length = response.header("Content-Length")
        if length:
            response.body = await asyncio.wait_for(reader.readexactly(int(length)), timeout)
        return response
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


class RawWebSocket:
    """An upgraded connection driven frame by frame."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: Response
    ):
        self.reader = reader
        self.writer = writer
        self.response = response

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/",
        host: str = "127.0.0.1",
        extra: list[tuple[str, str]] | None = None,
        timeout: float = TIMEOUT,
    ) -> RawWebSocket:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        key = new_key()
        writer.write(upgrade_request(path, host, key, extra=extra))
        await writer.drain()
        response = await read_response_head(reader, timeout)
        if response.status != 101:
            writer.close()
            raise AssertionError(f"upgrade to {path} refused: {response.status} {response.reason}")
        assert response.header("Sec-WebSocket-Accept") == accept_key(key), response.headers
        return cls(reader, writer, response)

    # -- sending ---------------------------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        await self.send_raw(build_frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    async def send_text(self, text: str | bytes, **kwargs: object) -> None:
        data = text.encode() if isinstance(text, str) else text
        await self.send_frame(TEXT, data, **kwargs)

    async def send_binary(self, data: bytes, **kwargs: object) -> None:
        await self.send_frame(BINARY, data, **kwargs)

    async def send_close(self, code: int | None = 1000, reason: str | bytes = b"") -> None:
        await self.send_frame(CLOSE, close_payload(code, reason))

    # -- receiving -------------------------------------------------------------------------------

    async def read_frame(self, timeout: float = TIMEOUT) -> Frame:
        return await asyncio.wait_for(self._read_frame(), timeout)

    async def _read_frame(self) -> Frame:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        masked = bool(b1 & 0x80)
        key = await self.reader.readexactly(4) if masked else b""
        payload = await self.reader.readexactly(n) if n else b""
        if masked:
            payload = apply_mask(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0xF, masked, payload)

    async def read_message(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """Reads one data message (reassembling fragments; control frames in between are answered
        or skipped: pings are skipped, not answered). Returns (opcode, payload)."""

        async def read() -> tuple[int, bytes]:
            opcode, parts = None, []
            while True:
                frame = await self._read_frame()
                if frame.opcode in (PING, PONG):
                    continue
                if frame.opcode == CLOSE:
                    raise AssertionError(
                        f"expected a message, got close {frame.close_code} {frame.payload[2:]!r}"
                    )
                if opcode is None:
                    opcode = frame.opcode
                parts.append(frame.payload)
                if frame.fin:
                    return opcode, b"".join(parts)

        return await asyncio.wait_for(read(), timeout)

    async def read_until(self, opcode: int, timeout: float = TIMEOUT) -> Frame:
        """Reads frames until one with ``opcode`` (skipping others)."""

        async def read() -> Frame:
            while True:
                frame = await self._read_frame()
                if frame.opcode == opcode:
                    return frame

        return await asyncio.wait_for(read(), timeout)

    async def expect_close(self, timeout: float = TIMEOUT) -> Frame:
        """Reads frames until the server's close frame (skipping data and pings), and returns it."""
        return await self.read_until(CLOSE, timeout)

    async def expect_eof(self, timeout: float = TIMEOUT) -> bytes:
        """Reads until the server closes the TCP connection; returns what arrived before."""

        async def read() -> bytes:
            data = b""
            while True:
                try:
                    chunk = await self.reader.read(65536)
                except ConnectionResetError:
                    return data
                if not chunk:
                    return data
                data += chunk

        return await asyncio.wait_for(read(), timeout)

    def close_transport(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            pass

    async def __aenter__(self) -> RawWebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
