"""The Python half of the bridge: ordered async listeners and error reporting for the engine."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._core import PendingRequest, PendingUpgrade, Websocket
from ._http import Request, Response

logger = logging.getLogger("hyperws")
access_logger = logging.getLogger("hyperws.access")
connections_logger = logging.getLogger("hyperws.connections")
pubsub_logger = logging.getLogger("hyperws.pubsub")


@dataclass(frozen=True)
class HandlerChain:
    """What answers the requests of one route: middlewares, then the handler (None, for the upgrades
    of a ws route without an upgrade route: accept)."""

    route: str
    middlewares: tuple[Callable[..., Any], ...]
    handler: Callable[[Request, Response], Any] | None
    timeout: float


def connection_extra(connection_id: int, peer: str, route: str | None) -> dict[str, Any]:
    """The attributes that records about a connection carry (``extra=``), for formatters and
    filters: ``connection_id``, ``peer`` (the client's address) and ``route`` (its pattern)."""
    return {"connection_id": connection_id, "peer": peer, "route": route}


def _clf_time(timestamp: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(timestamp))


class Hooks:
    """Called by the engine: ``start_chain`` when a listener returns an awaitable, ``report`` on errors,
    ``upgrade`` for an upgrade that the app decides, ``request`` for a request to an HTTP route,
    ``access`` for each answered request (with the access log on), and ``opened``, ``closed`` and
    ``tls_failed`` (when ``hyperws.connections`` logs at DEBUG)."""

    __slots__ = ("_loop", "_tasks", "requests", "upgrades")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks: set[asyncio.Task[None]] = set()
        self.upgrades: dict[int, HandlerChain] = {}
        self.requests: dict[int, HandlerChain] = {}

    def upgrade(self, pending: PendingUpgrade) -> None:
        """Runs the middlewares and the upgrade handler of ``pending``'s route in a task."""
        self._spawn(self._answer(self.upgrades[pending.route], pending, "upgrade handler"))

    def request(self, pending: PendingRequest) -> None:
        """Runs the middlewares and the handler of ``pending``'s HTTP route in a task."""
        self._spawn(self._answer(self.requests[pending.route], pending, "request handler"))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, chain: HandlerChain, pending: PendingUpgrade | PendingRequest, what: str
    ) -> None:
        request, response = Request(pending), Response(pending)
        try:
            await asyncio.wait_for(_run_chain(chain, request, response), chain.timeout)
        except asyncio.TimeoutError:
            # The engine answers 503 at the same deadline; whichever timer fires first answers.
            if not response.completed:
                with contextlib.suppress(RuntimeError):
                    response.status(503).header("Connection", "close").send(
                        f"the {what} did not answer in time\n"
                    )
        except Exception as error:
            logger.error(
                "error in the %s of connection #%d from %s on %s: %s %s",
                what,
                pending.connection_id,
                request.ip,
                chain.route,
                request.method,
                request.url,
                exc_info=error,
                extra=connection_extra(pending.connection_id, request.ip, chain.route),
            )
            if not response.completed:
                with contextlib.suppress(RuntimeError):  # timed out or the client left meanwhile
                    response.status(500).header("Connection", "close").send("internal server error")

    def start_chain(self, ws: Websocket, first: Awaitable[Any]) -> Chain:
        chain = Chain(self, ws, first)
        task = self._loop.create_task(chain.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return chain

    def drain_future(self, must_wait: bool) -> asyncio.Future[None]:
        """The awaitable of ``ws.drain()``: done now, or (``must_wait``) by the engine at the
        connection's next drain or end, never through its event chain."""
        future: asyncio.Future[None] = self._loop.create_future()
        if not must_wait:
            future.set_result(None)
        return future

    async def stream(self, ws: Websocket, readable: Any, is_binary: bool | None) -> None:
        """``await ws.stream(readable)``: one message, a fragment per chunk, waiting out backpressure."""
        ws._stream_begin()
        try:
            first, binary = True, is_binary
            async for chunk in _chunks(readable):
                if binary is None:
                    binary = not isinstance(chunk, str)
                if len(chunk):
                    while not ws._stream_fragment(chunk, first, False, binary):
                        await ws.drain()
                    first = False
            while not ws._stream_fragment(b"", first, True, True if binary is None else binary):
                await ws.drain()
        finally:
            ws._stream_end()

    def writable(self, ws: Websocket) -> Writable:
        """``ws.writable``."""
        return Writable(ws)

    def message_iterator(self, ws: Websocket) -> MessageIterator:
        """The object behind ``async for message in ws``."""
        return MessageIterator(ws)

    def broker(self, connected: bool, detail: str) -> None:
        """The pub/sub broker became unreachable (``detail`` says why), or reachable again."""
        if connected:
            pubsub_logger.warning("pub/sub broker reachable again: cross-node delivery resumes")
        else:
            pubsub_logger.warning(
                "pub/sub broker unreachable (%s): publishes reach this node's subscribers only "
                "until it is back",
                detail,
            )

    def report(self, ws: Websocket, event: str, error: BaseException) -> None:
        logger.error(
            "error in the %r handler of connection #%d from %s on %s",
            event,
            ws.id,
            ws.ip,
            ws.route,
            exc_info=error,
            extra=connection_extra(ws.id, ws.ip, ws.route),
        )

    def access(
        self,
        connection_id: int,
        peer: str,
        request_line: str,
        status: int,
        size: int,
        referer: str | None,
        user_agent: str | None,
        route: str | None,
        timestamp: float,
    ) -> None:
        """An answered request, as a line of the Combined Log Format on ``hyperws.access``."""
        access_logger.info(
            '%s - - [%s] "%s" %d %s "%s" "%s"',
            peer,
            _clf_time(timestamp),
            request_line,
            status,
            size or "-",
            referer or "-",
            user_agent or "-",
            extra={
                **connection_extra(connection_id, peer, route),
                "status": status,
                "request_line": request_line,
            },
        )

    def opened(self, ws: Websocket) -> None:
        connections_logger.debug(
            "connection #%d from %s opened on %s",
            ws.id,
            ws.ip,
            ws.route,
            extra=connection_extra(ws.id, ws.ip, ws.route),
        )

    def closed(self, ws: Websocket, code: int, reason: str) -> None:
        connections_logger.debug(
            "connection #%d from %s on %s closed: %d %s",
            ws.id,
            ws.ip,
            ws.route,
            code,
            reason or "(no reason)",
            extra={**connection_extra(ws.id, ws.ip, ws.route), "code": code},
        )

    def tls_failed(self, connection_id: int, peer: str, detail: str) -> None:
        connections_logger.debug(
            "connection #%d from %s failed the TLS handshake: %s",
            connection_id,
            peer,
            detail,
            extra=connection_extra(connection_id, peer, None),
        )

    async def wait_idle(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for the running async handlers to finish, then cancels
        the rest (used by a graceful shutdown)."""
        deadline = self._loop.time() + timeout
        while self._tasks:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        if self._tasks:
            logger.warning(
                "cancelling %d async handler(s) still running at shutdown", len(self._tasks)
            )
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _run_chain(chain: HandlerChain, request: Request, response: Response) -> None:
    for middleware in chain.middlewares:
        if response.completed:
            return
        if _takes_next(middleware):
            went_on = asyncio.get_running_loop().create_future()

            def go_on(*_: object, went_on: asyncio.Future[None] = went_on) -> None:
                if not went_on.done():
                    went_on.set_result(None)

            result = middleware(request, response, go_on)
            if inspect.isawaitable(result):
                await result
            if not went_on.done():
                answered = response._when_answered()
                await asyncio.wait({went_on, answered}, return_when=asyncio.FIRST_COMPLETED)
        else:
            result = middleware(request, response)
            if inspect.isawaitable(result):
                await result
    if response.completed:
        return
    if chain.handler is None:
        response.upgrade()
        return
    result = chain.handler(request, response)
    if inspect.isawaitable(result):
        await result


def _takes_next(middleware: Callable[..., Any]) -> bool:
    """Whether a middleware has the ``(request, response, next)`` form."""
    try:
        return len(inspect.signature(middleware).parameters) >= 3
    except (TypeError, ValueError):
        return False


class Chain:
    """The awaitables and events of one connection, run one after another so that an ``async def``
    listener never sees its connection's events out of order."""

    __slots__ = ("_hooks", "_items", "_ws")

    def __init__(self, hooks: Hooks, ws: Websocket, first: Awaitable[Any]) -> None:
        self._hooks = hooks
        self._ws = ws
        # An awaitable, an event (name, args, cost), or the cost of an event whose listeners were called
        # and whose awaitables precede it.
        self._items: deque[Awaitable[Any] | tuple[str, tuple[Any, ...], int] | int] = deque([first])

    def push_awaitable(self, awaitable: Awaitable[Any]) -> None:
        self._items.append(awaitable)

    def push_event(self, event: str, args: tuple[Any, ...], cost: int) -> None:
        self._items.append((event, args, cost))

    def push_cost(self, cost: int) -> None:
        self._items.append(cost)

    def take_messages(self) -> list[tuple[tuple[Any, ...], int]]:
        """Hands the waiting 'message' events' read-side cost over to an ``async for`` that now also
        consumes them: returns their (args, cost); the events stay for the listeners, at no cost."""
        taken: list[tuple[tuple[Any, ...], int]] = []
        for index, item in enumerate(self._items):
            if isinstance(item, tuple) and item[0] == "message":
                taken.append((item[1], item[2]))
                self._items[index] = (item[0], item[1], 0)
        return taken

    def discard_events(self) -> int:
        """Drops the events still waiting (the connection was destroyed); awaitables already queued
        stay. Returns the read-side cost of what was dropped."""
        kept: list[Awaitable[Any]] = []
        cost = 0
        for item in self._items:
            if isinstance(item, tuple):
                cost += item[2]
            elif isinstance(item, int):
                cost += item
            else:
                kept.append(item)
        self._items.clear()
        self._items.extend(kept)
        return cost

    async def run(self) -> None:
        ws, items = self._ws, self._items
        while items:
            item = items.popleft()
            if isinstance(item, int):
                ws._consumed(item)
            elif isinstance(item, tuple):
                event, args, cost = item
                try:
                    for awaitable in ws._call_listeners(event, args):
                        await self._guarded(event, awaitable)
                finally:
                    ws._consumed(cost)
            else:
                await self._guarded("handler", item)
        ws._chain_done()

    async def _guarded(self, event: str, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except (
            Exception
        ) as error:  # a user's handler failed: log it, keep the connection's order going
            self._hooks.report(self._ws, event, error)


class MessageIterator:
    """``async for message in ws``: yields each message in order and ends when the connection closes.

    The engine feeds it directly, not through the connection's chain, so a handler can iterate while it
    is itself the running head of the chain. Messages waiting here still count against the read-side
    bound until the loop body takes them.
    """

    __slots__ = ("_ended", "_items", "_waiter", "_ws")

    def __init__(self, ws: Websocket) -> None:
        self._ws = ws
        self._items: deque[tuple[Any, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False

    def push(self, message: Any, cost: int) -> None:
        self._items.append((message, cost))
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        message, cost = self._items.popleft()
        self._ws._consumed(cost)
        return message


STREAM_CHUNK = 64 * 1024


async def _chunks(readable: Any) -> AsyncIterator[Any]:
    """The chunks of what ``stream()`` accepts: a StreamReader, an async iterable, a binary file
    object (sync, or async with an awaitable ``read``), bytes-like or str, or a sync iterable."""
    if isinstance(readable, asyncio.StreamReader):
        while chunk := await readable.read(STREAM_CHUNK):
            yield chunk
    elif hasattr(readable, "__aiter__"):
        async for chunk in readable:
            yield chunk
    elif isinstance(readable, (bytes, bytearray, memoryview, str)):
        yield readable
    elif hasattr(readable, "read"):
        while True:
            chunk = readable.read(STREAM_CHUNK)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            if not chunk:
                return
            yield chunk
            await asyncio.sleep(0)  # a fast file must not starve the loop
    elif hasattr(readable, "__iter__"):
        for chunk in readable:
            yield chunk
    else:
        raise TypeError(
            "stream() takes an async iterable, an iterable, a file object or an asyncio.StreamReader, "
            f"not {type(readable).__name__}"
        )


class Writable:
    """``ws.writable``: pipe one message in with ``write(chunk)`` (False means: ``await drain()``
    before writing more), end it with ``close()``; or use ``async with ws.writable as w``."""

    __slots__ = ("_binary", "_done", "_started", "_ws")

    def __init__(self, ws: Websocket) -> None:
        self._ws = ws
        self._started = False
        self._done = False
        self._binary: bool | None = None

    def write(self, chunk: Any) -> bool:
        if self._done:
            raise RuntimeError("write() after close(): this message has ended")
        if self._binary is None:
            self._binary = not isinstance(chunk, str)
        if not len(chunk):
            return not self._ws.closed
        first = not self._started
        if first:
            self._ws._stream_begin()
            self._started = True
        return self._ws._stream_fragment(chunk, first, False, self._binary, force=True)

    async def drain(self) -> None:
        await self._ws.drain()

    def close(self) -> None:
        """Ends the message (an empty message when nothing was written)."""
        if self._done:
            return
        self._done = True
        first = not self._started
        if first:
            self._ws._stream_begin()
        try:
            binary = True if self._binary is None else self._binary
            self._ws._stream_fragment(b"", first, True, binary, force=True)
        finally:
            self._ws._stream_end()

    async def __aenter__(self) -> Writable:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
