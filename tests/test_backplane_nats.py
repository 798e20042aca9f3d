"""Scale-out through NATS: server processes sharing the local NATS server (each test under its own
``pubsub_prefix``) deliver each other's publishes exactly once, in order, with MQTT wildcards mapped to
NATS ones, topic levels that a NATS token cannot hold (escaped), text/binary/compress kept, and broker
subscriptions only for what a node's own subscribers need."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

import hyperws

from backplane_nodes import (
    NATS_URL,
    PrivateBroker,
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


async def test_levels_a_token_cannot_hold_are_escaped() -> None:
    require_broker("127.0.0.1", 4222, "NATS")
    prefix = unique_prefix()
    a, b = await start_nodes(NATS_URL, 2, prefix)
    # A plain NATS client sees the subjects on the wire.
    observer = await nats.connect(NATS_URL)
    seen: list[str] = []

    async def record(message: Msg) -> None:
        seen.append(message.subject)

    await observer.subscribe(f"{prefix}.>", cb=record)
    await observer.flush()
    try:
        publisher, receiver, wildcard = await a.client(), await b.client(), await b.client()
        topics = ["v1.2/a b", "x/*", "x/>", "/lead", "trail/", "a//b", "é/%41"]
        await receiver.subscribe(*topics)
        await wildcard.subscribe("x/+")
        await subscriptions_settled(b, len(topics) + 1)
        for topic in [*topics, "v1/2/a b", "x/%2A"]:
            await publisher.publish(topic, topic)
        assert sorted(await receiver.take(len(topics))) == sorted(topics)
        assert await wildcard.take(3) == ["x/*", "x/>", "x/%2A"]
        await receiver.command("sub", filters=[])
        assert receiver.received == [], "v1/2/a b is not v1.2/a b, x/%2A is not x/*"
        await until(lambda: len(seen) == 9, "the observer saw every publish")
        assert sorted(subject.removeprefix(f"{prefix}.") for subject in seen) == sorted(
            [
                "v1%2E2.a%20b",
                "x.%2A",
                "x.%3E",
                "%.lead",
                "trail.%",
                "a.%.b",
                "%C3%A9.%2541",
                "v1.2.a%20b",
                "x.%252A",
            ]
        )
    finally:
        await observer.close()
        await stop_nodes(a, b)


async def test_subscriptions_follow_local_subscribers() -> None:
    broker = PrivateBroker.nats()
    broker.start()
    prefix = "app"
    a, b, c = await start_nodes(broker.url, 3, prefix)
    try:
        first, second = await b.client(), await b.client()
        await first.subscribe("room/1", "room/+")
        await second.subscribe("room/1")
        await subscriptions_settled(b, 2)
        for node in (a, c):
            assert node.stats()["broker_subscriptions"] == 0
        held = sorted(broker.nats_subscriptions(prefix).values())
        assert held == [[], [], ["app.room.*", "app.room.1"]], "only b subscribes, once per subject"
        await first.unsubscribe("room/1", "room/+")
        await subscriptions_settled(b, 1)
        await second.close()
        await subscriptions_settled(b, 0)
        await until(
            lambda: all(subjects == [] for subjects in broker.nats_subscriptions(prefix).values()),
            "no subscription left on NATS",
        )
    finally:
        await stop_nodes(a, b, c)
        broker.stop()


async def test_nats_going_away_and_back() -> None:
    broker = PrivateBroker.nats()
    broker.start()
    prefix = unique_prefix()
    a, b = await start_nodes(broker.url, 2, prefix)
    try:
        publisher, local, far = await lose_the_broker(broker, a, b)

        broker.start()
        for node in (a, b):
            await node.wait_stats(
                "reconnected",
                lambda s: s["broker_connected"] and s["broker_reconnects"] == 1,
            )
        # The client subscribes again on the new connection by itself.
        await until(
            lambda: (
                sorted(broker.nats_subscriptions(prefix).values())
                == [sorted([f"{prefix}.news", f"{prefix}.news.>"])] * 2
            ),
            "both nodes subscribed again",
        )
        await delivery_resumes(publisher, local, far)
    finally:
        await stop_nodes(a, b)
        broker.stop()
    outage_logged_once(a, b)


async def test_unreachable_at_start() -> None:
    closed = f"nats://127.0.0.1:{free_port()}"
    required = hyperws.Server(pubsub=closed, pubsub_required=True)
    with pytest.raises(ConnectionError, match="unreachable"):
        await required.listen(0, "127.0.0.1")
    server = hyperws.Server(pubsub=closed)
    await server.listen(0, "127.0.0.1")
    try:
        assert server.stats()["broker_connected"] is False
        assert server.publish("t", "nobody here") is False
        assert server.stats()["broker_dropped"] == 1
    finally:
        await asyncio.wait_for(server.close(), 10)
