"""What a broker can cost a node's memory, attacked on Redis and on NATS (private servers) while the node's
VmRSS and VmHWM are read:

- a broker that stops reading while its connections stay open (SIGSTOP): messages for it wait in a queue
  bounded in bytes, past which they are dropped and counted, while local delivery goes on; the stall is
  noticed and logged once, and delivery across nodes resumes when the broker does;
- a broker that sends faster than the node can deliver (another node floods a topic whose every
  message this node must compress): what it cannot deliver in time is dropped and counted on arrival,
  and every message the broker carried is either delivered or counted."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from websockets.exceptions import ConnectionClosed

from backplane_nodes import (
    Client,
    Node,
    PrivateBroker,
    T,
    start_nodes,
    stop_nodes,
    subscriptions_settled,
)

MiB = 1024 * 1024
SIZE = 64 * 1024
QUEUE_BYTES = 16 * MiB  # the documented bound of the queue to the broker, and of the received one
# Over a fresh node's RSS: the queue, the batch the broker client holds (1 MiB, as envelopes and as the
# command it writes), and what the allocator keeps of freed pages for reuse (the warm-up alone, the
# same flood through a working broker, grows a node by 11 to 18 MiB). NATS's client also holds what it
# read before its subscriptions' readers run (it reads until the socket is empty): 16 MiB more.
ALLOWED_GROWTH = {"redis-server": 2 * QUEUE_BYTES, "nats-server": 3 * QUEUE_BYTES}
# How long the broker must stay silent before the node treats it as lost (Redis 2 s without an answer,
# NATS two missed pongs at a 5 s ping interval), and the longest wait for a flood to be taken in.
STALL_NOTICED_WITHIN = 30.0


def name(broker: PrivateBroker) -> str:
    return os.path.basename(broker.command[0])


def memory_kib(node: Node, field: str) -> int:
    with open(f"/proc/{node.process.pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{node.process.pid}/status")


def reset_peak(node: Node) -> None:
    with open(f"/proc/{node.process.pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


async def crosses_again(publisher: Client, local: Client, far: Client) -> None:
    """Publishes until a message reaches the other node again: the other node may notice the stall
    later than the publisher's, and what is published while it subscribes again is lost (at most
    once). What was published during the stall may arrive first, if it was still queued."""
    deadline = time.monotonic() + T
    for n in itertools.count():
        await publisher.publish("news/2", f"after {n}")
        assert await local.take(1) == [f"after {n}"], "local delivery goes on"
        arrived = "during"
        while arrived == "during":
            try:
                arrived = await asyncio.wait_for(far.connection.recv(), 0.2)
            except TimeoutError:
                assert time.monotonic() < deadline, "delivery across nodes resumes"
                break
        else:
            assert arrived == f"after {n}", arrived
            return


@pytest.fixture(params=["redis", "nats"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[PrivateBroker]:
    # Redis closes a subscriber's connection once 32 MiB wait for it (its default limit): lifted here,
    # so that only the node's own bound can hold back what Redis sends (NATS allows 64 MiB).
    unlimited = ("--client-output-buffer-limit", "pubsub 0 0 0")
    broker = PrivateBroker.redis(*unlimited) if request.param == "redis" else PrivateBroker.nats()
    broker.start()
    yield broker
    assert broker.process is not None
    broker.process.send_signal(signal.SIGCONT)
    broker.stop()


async def test_a_stalled_broker_costs_a_node_bounded_memory(broker: PrivateBroker) -> None:
    a, b = await start_nodes(broker.url, 2)
    try:
        publisher, local, far = await a.client(), await a.client(), await b.client()
        await local.subscribe("news/#")
        await far.subscribe("news/#")
        await subscriptions_settled(b, 2)  # news/# is news and news/..., two broker subscriptions
        fresh = memory_kib(a, "VmRSS")
        reset_peak(a)
        # Warm up: the same flood while the broker reads, so the allocator holds what a working node does.
        await publisher.command("flood", topic="flood", size=SIZE, count=QUEUE_BYTES // SIZE)
        await a.wait_stats(
            "the warm-up flood published", lambda s: s["broker_published"] >= QUEUE_BYTES // SIZE
        )
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        before = memory_kib(a, "VmRSS")
        flood = 256 * MiB // SIZE
        # From where users publish: a handler, an asyncio task, another thread.
        for where in ("handler", "task", "thread", "handler"):
            await publisher.command(
                "flood", topic="flood", size=SIZE, count=flood // 4, **{"from": where}
            )
        await publisher.publish("news/1", "during")
        assert await local.take(1) == ["during"], "local delivery goes on"
        peak = memory_kib(a, "VmHWM")
        growth = (peak - fresh) * 1024
        stats = a.stats()
        print(
            f"{name(broker)}: RSS {fresh} KiB fresh, {before} KiB after the"
            f" warm-up, peak {peak} KiB during the stall (+{growth // 1024} KiB over fresh for"
            f" {256 + QUEUE_BYTES // MiB} MiB published), dropped {stats['broker_dropped']}"
        )
        assert growth <= ALLOWED_GROWTH[name(broker)], f"the node grew {growth // 1024} KiB"
        # Most of the flood is dropped: what is not waits in the queue, the client or the kernel's
        # socket buffers (a few MiB, not in the node's RSS).
        least_dropped = (256 * MiB - 2 * QUEUE_BYTES) // SIZE
        assert stats["broker_dropped"] >= least_dropped, stats

        await a.wait_stats(
            "the stall noticed", lambda s: not s["broker_connected"], STALL_NOTICED_WITHIN
        )
        os.kill(broker.process.pid, signal.SIGCONT)
        await a.wait_stats(
            "reconnected", lambda s: s["broker_connected"] and s["broker_reconnects"] == 1
        )
        await crosses_again(publisher, local, far)
    finally:
        await stop_nodes(a, b)
    log = a.log()
    assert log.count("pub/sub broker unreachable") == 1, log
    assert log.count("pub/sub broker reachable again") == 1, log


async def test_a_broker_faster_than_the_node_costs_it_bounded_memory(broker: PrivateBroker) -> None:
    a, b = await start_nodes(broker.url, 2)
    try:
        # A websockets client negotiates permessage-deflate: b compresses each message once for it.
        subscriber = await b.client()
        await subscriber.subscribe("firehose")
        await subscriptions_settled(b, 1)
        fresh = memory_kib(b, "VmRSS")
        reset_peak(b)
        reading = asyncio.create_task(read_forever(subscriber))
        flooder = await a.client()
        # In chunks that a's own queue to the broker holds, each sent before the next.
        chunk, count = QUEUE_BYTES // 2 // SIZE, 256 * MiB // SIZE
        places = itertools.cycle(("handler", "task", "thread"))
        for sent, where in zip(range(chunk, count + 1, chunk), places, strict=False):
            await flooder.command(
                "flood",
                topic="firehose",
                size=SIZE,
                count=chunk,
                random=True,
                compress=True,
                **{"from": where},
            )
            await a.wait_stats(
                f"{sent} messages sent to the broker",
                lambda s, sent=sent: s["broker_published"] + s["broker_dropped"] == sent,
            )
        published = a.stats()["broker_published"]
        await b.wait_stats(
            "every message the broker carried delivered or dropped on arrival",
            lambda s: s["broker_received"] + s["broker_received_dropped"] == published,
            STALL_NOTICED_WITHIN,
        )
        peak = memory_kib(b, "VmHWM")
        reading.cancel()
        stats = b.stats()
        growth = (peak - fresh) * 1024
        print(
            f"{name(broker)}: {published} of {count} messages of 64 KiB"
            f" published; the receiving node delivered {stats['broker_received']} and dropped"
            f" {stats['broker_received_dropped']} on arrival; RSS {fresh} KiB fresh, peak {peak}"
            f" KiB (+{growth // 1024} KiB)"
        )
        assert published == count, "the broker took every message"
        assert stats["broker_reconnects"] == 0, "the broker did not drop the node"
        assert stats["broker_received_dropped"] > 0, "the node was not outpaced: no attack"
        assert growth <= ALLOWED_GROWTH[name(broker)], f"the node grew {growth // 1024} KiB"
    finally:
        await stop_nodes(a, b)


async def read_forever(client: Client) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await client.connection.recv()
