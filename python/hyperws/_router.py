"""Router: WebSocket routes and mounted sub-routers, as in HyperExpress."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, overload

from . import _core
from ._core import Websocket
from ._options import WsOptions, ws_options

OpenHandler = Callable[[Websocket], Any]
"""Called with each new connection; a plain function or an ``async def``."""


@dataclass(frozen=True)
class WsRoute:
    pattern: str
    handler: OpenHandler
    options: WsOptions


class Router:
    """A group of routes that can be mounted under a prefix with ``server.use(prefix, router)``."""

    def __init__(self) -> None:
        self._ws_routes: list[WsRoute] = []
        self._mounts: list[tuple[str, Router]] = []

    @overload
    def ws(
        self, pattern: str, options: Mapping[str, Any], handler: OpenHandler, /
    ) -> OpenHandler: ...
    @overload
    def ws(self, pattern: str, handler: OpenHandler, /, **options: Any) -> OpenHandler: ...
    @overload
    def ws(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[OpenHandler], OpenHandler]: ...

    def ws(self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any) -> Any:
        """Adds a WebSocket route: ``ws(pattern, {options}, handler)``, ``ws(pattern, handler, **options)``
        or, as a decorator, ``@router.ws(pattern, **options)``."""
        if callable(options) and handler is None:
            options, handler = None, options
        settings = ws_options(options, keywords)
        _check_pattern(pattern)

        def register(handler: OpenHandler) -> OpenHandler:
            if not callable(handler):
                raise TypeError(f"a ws handler must be callable, got {type(handler).__name__}")
            self._ws_routes.append(WsRoute(pattern, handler, settings))
            return handler

        if handler is None:
            return register
        return register(handler)

    def use(self, prefix: str | Router, router: Router | None = None) -> None:
        """Mounts ``router`` under ``prefix`` (``use(router)`` mounts it at the root)."""
        if isinstance(prefix, Router) and router is None:
            router, prefix = prefix, "/"
        if not isinstance(router, Router):
            raise TypeError(f"use() mounts a Router, got {type(router).__name__}")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"a mount prefix must be a path starting with '/', got {prefix!r}")
        if router is self:
            raise ValueError("a router cannot be mounted on itself")
        self._mounts.append((prefix, router))

    def _all_ws_routes(self, prefix: str = "/") -> Iterator[WsRoute]:
        for route in self._ws_routes:
            yield WsRoute(_core.join_prefix(prefix, route.pattern), route.handler, route.options)
        for mount, router in self._mounts:
            yield from router._all_ws_routes(_core.join_prefix(prefix, mount))


def _check_pattern(pattern: object) -> None:
    if not isinstance(pattern, str):
        raise TypeError(f"a route pattern must be a str, got {type(pattern).__name__}")
    _core.check_pattern(pattern)
