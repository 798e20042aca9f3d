"""Router: WebSocket, upgrade and plain HTTP routes, and mounted sub-routers, as in HyperExpress."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from . import _core
from ._core import Websocket
from ._http import Request, Response
from ._options import (
    HttpOptions,
    UpgradeOptions,
    WsOptions,
    http_options,
    upgrade_options,
    ws_options,
)

OpenHandler = Callable[[Websocket[Any]], Any]
"""Called with each new connection; a plain function or an ``async def``."""

# The open handler of a route, typed by its message_type: the Websocket it gets hands its listeners
# str | bytes ("String", the default), bytes ("Buffer") or memoryview ("ArrayBuffer").
_StringOpen = TypeVar("_StringOpen", bound=Callable[[Websocket[str | bytes]], object])
_BufferOpen = TypeVar("_BufferOpen", bound=Callable[[Websocket[bytes]], object])
_ArrayBufferOpen = TypeVar("_ArrayBufferOpen", bound=Callable[[Websocket[memoryview]], object])
_AnyOpen = TypeVar("_AnyOpen", bound=OpenHandler)


UpgradeHandler = Callable[[Request, Response], Any]
"""Decides an upgrade: ``response.upgrade(context)`` or ``response.status(code).send(body)``."""

RequestHandler = Callable[[Request, Response], Any]
"""Answers a plain HTTP request: ``response.status(code).send(body)`` or ``response.json(obj)``."""

Middleware = Callable[..., Any]
"""``def mw(request, response, next)`` or ``async def mw(request, response)``."""


@dataclass(frozen=True)
class WsRoute:
    pattern: str
    handler: OpenHandler
    options: WsOptions
    middlewares: tuple[Middleware, ...] = ()


@dataclass(frozen=True)
class UpgradeRoute:
    pattern: str
    handler: UpgradeHandler
    options: UpgradeOptions
    middlewares: tuple[Middleware, ...] = ()


@dataclass(frozen=True)
class HttpRoute:
    method: str
    pattern: str
    handler: RequestHandler
    options: HttpOptions
    middlewares: tuple[Middleware, ...] = ()


class Router:
    """A group of routes that can be mounted under a prefix with ``server.use(prefix, router)``."""

    def __init__(self) -> None:
        self._ws_routes: list[WsRoute] = []
        self._upgrade_routes: list[UpgradeRoute] = []
        self._http_routes: list[HttpRoute] = []
        self._middlewares: list[Middleware] = []
        self._mounts: list[tuple[str, Router]] = []

    # With message_type given as a keyword (a literal), the handler's Websocket is typed for it; with
    # an options mapping, it is not checked.
    @overload
    def ws(
        self,
        pattern: str,
        handler: _StringOpen,
        /,
        *,
        message_type: Literal["String"] = ...,
        **options: Any,
    ) -> _StringOpen: ...
    @overload
    def ws(
        self,
        pattern: str,
        handler: _BufferOpen,
        /,
        *,
        message_type: Literal["Buffer"],
        **options: Any,
    ) -> _BufferOpen: ...
    @overload
    def ws(
        self,
        pattern: str,
        handler: _ArrayBufferOpen,
        /,
        *,
        message_type: Literal["ArrayBuffer"],
        **options: Any,
    ) -> _ArrayBufferOpen: ...
    @overload
    def ws(self, pattern: str, options: Mapping[str, Any], handler: _AnyOpen, /) -> _AnyOpen: ...
    @overload
    def ws(
        self, pattern: str, /, *, message_type: Literal["String"] = ..., **options: Any
    ) -> Callable[[_StringOpen], _StringOpen]: ...
    @overload
    def ws(
        self, pattern: str, /, *, message_type: Literal["Buffer"], **options: Any
    ) -> Callable[[_BufferOpen], _BufferOpen]: ...
    @overload
    def ws(
        self, pattern: str, /, *, message_type: Literal["ArrayBuffer"], **options: Any
    ) -> Callable[[_ArrayBufferOpen], _ArrayBufferOpen]: ...
    @overload
    def ws(self, pattern: str, options: Mapping[str, Any], /) -> Callable[[_AnyOpen], _AnyOpen]: ...

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

    @overload
    def upgrade(
        self, pattern: str, options: Mapping[str, Any], handler: UpgradeHandler, /
    ) -> UpgradeHandler: ...
    @overload
    def upgrade(
        self, pattern: str, handler: UpgradeHandler, /, **options: Any
    ) -> UpgradeHandler: ...
    @overload
    def upgrade(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[UpgradeHandler], UpgradeHandler]: ...

    def upgrade(
        self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any
    ) -> Any:
        """Adds an upgrade route, which decides the upgrades to the ws route of the same pattern:
        ``upgrade(pattern, {options}, handler)``, ``upgrade(pattern, handler, **options)`` or, as a
        decorator, ``@router.upgrade(pattern, **options)``. Options: ``middlewares`` (a list),
        ``upgrade_timeout`` (seconds, default 10)."""
        if callable(options) and handler is None:
            options, handler = None, options
        settings = upgrade_options(options, keywords)
        for middleware in settings.middlewares:
            check_middleware(middleware)
        _check_pattern(pattern)

        def register(handler: UpgradeHandler) -> UpgradeHandler:
            if not callable(handler):
                raise TypeError(
                    f"an upgrade handler must be callable, got {type(handler).__name__}"
                )
            self._upgrade_routes.append(UpgradeRoute(pattern, handler, settings))
            return handler

        if handler is None:
            return register
        return register(handler)

    @overload
    def get(
        self, pattern: str, options: Mapping[str, Any], handler: RequestHandler, /
    ) -> RequestHandler: ...
    @overload
    def get(self, pattern: str, handler: RequestHandler, /, **options: Any) -> RequestHandler: ...
    @overload
    def get(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[RequestHandler], RequestHandler]: ...

    def get(
        self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any
    ) -> Any:
        """Adds a GET route (HEAD requests are answered by it too, without the body):
        ``get(pattern, {options}, handler)``, ``get(pattern, handler, **options)`` or, as a decorator,
        ``@router.get(pattern, **options)``. Options: ``middlewares`` (a list), ``handler_timeout``
        (seconds, default 10)."""
        return self._http("GET", pattern, options, handler, keywords)

    @overload
    def post(
        self, pattern: str, options: Mapping[str, Any], handler: RequestHandler, /
    ) -> RequestHandler: ...
    @overload
    def post(self, pattern: str, handler: RequestHandler, /, **options: Any) -> RequestHandler: ...
    @overload
    def post(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[RequestHandler], RequestHandler]: ...

    def post(
        self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any
    ) -> Any:
        """Adds a POST route; called like ``get``."""
        return self._http("POST", pattern, options, handler, keywords)

    @overload
    def put(
        self, pattern: str, options: Mapping[str, Any], handler: RequestHandler, /
    ) -> RequestHandler: ...
    @overload
    def put(self, pattern: str, handler: RequestHandler, /, **options: Any) -> RequestHandler: ...
    @overload
    def put(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[RequestHandler], RequestHandler]: ...

    def put(
        self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any
    ) -> Any:
        """Adds a PUT route; called like ``get``."""
        return self._http("PUT", pattern, options, handler, keywords)

    @overload
    def delete(
        self, pattern: str, options: Mapping[str, Any], handler: RequestHandler, /
    ) -> RequestHandler: ...
    @overload
    def delete(
        self, pattern: str, handler: RequestHandler, /, **options: Any
    ) -> RequestHandler: ...
    @overload
    def delete(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[RequestHandler], RequestHandler]: ...

    def delete(
        self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any
    ) -> Any:
        """Adds a DELETE route; called like ``get``."""
        return self._http("DELETE", pattern, options, handler, keywords)

    @overload
    def any(
        self, pattern: str, options: Mapping[str, Any], handler: RequestHandler, /
    ) -> RequestHandler: ...
    @overload
    def any(self, pattern: str, handler: RequestHandler, /, **options: Any) -> RequestHandler: ...
    @overload
    def any(
        self, pattern: str, options: Mapping[str, Any] | None = None, /, **options_kw: Any
    ) -> Callable[[RequestHandler], RequestHandler]: ...

    def any(
        self, pattern: str, options: Any = None, handler: Any = None, /, **keywords: Any
    ) -> Any:
        """Adds a route for every method that has no route of its own on this path; called like
        ``get``."""
        return self._http("ANY", pattern, options, handler, keywords)

    def _http(
        self, method: str, pattern: str, options: Any, handler: Any, keywords: dict[str, Any]
    ) -> Any:
        if callable(options) and handler is None:
            options, handler = None, options
        settings = http_options(options, keywords)
        for middleware in settings.middlewares:
            check_middleware(middleware)
        _check_pattern(pattern)

        def register(handler: RequestHandler) -> RequestHandler:
            if not callable(handler):
                raise TypeError(
                    f"an HTTP route handler must be callable, got {type(handler).__name__}"
                )
            self._http_routes.append(HttpRoute(method, pattern, handler, settings))
            return handler

        if handler is None:
            return register
        return register(handler)

    def use(self, prefix: Any, router: Router | None = None) -> None:
        """``use(middleware)`` adds a middleware for every route of this router (on a Server: every
        route); ``use(prefix, router)`` mounts ``router`` under ``prefix``; ``use(router)`` mounts it at
        the root."""
        if callable(prefix) and not isinstance(prefix, Router) and router is None:
            check_middleware(prefix)
            self._middlewares.append(prefix)
            return
        if isinstance(prefix, Router) and router is None:
            router, prefix = prefix, "/"
        if not isinstance(router, Router):
            raise TypeError(f"use() mounts a Router, got {type(router).__name__}")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"a mount prefix must be a path starting with '/', got {prefix!r}")
        if router is self:
            raise ValueError("a router cannot be mounted on itself")
        self._mounts.append((prefix, router))

    def _all_ws_routes(
        self, prefix: str = "/", inherited: tuple[Middleware, ...] = ()
    ) -> Iterator[WsRoute]:
        """Every ws route below this router, with its full pattern and the middlewares of the routers
        above it, outermost first."""
        middlewares = inherited + tuple(self._middlewares)
        for route in self._ws_routes:
            pattern = _core.join_prefix(prefix, route.pattern)
            yield WsRoute(pattern, route.handler, route.options, middlewares)
        for mount, router in self._mounts:
            yield from router._all_ws_routes(_core.join_prefix(prefix, mount), middlewares)

    def _all_upgrade_routes(
        self, prefix: str = "/", inherited: tuple[Middleware, ...] = ()
    ) -> Iterator[UpgradeRoute]:
        """Every upgrade route below this router, with its full pattern and all the middlewares that
        run before its handler: the routers' (outermost first), then the route's own."""
        middlewares = inherited + tuple(self._middlewares)
        for route in self._upgrade_routes:
            pattern = _core.join_prefix(prefix, route.pattern)
            chain = middlewares + route.options.middlewares
            yield UpgradeRoute(pattern, route.handler, route.options, chain)
        for mount, router in self._mounts:
            yield from router._all_upgrade_routes(_core.join_prefix(prefix, mount), middlewares)

    def _all_http_routes(
        self, prefix: str = "/", inherited: tuple[Middleware, ...] = ()
    ) -> Iterator[HttpRoute]:
        """Every HTTP route below this router, with its full pattern and all the middlewares that
        run before its handler: the routers' (outermost first), then the route's own."""
        middlewares = inherited + tuple(self._middlewares)
        for route in self._http_routes:
            pattern = _core.join_prefix(prefix, route.pattern)
            chain = middlewares + route.options.middlewares
            yield HttpRoute(route.method, pattern, route.handler, route.options, chain)
        for mount, router in self._mounts:
            yield from router._all_http_routes(_core.join_prefix(prefix, mount), middlewares)


def check_middleware(middleware: object) -> None:
    if not callable(middleware):
        raise TypeError(f"a middleware must be callable, got {type(middleware).__name__}")


def _check_pattern(pattern: object) -> None:
    if not isinstance(pattern, str):
        raise TypeError(f"a route pattern must be a str, got {type(pattern).__name__}")
    _core.check_pattern(pattern)
