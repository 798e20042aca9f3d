"""A broker that stops reading while its connections stay open (a stopped or hung redis-server or
nats-server, SIGSTOP here) costs a node a bounded amount of memory: messages for it wait in a queue
bounded in bytes, past which they are dropped and counted, while local delivery goes on. The node's
memory is read (VmRSS, VmHWM) fresh and during a flood of 256 MiB of publishes; the stall is noticed and logged
once, and delivery across nodes resumes when the broker does."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from backplane_nodes import Node, PrivateBroker, start_nodes, stop_nodes, subscriptions_settled

MiB = 1024 * 1024
SIZE = 64 * 1024
QUEUE_BYTES = 16 * MiB  # the documented bound of the queue to the broker
# Over a fresh node's RSS: the queue, the batch the broker client holds (1 MiB, as envelopes and as the
# command it writes), and the allocator's slack.
ALLOWED_GROWTH = QUEUE_BYTES + 8 * MiB
# How long the broker must stay silent before the node treats it as lost: Redis 5 s without an answer,
# NATS two missed pongs at a 5 s ping interval.
STALL_NOTICED_WITHIN = 30.0


def memory_kib(node: Node, field: str) -> int:
    with open(f"/proc/{node.process.pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{node.process.pid}/status")


def reset_peak(node: Node) -> None:
    with open(f"/proc/{node.process.pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


@pytest.fixture(params=["redis", "nats"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[PrivateBroker]:
    broker = PrivateBroker.redis() if request.param == "redis" else PrivateBroker.nats()
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
        for _ in range(4):
            await publisher.command("flood", topic="flood", size=SIZE, count=flood // 4)
        await publisher.publish("news/1", "during")
        assert await local.take(1) == ["during"], "local delivery goes on"
        peak = memory_kib(a, "VmHWM")
        growth = (peak - fresh) * 1024
        stats = a.stats()
        print(
            f"{os.path.basename(broker.command[0])}: RSS {fresh} KiB fresh, {before} KiB after the"
            f" warm-up, peak {peak} KiB during the stall (+{growth // 1024} KiB over fresh for"
            f" {256 + QUEUE_BYTES // MiB} MiB published), dropped {stats['broker_dropped']}"
        )
        assert growth <= ALLOWED_GROWTH, f"the node grew {growth // 1024} KiB"
        # Most of the flood is dropped: what is not waits in the queue, the client or the kernel's
        # socket buffers (a few MiB, not in the node's RSS).
        least_dropped = (256 * MiB - 2 * QUEUE_BYTES) // SIZE
        assert stats["broker_dropped"] >= least_dropped, stats

        await a.wait_stats(
            "the stall noticed", lambda s: not s["broker_connected"], STALL_NOTICED_WITHIN
        )
        print(a.log())
        os.kill(broker.process.pid, signal.SIGCONT)
        await a.wait_stats(
            "reconnected", lambda s: s["broker_connected"] and s["broker_reconnects"] == 1
        )
        await publisher.publish("news/2", "after")
        assert await local.take(1) == ["after"]
        assert await far.take(1) == ["after"], "delivery across nodes resumes"
    finally:
        await stop_nodes(a, b)
    log = a.log()
    assert log.count("pub/sub broker unreachable") == 1, log
    assert log.count("pub/sub broker reachable again") == 1, log
