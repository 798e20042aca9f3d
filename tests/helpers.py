"""Helpers for tests: record what a connection's listeners see and wait for it (with a safety timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

import hyperws

TIMEOUT = 5.0


def url(server: hyperws.Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


class Recorder:
    """Collects ``(event, args)`` tuples from any thread-of-control in the loop; tests await them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()

    def record(self, event: str, *args: Any) -> None:
        self.events.append((event, args))
        self._changed.set()

    def listener(self, event: str):
        return lambda *args: self.record(event, *args)

    def of(self, event: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.events if name == event]

    async def wait(
        self, event: str, count: int = 1, timeout: float = TIMEOUT
    ) -> list[tuple[Any, ...]]:
        """Waits until ``event`` was recorded ``count`` times; returns all its recordings."""

        async def until() -> list[tuple[Any, ...]]:
            while len(self.of(event)) < count:
                self._changed.clear()
                await self._changed.wait()
            return self.of(event)

        try:
            return await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"waited for {count} {event!r} event(s); recorded: {self.events!r}"
            ) from None

    async def first(self, event: str, timeout: float = TIMEOUT) -> tuple[Any, ...]:
        return (await self.wait(event, 1, timeout))[0]


async def until(predicate, timeout: float = TIMEOUT, step: float = 0.01) -> None:
    """Polls ``predicate()`` until true (safety timeout)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(step)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"condition never became true: {predicate}") from None
