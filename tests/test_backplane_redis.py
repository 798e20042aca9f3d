"""Scale-out through Redis: server processes sharing the local Redis (each test under its own
``pubsub_prefix``) deliver each other's publishes exactly once, in order, with MQTT wildcards across
nodes; a node subscribes on Redis only to what its own subscribers need; subscription bursts are
batched; a Redis that goes away and comes back (a private redis-server the test stops) is survived.
Options and failures at start are checked in-process."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

import hyperws

from backplane_nodes import (
    REDIS_URL,
    Node,
    PrivateBroker,
    T,
    delivery_resumes,
    free_port,
    lose_the_broker,
    outage_logged_once,
    require_broker,
    start_nodes,
    stop_nodes,
    subscriptions_settled,
    unique_prefix,
    until,
)


@pytest.fixture
def shared_redis() -> redis.Redis:
    require_broker("127.0.0.1", 6379, "Redis")
    return redis.Redis(host="127.0.0.1", port=6379)


@pytest.fixture
async def three_nodes(shared_redis: redis.Redis) -> AsyncIterator[list[Node]]:
    nodes = await start_nodes(REDIS_URL, 3)
    yield nodes
    await stop_nodes(*nodes)


async def test_a_node_subscribes_on_redis_only_to_what_its_subscribers_need(
    three_nodes: list[Node], shared_redis: redis.Redis
) -> None:
    a, b, c = three_nodes
    first, second = await b.client(), await b.client()
    await first.subscribe("room/1", "room/+")
    await second.subscribe("room/1")
    await subscriptions_settled(b, 2)
    for node in (a, c):
        assert node.stats()["broker_subscriptions"] == 0
    channels = [name.decode() for name in shared_redis.pubsub_channels("*:room/1")]
    assert len(channels) == 1, channels
    channel = channels[0]
    assert shared_redis.pubsub_numsub(channel) == [(channel.encode(), 1)], (
        "one node, one subscription"
    )
    await first.unsubscribe("room/1")
    await subscriptions_settled(b, 2)  # second still needs room/1
    await first.unsubscribe("room/+")
    await subscriptions_settled(b, 1)
    await second.close()
    await subscriptions_settled(b, 0)
    await until(
        lambda: shared_redis.pubsub_numsub(channel) == [(channel.encode(), 0)], "unsubscribed"
    )


async def test_a_burst_of_subscriptions_is_a_few_round_trips() -> None:
    broker = PrivateBroker.redis()
    broker.start()
    [node] = await start_nodes(broker.url, 1)
    try:
        client = redis.Redis(host="127.0.0.1", port=broker.port)
        before = client.info("commandstats").get("cmdstat_subscribe", {}).get("calls", 0)
        subscriber = await node.client()
        for first in range(0, 10_000, 1000):
            await subscriber.subscribe(*(f"user/{i}" for i in range(first, first + 1000)))
        await subscriptions_settled(node, 10_000)
        calls = client.info("commandstats")["cmdstat_subscribe"]["calls"] - before
        # A handler's subscriptions reach the broker task together, when the handler returns, so
        # the 10 messages' 10 000 channels take 20 commands of at most 512 (ceil(10 000 / 512)),
        # plus at most one partly filled command per message however the threads are scheduled.
        assert 20 <= calls <= 20 + 9, f"{calls} SUBSCRIBE commands for 10 000 channels"
        assert len(client.pubsub_channels("*")) == 10_000
        await subscriber.close()
        await subscriptions_settled(node, 0)
        assert client.pubsub_channels("*") == []
    finally:
        await stop_nodes(node)
        broker.stop()


async def test_redis_going_away_and_back() -> None:
    broker = PrivateBroker.redis()
    broker.start()
    a, b = await start_nodes(broker.url, 2)
    try:
        publisher, local, far = await lose_the_broker(broker, a, b)

        broker.start()
        for node in (a, b):
            await node.wait_stats(
                "reconnected and resubscribed",
                lambda s: (
                    s["broker_connected"]
                    and s["broker_reconnects"] == 1
                    and s["broker_subscriptions"] == 2
                ),
            )
        await delivery_resumes(publisher, local, far)
    finally:
        await stop_nodes(a, b)
        broker.stop()
    outage_logged_once(a, b)


async def test_workers_sharing_a_port_reach_each_others_subscribers(
    shared_redis: redis.Redis,
) -> None:
    prefix, port = unique_prefix(), free_port()
    app = Path(__file__).with_name("backplane_workers_app.py")
    supervisor = subprocess.Popen(
        [sys.executable, str(app), REDIS_URL, prefix, str(port), "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    by_worker: dict[int, ClientConnection] = {}
    try:
        deadline = time.monotonic() + T
        while len(by_worker) < 2:  # the kernel picks the worker of each new connection
            assert time.monotonic() < deadline, f"connections reached only workers {set(by_worker)}"
            try:
                client = await connect(f"ws://127.0.0.1:{port}/")
            except OSError:
                await asyncio.sleep(0.05)  # not serving yet
                continue
            pid = int(await asyncio.wait_for(client.recv(), T))
            if pid in by_worker:
                await client.close()
            else:
                by_worker[pid] = client
        subscriber, publisher = by_worker.values()
        await subscriber.send("sub:news")
        assert await asyncio.wait_for(subscriber.recv(), T) == "subscribed"
        channel = f"{prefix}:news".encode()
        await until(lambda: shared_redis.pubsub_numsub(channel) == [(channel, 1)], "subscribed")
        await publisher.send("pub:news:from the other worker")
        assert await asyncio.wait_for(subscriber.recv(), T) == "from the other worker"
    finally:
        for client in by_worker.values():
            await client.close()
        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(supervisor.wait), 3 * T) == 0


async def test_unreachable_at_start(caplog: pytest.LogCaptureFixture) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    required = hyperws.Server(pubsub=closed, pubsub_required=True)
    with pytest.raises(ConnectionError, match="unreachable"):
        await required.listen(0, "127.0.0.1")

    server = hyperws.Server(pubsub=closed, pubsub_prefix=unique_prefix())
    received: list[str] = []

    @server.ws("/")
    def connected(ws: hyperws.Websocket) -> None:
        ws.subscribe("t")
        ws.on("message", lambda message, is_binary: received.append(message))

    with caplog.at_level(logging.WARNING, logger="hyperws"):
        await server.listen(0, "127.0.0.1")
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/") as client:
                await until(lambda: server.num_subscribers("t") == 1, "subscribed")
                assert server.publish("t", "local") is True
                assert await asyncio.wait_for(client.recv(), 5) == "local"
            stats = server.stats()
            assert stats["broker_connected"] is False
            assert stats["broker_dropped"] == 1
        finally:
            await server.close()
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="'amqp'"):
        hyperws.Server(pubsub="amqp://127.0.0.1")
    with pytest.raises(ValueError, match="pubsub_prefix"):
        hyperws.Server(pubsub=REDIS_URL, pubsub_prefix="")
    with pytest.raises(ValueError, match="pubsub_required"):
        hyperws.Server(pubsub=REDIS_URL, pubsub_required=1)  # type: ignore[arg-type]


async def test_without_pubsub_the_broker_counters_stay_zero() -> None:
    server = hyperws.Server()
    await server.listen(0, "127.0.0.1")
    try:
        stats = server.stats()
        assert {k: v for k, v in stats.items() if k.startswith("broker_")} == {
            "broker_published": 0,
            "broker_received": 0,
            "broker_received_dropped": 0,
            "broker_dropped": 0,
            "broker_reconnects": 0,
            "broker_subscriptions": 0,
            "broker_connected": False,
        }
    finally:
        await server.close()
