"""A raw HTTP/1.1 client over asyncio streams, for tests that need to see the bytes: keep-alive,
pipelining, HEAD, malformed framing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rawws import Response, read_response_head

TIMEOUT = 5.0


def request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    version: str = "1.1",
    length: bool = True,
) -> bytes:
    """The bytes of a request; ``Content-Length`` is added for a body unless ``length`` is False."""
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpConnection:
    """One TCP connection: send requests, read responses one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, prefix: bytes = b"") -> HttpConnection:
        """Connects; ``prefix`` is sent first (a PROXY protocol header)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        if prefix:
            writer.write(prefix)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, head_only: bool = False) -> Response:
        """Reads one response: its head and, unless ``head_only`` (a HEAD request), its body."""
        response = await read_response_head(self.reader, TIMEOUT)
        length = response.header("Content-Length")
        if length and not head_only:
            response.body = await asyncio.wait_for(self.reader.readexactly(int(length)), TIMEOUT)
        return response

    async def exchange(
        self, method: str, path: str, body: bytes = b"", **kwargs: object
    ) -> Response:
        await self.send(request(method, path, body, **kwargs))  # type: ignore[arg-type]
        return await self.read(head_only=method == "HEAD")

    async def closed_by_server(self) -> bool:
        """True when the server closed the connection (EOF without further bytes)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), TIMEOUT) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def fetch(port: int, method: str, path: str, body: bytes = b"", **kwargs: object) -> Response:
    """One request on a fresh connection."""
    async with await HttpConnection.open(port) as conn:
        return await conn.exchange(method, path, body, **kwargs)
