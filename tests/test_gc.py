"""The engine's Python objects under the garbage collector: collections may run at any allocation, while
connections open, deliver and close (a regression test for a crash when it ran mid-construction)."""

from __future__ import annotations

import asyncio
import gc

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import TIMEOUT, url


@pytest.fixture
def aggressive_gc():
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*old)


async def test_connections_work_while_the_collector_runs_constantly(serve, aggressive_gc):
    server = hyperws.Server()

    def on_open(ws: hyperws.Websocket) -> None:
        ws.context["cycle"] = ws  # a reference cycle through the connection, for the collector

        async def on_message(message: str, is_binary: bool) -> None:
            await asyncio.sleep(0)
            ws.send(message)

        ws.on("message", on_message)

    server.ws("/echo", on_open)
    await serve(server)

    async def client(n: int) -> list[str]:
        async with connect(url(server, "/echo")) as c:
            for i in range(20):
                await c.send(f"{n}:{i}")
            return [await asyncio.wait_for(c.recv(), TIMEOUT) for _ in range(20)]

    results = await asyncio.gather(*(client(n) for n in range(10)))
    assert results == [[f"{n}:{i}" for i in range(20)] for n in range(10)]


async def test_per_connection_data_goes_in_context(serve):
    seen = []
    server = hyperws.Server()

    def on_open(ws: hyperws.Websocket) -> None:
        ws.context["user"] = "ada"
        with pytest.raises(AttributeError):
            ws.user = "ada"  # type: ignore[attr-defined]
        seen.append(ws.context)

    server.ws("/x", on_open)
    await serve(server)
    async with connect(url(server, "/x")):
        pass
    assert seen == [{"user": "ada"}]
