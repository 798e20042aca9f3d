"""Scale-out behaviour both brokers share: server processes sharing the local Redis or NATS (each test
under its own ``pubsub_prefix``) deliver each other's publishes exactly once, in order per publisher and
topic, with MQTT wildcards across nodes, and keep text, binary and compression. What differs per broker
(its own view of the subscriptions, escaping, outages) is in test_backplane_redis.py and _nats.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backplane_nodes import (
    NATS_URL,
    REDIS_URL,
    Node,
    require_broker,
    start_nodes,
    stop_nodes,
    subscriptions_settled,
)

BROKERS = {"redis": (REDIS_URL, 6379, "Redis"), "nats": (NATS_URL, 4222, "NATS")}


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def three_nodes(broker: str) -> AsyncIterator[list[Node]]:
    url, port, name = BROKERS[broker]
    require_broker("127.0.0.1", port, name)
    nodes = await start_nodes(url, 3)
    yield nodes
    await stop_nodes(*nodes)


async def test_a_publish_reaches_every_node_once_in_order(three_nodes: list[Node]) -> None:
    a, b, c = three_nodes
    publisher, neighbour = await a.client(), await a.client()
    far = [await b.client(), await c.client(), await c.client()]
    for client in [publisher, neighbour, *far]:
        await client.subscribe("chat/lobby")
    for node in three_nodes:
        await subscriptions_settled(node, 1)
    sent = [f"m{i}" for i in range(200)]
    await publisher.publish("chat/lobby", *sent[:100])
    await publisher.publish("chat/lobby", *sent[100:], via="server")
    for client in [neighbour, *far]:
        assert await client.take(200) == sent
    # ws.publish leaves out only its sender, and only on its own node; server.publish reaches it.
    assert await publisher.take(100) == sent[100:]
    await c.wait_stats("200 received", lambda s: s["broker_received"] == 200)
    for client in [publisher, neighbour, *far]:
        await client.command("sub", filters=[])
        assert client.received == [], "nothing twice"
    stats = a.stats()
    assert (stats["broker_published"], stats["broker_received"]) == (200, 0), "own messages ignored"
    assert stats["broker_connected"] is True


async def test_wildcards_across_nodes_deliver_once(broker: str, three_nodes: list[Node]) -> None:
    a, b, _ = three_nodes
    publisher = await a.client()
    overlapping, single, deep = await b.client(), await b.client(), await b.client()
    await overlapping.subscribe("sensors/+/temp", "sensors/#", "sensors/k1/temp")
    await single.subscribe("sensors/+/temp")
    await deep.subscribe("sensors/#")
    # Redis: sensors/+/temp, sensors, sensors/*, sensors/k1/temp; NATS: the same as subjects.
    await subscriptions_settled(b, 4)
    await publisher.publish("sensors/k1/temp", "t1")
    await publisher.publish("sensors/k1/humidity", "h1")
    await publisher.publish("sensors", "s")
    await publisher.publish("sensors/k2/temp/x", "deep")
    await publisher.publish("elsewhere", "never")
    await publisher.publish("sensors/k3/temp", "t3")
    everything = ["t1", "h1", "s", "deep", "t3"]
    if broker == "redis":  # one connection: order is kept across topics too
        assert await overlapping.take(5) == everything
        assert await deep.take(5) == everything
    else:  # topics carried by different NATS subscriptions may interleave
        assert sorted(await overlapping.take(5)) == sorted(everything)
        assert sorted(await deep.take(5)) == sorted(everything)
    assert await single.take(2) == ["t1", "t3"]
    await b.wait_stats("5 received", lambda s: s["broker_received"] == 5)
    for client in (overlapping, single, deep):
        await client.command("sub", filters=[])
        assert client.received == [], "nothing twice, nothing unsubscribed"


async def test_text_binary_and_compress_survive(three_nodes: list[Node]) -> None:
    a, b, _ = three_nodes
    publisher, receiver = await a.client(), await b.client()
    await receiver.subscribe("kinds")
    await subscriptions_settled(b, 1)
    await publisher.publish("kinds", "text")
    await publisher.publish("kinds", "bytes", binary=True)
    await publisher.publish("kinds", "squeezed " * 100, compress=True)
    await publisher.publish("kinds", "squeezed bytes", binary=True, compress=True)
    assert await receiver.take(4) == ["text", b"bytes", "squeezed " * 100, b"squeezed bytes"]
