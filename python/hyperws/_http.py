"""Request and Response of upgrade handlers and plain HTTP routes."""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ._core import PeerCertificate, PendingRequest, PendingUpgrade


class Headers(Mapping[str, str]):
    """Request headers: names are lower-case and lookups ignore case; a repeated header's values are
    joined with ", "."""

    __slots__ = ("_values",)

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        values: dict[str, str] = {}
        for name, value in pairs:
            values[name] = f"{values[name]}, {value}" if name in values else value
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Headers({self._values!r})"


class Request:
    """An HTTP request: a WebSocket upgrade, or a request to a plain HTTP route."""

    __slots__ = (
        "_body",
        "cookies",
        "extensions",
        "headers",
        "ip",
        "method",
        "path",
        "path_parameters",
        "peer_certificate",
        "protocols",
        "proxy_ip",
        "query",
        "query_parameters",
        "url",
    )

    def __init__(self, pending: PendingUpgrade | PendingRequest) -> None:
        self.method: str = pending.method
        self.url: str = pending.target
        path, _, query = pending.target.partition("?")
        self.path: str = path
        self.query: str = query
        # For a repeated key the last value wins; parse `query` yourself to see them all.
        self.query_parameters: dict[str, str] = dict(parse_qsl(query, keep_blank_values=True))
        self.path_parameters: dict[str, str] = dict(pending.params)
        self.headers = Headers(pending.headers)
        self.cookies: dict[str, str] = _parse_cookies(self.headers.get("cookie", ""))
        self.ip: str = pending.ip
        self.proxy_ip: str = pending.proxy_ip
        self.peer_certificate: PeerCertificate | None = pending.peer_certificate
        if isinstance(pending, PendingUpgrade):
            self.protocols: list[str] = pending.protocols
            self.extensions: list[str] = pending.extensions
            self._body: builtins.bytes = b""
        else:
            self.protocols = []
            self.extensions = []
            self._body = pending.body

    # The body is read whole by the engine before the handler is called (at most max_body_length
    # bytes); these are coroutines so that code written for streaming servers reads the same.
    async def bytes(self) -> builtins.bytes:
        """The request body."""
        return self._body

    async def text(self) -> str:
        """The request body decoded as UTF-8 (``UnicodeDecodeError``, a ``ValueError``, if it is
        not)."""
        return self._body.decode()

    async def json(self) -> Any:
        """The request body parsed as JSON (``json.JSONDecodeError``, a ``ValueError``, if it is
        not JSON)."""
        return json.loads(self._body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url} from {self.ip}>"


def _parse_cookies(header: str) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies[name] = value.strip().strip('"')
    return cookies


class Response:
    """The answer to a request: ``status(code).send(body)`` or ``json(obj)`` answers with that HTTP
    response; for an upgrade request, ``upgrade(context)`` accepts it instead."""

    __slots__ = ("_answered", "_headers", "_pending", "_status")

    def __init__(self, pending: PendingUpgrade | PendingRequest) -> None:
        self._pending = pending
        self._status = 200
        self._headers: list[tuple[str, str]] = []
        self._answered: asyncio.Future[None] | None = None

    @property
    def completed(self) -> bool:
        """Whether the request was answered (upgraded or rejected)."""
        return self._pending.answered

    def _when_answered(self) -> asyncio.Future[None]:
        """A future done once the request is answered (for middlewares that neither call ``next``
        nor return at once)."""
        if self._answered is None:
            self._answered = asyncio.get_running_loop().create_future()
            if self.completed:
                self._answered.set_result(None)
        return self._answered

    def _mark_answered(self) -> None:
        if self._answered is not None and not self._answered.done():
            self._answered.set_result(None)

    def status(self, code: int) -> Response:
        if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
            raise ValueError(f"an HTTP status is an int in 200..599, got {code!r}")
        self._status = code
        return self

    def header(self, name: str, value: str) -> Response:
        """Adds a header: to the response, or to the 101 when set before ``upgrade()``."""
        if any(c in name + value for c in "\r\n") or not name:
            raise ValueError("a header name and value must be non-empty text without line breaks")
        self._headers.append((name, str(value)))
        return self

    def cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        http_only: bool = True,
        same_site: str | None = "Lax",
    ) -> Response:
        """Sets a cookie (a ``Set-Cookie`` header)."""
        parts = [f"{name}={value}", f"Path={path}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if domain:
            parts.append(f"Domain={domain}")
        if secure:
            parts.append("Secure")
        if http_only:
            parts.append("HttpOnly")
        if same_site:
            parts.append(f"SameSite={same_site}")
        return self.header("Set-Cookie", "; ".join(parts))

    def type(self, content_type: str) -> Response:
        """Sets the ``Content-Type`` header (``text/plain; charset=utf-8`` when not set)."""
        return self.header("Content-Type", content_type)

    def send(self, body: str | bytes = "") -> None:
        """Answers with the status set (200 by default) and this body (for an upgrade request, this
        rejects the upgrade)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        self._pending.respond(self._status, self._headers, data)
        self._mark_answered()

    def json(self, obj: Any) -> None:
        """Answers with ``obj`` as a JSON body (``Content-Type: application/json``)."""
        if not any(name.lower() == "content-type" for name, _ in self._headers):
            self.header("Content-Type", "application/json")
        self.send(json.dumps(obj))

    def upgrade(self, context: dict[str, Any] | None = None, protocol: str | None = None) -> None:
        """Accepts: the connection opens with ``ws.context == context`` and ``ws.protocol ==
        protocol`` (one of the subprotocols the client offered, or None for none)."""
        if not isinstance(self._pending, PendingUpgrade):
            raise RuntimeError(
                "upgrade() answers WebSocket upgrade requests, not plain HTTP requests"
            )
        if context is not None and not isinstance(context, dict):
            raise TypeError(f"the upgrade context is a dict, got {type(context).__name__}")
        self._pending.accept({} if context is None else context, protocol, self._headers)
        self._mark_answered()
