"""Pub/sub: ws.subscribe/unsubscribe/is_subscribed/topics, ws.publish (everyone but the sender) and
server.publish (everyone; from the loop, a task or another thread), MQTT filters (exact, ``+``, ``#``),
a connection matched by several filters receiving once, per-publisher ordering, message types, malformed
filters and topics, and subscriptions ending with the connection (10 000 connections leave nothing).

"Nothing else arrived" is checked without waiting: after the publishes, the test sends a marker to the
same connection with ``ws.send``; a connection's output is one queue, so whatever a publish queued to it
arrives before the marker."""

from __future__ import annotations

import asyncio
import itertools
import resource
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import hyperws

from helpers import Recorder, until, url
from rawws import CLOSE, RawWebSocket

T = 5  # safety net (seconds) per await, never a speed assertion
MARKER = "<<marker>>"


# -- helpers -------------------------------------------------------------------------------------


@dataclass
class Peer:
    """A client connection and the server's Websocket for it."""

    client: ClientConnection
    ws: hyperws.Websocket

    async def recv(self) -> str | bytes:
        return await asyncio.wait_for(self.client.recv(), T)

    async def recv_n(self, count: int) -> list[str | bytes]:
        return [await self.recv() for _ in range(count)]

    async def rest(self) -> list[str | bytes]:
        """Everything that arrives before a marker sent now (queued after all earlier output)."""
        assert self.ws.send(MARKER) is True
        received = []
        while (message := await self.recv()) != MARKER:
            received.append(message)
        return received


class Hub:
    """A server with route ``/ps`` whose open handler hands each Websocket to the test."""

    def __init__(self) -> None:
        self.server = hyperws.Server()
        self.sockets: list[hyperws.Websocket] = []
        self.clients: list[ClientConnection] = []
        self.server.ws("/ps", self.sockets.append, idle_timeout=0)

    async def peer(self) -> Peer:
        client = await connect(url(self.server, "/ps"), open_timeout=T, max_size=None)
        self.clients.append(client)
        await until(lambda: len(self.sockets) == len(self.clients))
        return Peer(client, self.sockets[-1])

    async def peers(self, count: int) -> list[Peer]:
        return [await self.peer() for _ in range(count)]

    async def aclose(self) -> None:
        for client in self.clients:
            await asyncio.wait_for(client.close(), T)


@pytest.fixture
async def hub(serve):
    hub = Hub()
    await serve(hub.server)
    yield hub
    await hub.aclose()


async def delivered_to(peers: list[Peer]) -> list[list[str | bytes]]:
    """For each peer, what arrived since the last check (in order)."""
    return [await peer.rest() for peer in peers]


def numbered(count: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


# -- exact topics and wildcards ------------------------------------------------------------------


async def test_exact_topic_reaches_only_its_subscribers(hub):
    lobby1, lobby2, other, parent, nobody = await hub.peers(5)
    assert lobby1.ws.subscribe("chat/lobby") is True
    assert lobby2.ws.subscribe("chat/lobby") is True
    assert other.ws.subscribe("chat/other") is True
    assert parent.ws.subscribe("chat") is True

    assert hub.server.num_subscribers("chat/lobby") == 2
    assert hub.server.num_subscribers("chat/other") == 1
    assert hub.server.num_subscribers("chat") == 1
    assert hub.server.num_subscribers("chat/lobby/x") == 0
    assert hub.server.num_subscribers("Chat/Lobby") == 0  # case-sensitive

    assert hub.server.publish("chat/lobby", "to the lobby") is True
    assert hub.server.publish("chat/other", "to other") is True
    assert hub.server.publish("chat", "to chat") is True
    assert hub.server.publish("chat/lobby/x", "deeper") is False
    assert hub.server.publish("chat/lobb", "prefix") is False
    assert hub.server.publish("Chat/Lobby", "case") is False

    assert await delivered_to([lobby1, lobby2, other, parent, nobody]) == [
        ["to the lobby"],
        ["to the lobby"],
        ["to other"],
        ["to chat"],
        [],
    ]


# Each case: (filter per subscriber, published topic, indexes of the subscribers it reaches).
WILDCARD_CASES = [
    # '+' is exactly one level
    (["a/+/c", "+", "a/+", "+/+/+"], "a/b/c", {0, 3}),
    (["a/+/c", "+", "a/+", "+/+/+"], "a/xyz/c", {0, 3}),
    (["a/+/c", "+", "a/+", "+/+/+"], "a/b/d", {3}),
    (["a/+/c", "+", "a/+", "+/+/+"], "a", {1}),
    (["a/+/c", "+", "a/+", "+/+/+"], "a/b", {2}),
    (["a/+/c", "+", "a/+", "+/+/+"], "a/b/c/d", set()),
    # '#' is any number of remaining levels, including none
    (["a/#", "#", "a/b/#", "+/#"], "a", {0, 1, 3}),
    (["a/#", "#", "a/b/#", "+/#"], "a/b", {0, 1, 2, 3}),
    (["a/#", "#", "a/b/#", "+/#"], "a/b/c/d/e", {0, 1, 2, 3}),
    (["a/#", "#", "a/b/#", "+/#"], "b", {1, 3}),
    (["a/#", "#", "a/b/#", "+/#"], "ab", {1, 3}),
    # empty levels are levels; non-ASCII levels are plain levels
    (["a//b", "a/+/b", "/", "+/+", "/a", "a/"], "a//b", {0, 1}),
    (["a//b", "a/+/b", "/", "+/+", "/a", "a/"], "/", {2, 3}),
    (["a//b", "a/+/b", "/", "+/+", "/a", "a/"], "/a", {3, 4}),
    (["a//b", "a/+/b", "/", "+/+", "/a", "a/"], "a/", {3, 5}),
    (["a//b", "a/+/b", "/", "+/+", "/a", "a/"], "a", set()),
    (["é/+", "é/ü", "+/ü"], "é/ü", {0, 1, 2}),
]


@pytest.mark.parametrize(("filters", "topic", "reached"), WILDCARD_CASES)
async def test_wildcard_filters(hub, filters, topic, reached):
    peers = await hub.peers(len(filters))
    for peer, topic_filter in zip(peers, filters, strict=True):
        assert peer.ws.subscribe(topic_filter) is True
    assert hub.server.num_subscribers(topic) == len(reached)
    assert hub.server.publish(topic, f"on {topic}") is (len(reached) > 0)
    got = await delivered_to(peers)
    assert got == [[f"on {topic}"] if i in reached else [] for i in range(len(filters))]


async def test_hash_level_matches_its_parent_topic(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("sport/tennis/#")
    for topic in ["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"]:
        assert hub.server.num_subscribers(topic) == 1
        assert hub.server.publish(topic, topic) is True
    assert hub.server.publish("sport", "parent of the parent") is False
    assert hub.server.publish("sport/tennisx", "sibling") is False
    assert await peer.rest() == [
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
    ]


async def test_overlapping_subscriptions_deliver_once(hub):
    many, some, other = await hub.peers(3)
    for topic_filter in ["a/b", "a/+", "a/#", "#", "+/b", "+/+"]:
        assert many.ws.subscribe(topic_filter) is True
    some.ws.subscribe("a/b")
    some.ws.subscribe("+/b")
    other.ws.subscribe("x")

    assert hub.server.num_subscribers("a/b") == 2  # connections, not subscriptions
    assert hub.server.num_subscribers("a") == 1  # through 'a/#' and '#'
    assert hub.server.num_subscribers("x") == 2  # through '#'
    assert hub.server.stats()["subscriptions"] == 9

    assert hub.server.publish("a/b", "once") is True
    assert hub.server.publish("a", "a") is True
    assert hub.server.publish("x", "x") is True
    assert await delivered_to([many, some, other]) == [["once", "a", "x"], ["once"], ["x"]]

    # ws.publish to the overlapping topic: the sender is excluded, the others still receive once
    assert some.ws.publish("a/b", "from some") is True
    assert await delivered_to([many, some, other]) == [["from some"], [], []]


# -- sender exclusion ----------------------------------------------------------------------------


async def test_ws_publish_reaches_everyone_but_the_sender(hub):
    alice, bob, carol = peers = await hub.peers(3)
    for peer in peers:
        assert peer.ws.subscribe("room/1") is True
        peer.ws.on("message", lambda message, is_binary, ws=peer.ws: ws.publish("room/1", message))

    await alice.client.send("hello from alice")
    assert await bob.recv() == "hello from alice"
    assert await carol.recv() == "hello from alice"
    assert await alice.rest() == []  # the handler published before bob received: not to alice

    assert alice.ws.publish("room/1", "direct") is True
    assert await delivered_to(peers) == [[], ["direct"], ["direct"]]


async def test_ws_publish_when_only_the_sender_is_subscribed(hub):
    alone, outsider = await hub.peers(2)
    alone.ws.subscribe("room")
    assert hub.server.num_subscribers("room") == 1
    assert alone.ws.publish("room", "echo?") is False
    # a connection that is not subscribed may publish: it reaches the subscribers
    assert outsider.ws.publish("room", "from outside") is True
    assert await delivered_to([alone, outsider]) == [["from outside"], []]


async def test_ws_publish_excludes_the_sender_through_wildcards_too(hub):
    sender, receiver = await hub.peers(2)
    sender.ws.subscribe("#")
    sender.ws.subscribe("chat/+")
    receiver.ws.subscribe("chat/+")
    assert sender.ws.publish("chat/lobby", "hi") is True
    assert await delivered_to([sender, receiver]) == [[], ["hi"]]


async def test_server_publish_reaches_the_sender_of_ws_publish_too(hub):
    first, second = await hub.peers(2)
    first.ws.subscribe("news")
    second.ws.subscribe("news")
    assert first.ws.publish("news", "from first") is True
    assert hub.server.publish("news", "from the server") is True
    assert await delivered_to([first, second]) == [
        ["from the server"],
        ["from first", "from the server"],
    ]


# -- server.publish from a task and from other threads -------------------------------------------


async def test_server_publish_from_a_task(hub):
    peers = await hub.peers(2)
    for peer in peers:
        peer.ws.subscribe("ticks")

    async def ticker() -> list[bool]:
        results = []
        for i in range(200):
            results.append(hub.server.publish("ticks", f"tick {i}"))
            if i % 10 == 0:
                await asyncio.sleep(0)
        return results

    results = await asyncio.wait_for(asyncio.create_task(ticker()), T)
    assert results == [True] * 200
    for peer in peers:
        assert await peer.recv_n(200) == numbered(200, "tick ")
    assert await delivered_to(peers) == [[], []]


async def test_server_publish_from_another_thread(hub):
    count = 1000
    peers = await hub.peers(3)
    for peer in peers:
        peer.ws.subscribe("feed/+")
    results: list[bool] = []
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for i in range(count):
                results.append(hub.server.publish("feed/prices", f"p{i}"))
        except BaseException as error:  # reported by the test
            errors.append(error)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    received = await asyncio.wait_for(asyncio.gather(*(p.recv_n(count) for p in peers)), 30)
    await asyncio.wait_for(asyncio.to_thread(thread.join), T)
    assert errors == []
    assert results == [True] * count
    assert received == [numbered(count, "p")] * 3
    assert await delivered_to(peers) == [[], [], []]


async def test_server_publish_from_run_in_executor(hub):
    peers = await hub.peers(2)
    peers[0].ws.subscribe("jobs/done")
    peers[1].ws.subscribe("jobs/#")
    loop = asyncio.get_running_loop()

    def finish(job: int) -> bool:
        return hub.server.publish("jobs/done", f"job {job} done".encode())

    results = await asyncio.wait_for(
        asyncio.gather(*(loop.run_in_executor(None, finish, job) for job in range(20))), T
    )
    assert results == [True] * 20
    expected = sorted(f"job {job} done".encode() for job in range(20))
    for peer in peers:
        got = await peer.recv_n(20)
        assert all(type(message) is bytes for message in got)
        assert sorted(got) == expected  # one of each; the executor's threads race each other
    assert await delivered_to(peers) == [[], []]


async def test_server_publish_from_a_thread_returns_false_without_subscribers(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("elsewhere")
    result = await asyncio.wait_for(asyncio.to_thread(hub.server.publish, "nobody/listens", "x"), T)
    assert result is False
    assert await peer.rest() == []


# -- ordering ------------------------------------------------------------------------------------


def ordered_payload(i: int) -> str | bytes:
    """Numbered messages of mixed types and sizes (small ones are coalesced, large ones shared)."""
    if i % 100 == 99:
        return f"{i}:".encode() + b"x" * 10_000
    if i % 7 == 3:
        return f"{i}".encode()
    return f"{i}"


async def test_one_thousand_messages_arrive_in_order_at_three_subscribers(hub):
    count = 1000
    peers = await hub.peers(3)
    for peer in peers:
        peer.ws.subscribe("ordered")
    for i in range(count):
        assert hub.server.publish("ordered", ordered_payload(i)) is True
    expected = [ordered_payload(i) for i in range(count)]
    received = await asyncio.wait_for(asyncio.gather(*(p.recv_n(count) for p in peers)), 30)
    assert received == [expected] * 3


async def test_client_driven_ws_publish_keeps_the_order(hub):
    count = 1000
    publisher, *subscribers = await hub.peers(4)
    publisher.ws.on("message", lambda message, is_binary: publisher.ws.publish("ordered", message))
    for peer in subscribers:
        peer.ws.subscribe("ordered")
    for i in range(count):
        await publisher.client.send(ordered_payload(i))
    expected = [ordered_payload(i) for i in range(count)]
    received = await asyncio.wait_for(asyncio.gather(*(p.recv_n(count) for p in subscribers)), 30)
    assert received == [expected] * 3


async def test_send_and_publish_arrive_in_call_order(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("mixed")
    expected = []
    for i in range(300):
        if i % 3:
            assert hub.server.publish("mixed", f"pub {i}") is True
            expected.append(f"pub {i}")
        else:
            assert peer.ws.send(f"send {i}") is True
            expected.append(f"send {i}")
    assert await peer.rest() == expected


async def test_concurrent_publishers_each_keep_their_order(hub):
    count = 1000
    peers = await hub.peers(3)
    for peer in peers:
        peer.ws.subscribe("two/publishers")

    def from_thread() -> None:
        for i in range(count):
            hub.server.publish("two/publishers", f"thread {i}")

    thread = threading.Thread(target=from_thread, daemon=True)
    thread.start()
    for i in range(count):
        hub.server.publish("two/publishers", f"loop {i}")
        if i % 50 == 0:
            await asyncio.sleep(0)
    received = await asyncio.wait_for(asyncio.gather(*(p.recv_n(2 * count) for p in peers)), 30)
    await asyncio.wait_for(asyncio.to_thread(thread.join), T)
    for messages in received:
        assert [m for m in messages if m.startswith("thread ")] == numbered(count, "thread ")
        assert [m for m in messages if m.startswith("loop ")] == numbered(count, "loop ")
    assert await delivered_to(peers) == [[], [], []]


# -- publishes inside a batch (a message handler or ws.atomic) -------------------------------------
# Plain publishes made one after another while a batch runs are fanned out together; whatever a user can
# observe is as if each had gone out at once.


async def test_publishes_sends_and_publishes_of_others_in_one_batch_keep_call_order(hub):
    first, second = await hub.peers(2)
    first.ws.subscribe("t")
    second.ws.subscribe("t")
    second.ws.subscribe("u")

    def batch() -> None:
        assert hub.server.publish("t", "p0") is True
        assert hub.server.publish("t", "p1") is True
        assert first.ws.send("direct to first") is True
        assert hub.server.publish("t", "p2") is True
        assert first.ws.publish("t", "from first") is True  # not to first itself
        assert hub.server.publish("u", "on u") is True
        assert hub.server.publish("t", "p3") is True
        assert hub.server.publish("t", b"binary p4") is True

    first.ws.atomic(batch)
    assert await delivered_to([first, second]) == [
        ["p0", "p1", "direct to first", "p2", "p3", b"binary p4"],
        ["p0", "p1", "p2", "from first", "on u", "p3", b"binary p4"],
    ]


async def test_subscription_changes_inside_a_batch_apply_in_call_order(hub):
    early, late = await hub.peers(2)
    early.ws.subscribe("news")

    def batch() -> None:
        assert hub.server.publish("news", "before") is True
        assert late.ws.subscribe("news") is True
        assert hub.server.publish("news", "both") is True
        assert early.ws.unsubscribe("news") is True
        assert hub.server.publish("news", "late only") is True
        assert late.ws.unsubscribe("news") is True
        assert hub.server.publish("news", "nobody") is False

    early.ws.atomic(batch)
    assert await delivered_to([early, late]) == [["before", "both"], ["both", "late only"]]


async def test_publish_inside_a_batch_returns_whether_it_reaches_anyone(hub):
    alone, listener = await hub.peers(2)
    alone.ws.subscribe("own")
    listener.ws.subscribe("shared")

    def batch() -> list[bool]:
        return [
            hub.server.publish("empty", "x"),
            alone.ws.publish("own", "only the sender is subscribed"),
            hub.server.publish("shared", "y"),
            hub.server.publish("shared", "z"),
            alone.ws.publish("shared", "w"),
        ]

    assert alone.ws.atomic(batch) == [False, False, True, True, True]
    with pytest.raises(ValueError):
        alone.ws.atomic(lambda: hub.server.publish("bad/#", "x"))
    assert await delivered_to([alone, listener]) == [[], ["y", "z", "w"]]


async def test_buffered_and_stats_see_publishes_held_in_a_batch(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("t")
    await until(lambda: peer.ws.buffered == 0)
    before = hub.server.stats()["messages_out"]

    def batch() -> tuple[int, int]:
        hub.server.publish("t", "x" * 100)
        hub.server.publish("t", "y" * 100)
        # the writer is woken when the batch ends: nothing of it can have been written yet
        return peer.ws.buffered, hub.server.stats()["messages_out"] - before

    assert peer.ws.atomic(batch) == (2 * 102, 2)
    assert await peer.recv_n(2) == ["x" * 100, "y" * 100]


async def test_a_long_batch_of_publishes_arrives_whole_and_in_order(hub):
    count = 500  # 500 KiB: more than one run holds
    peers = await hub.peers(2)
    for peer in peers:
        peer.ws.subscribe("bulk")
    expected = [f"{i:04d}" + "." * 1020 for i in range(count)]

    def batch() -> None:
        for message in expected:
            hub.server.publish("bulk", message)

    peers[0].ws.atomic(batch)
    received = await asyncio.wait_for(asyncio.gather(*(p.recv_n(count) for p in peers)), 30)
    assert received == [expected, expected]


async def test_publishes_to_two_servers_in_one_batch_reach_each_its_own(serve):
    hubs = [Hub(), Hub()]
    for each in hubs:
        await serve(each.server)
    try:
        (a,) = await hubs[0].peers(1)
        (b,) = await hubs[1].peers(1)
        a.ws.subscribe("t")
        b.ws.subscribe("t")

        def batch() -> None:
            hubs[0].server.publish("t", "a1")
            hubs[1].server.publish("t", "b1")
            hubs[0].server.publish("t", "a2")

        a.ws.atomic(batch)
        assert await delivered_to([a, b]) == [["a1", "a2"], ["b1"]]
    finally:
        for each in hubs:
            await each.aclose()


# -- unsubscribe, topics, is_subscribed ----------------------------------------------------------


async def test_unsubscribe_stops_delivery_and_reports_changes(hub):
    leaving, staying = await hub.peers(2)
    assert leaving.ws.subscribe("news") is True
    assert staying.ws.subscribe("news") is True
    assert hub.server.publish("news", "before") is True

    assert leaving.ws.unsubscribe("news") is True
    assert leaving.ws.unsubscribe("news") is False
    assert leaving.ws.unsubscribe("never/subscribed") is False
    assert leaving.ws.unsubscribe("news/+") is False
    assert hub.server.num_subscribers("news") == 1
    assert hub.server.stats()["subscriptions"] == 1

    assert hub.server.publish("news", "after") is True
    assert await delivered_to([leaving, staying]) == [["before"], ["before", "after"]]

    assert staying.ws.unsubscribe("news") is True
    assert hub.server.num_subscribers("news") == 0
    assert hub.server.publish("news", "nobody") is False
    assert await delivered_to([leaving, staying]) == [[], []]
    assert hub.server.stats()["subscriptions"] == 0

    # subscribing again works
    assert leaving.ws.subscribe("news") is True
    assert hub.server.publish("news", "again") is True
    assert await delivered_to([leaving, staying]) == [["again"], []]


async def test_unsubscribe_one_overlapping_filter_keeps_the_others(hub):
    (peer,) = await hub.peers(1)
    for topic_filter in ["a/b", "a/+", "a/#"]:
        peer.ws.subscribe(topic_filter)
    assert peer.ws.unsubscribe("a/b") is True
    assert hub.server.publish("a/b", "via a/+ or a/#") is True
    assert peer.ws.unsubscribe("a/+") is True
    assert hub.server.publish("a/b", "via a/#") is True
    assert hub.server.publish("a", "a via a/#") is True
    assert peer.ws.unsubscribe("a/#") is True
    assert hub.server.publish("a/b", "none") is False
    assert await peer.rest() == ["via a/+ or a/#", "via a/#", "a via a/#"]
    assert peer.ws.topics == []


async def test_unsubscribe_matches_the_filter_string_not_the_topics_it_covers(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("a/+")
    assert peer.ws.unsubscribe("a/b") is False  # a topic covered by 'a/+' is not the filter
    assert peer.ws.unsubscribe("a/#") is False
    assert peer.ws.is_subscribed("a/+") is True
    assert hub.server.publish("a/b", "still") is True
    assert await peer.rest() == ["still"]


async def test_topics_and_is_subscribed(hub):
    first, second = await hub.peers(2)
    assert first.ws.topics == []
    for topic_filter in ["z", "a/#", "m/+/n", "/", "a//b", "é/ü"]:
        assert first.ws.subscribe(topic_filter) is True
    assert first.ws.subscribe("z") is False  # already: the order does not change
    assert first.ws.topics == ["z", "a/#", "m/+/n", "/", "a//b", "é/ü"]
    assert isinstance(first.ws.topics, list)

    assert first.ws.is_subscribed("a/#") is True
    assert first.ws.is_subscribed("m/+/n") is True
    assert first.ws.is_subscribed("a") is False  # matched by 'a/#', but not a filter it holds
    assert first.ws.is_subscribed("m/x/n") is False
    assert first.ws.is_subscribed("a/+") is False
    assert first.ws.is_subscribed("Z") is False

    assert first.ws.unsubscribe("a/#") is True
    assert first.ws.subscribe("a/#") is True  # re-subscribed: now the last one
    assert first.ws.topics == ["z", "m/+/n", "/", "a//b", "é/ü", "a/#"]

    second.ws.subscribe("q")
    assert second.ws.topics == ["q"]
    assert second.ws.is_subscribed("z") is False
    assert first.ws.is_subscribed("q") is False
    assert hub.server.stats()["subscriptions"] == 7


# -- subscriptions end with the connection -------------------------------------------------------


async def test_subscriptions_end_when_the_client_closes(hub):
    leaving, staying = await hub.peers(2)
    rec = Recorder()
    leaving.ws.on("close", rec.listener("close"))
    for topic_filter in ["room/1", "room/+", "#"]:
        leaving.ws.subscribe(topic_filter)
    staying.ws.subscribe("room/1")
    assert hub.server.num_subscribers("room/1") == 2
    assert hub.server.stats()["subscriptions"] == 4

    await asyncio.wait_for(leaving.client.close(), T)
    await rec.wait("close")
    assert hub.server.stats()["subscriptions"] == 1
    assert hub.server.num_subscribers("room/1") == 1
    assert hub.server.num_subscribers("room/2") == 0
    assert hub.server.num_subscribers("anything") == 0
    assert leaving.ws.topics == []
    assert leaving.ws.is_subscribed("room/1") is False
    assert hub.server.publish("room/2", "nobody left") is False
    assert hub.server.publish("room/1", "still here") is True
    assert await staying.rest() == ["still here"]


async def test_subscriptions_end_when_the_server_closes_or_destroys_the_connection(hub):
    closed, destroyed, staying = await hub.peers(3)
    rec = Recorder()
    closed.ws.on("close", rec.listener("close"))
    destroyed.ws.on("close", rec.listener("close"))
    for peer in (closed, destroyed, staying):
        peer.ws.subscribe("t")
        peer.ws.subscribe(f"own/{id(peer)}")
    closed.ws.close(4000, "bye")
    destroyed.ws.destroy()
    await rec.wait("close", 2)
    assert hub.server.stats()["subscriptions"] == 2
    assert hub.server.num_subscribers("t") == 1
    assert hub.server.num_subscribers(f"own/{id(closed)}") == 0
    assert hub.server.num_subscribers(f"own/{id(destroyed)}") == 0
    assert closed.ws.topics == [] and destroyed.ws.topics == []


async def test_subscribe_on_a_closed_websocket_returns_false(hub):
    (peer,) = await hub.peers(1)
    rec = Recorder()
    in_close_handler: list[Any] = []

    def on_close(code, message):
        in_close_handler.append(peer.ws.subscribe("from/close/handler"))
        rec.record("close", code, message)

    peer.ws.on("close", on_close)
    peer.ws.subscribe("before")
    await asyncio.wait_for(peer.client.close(), T)
    await rec.wait("close")
    assert in_close_handler == [False]

    assert peer.ws.closed is True
    assert peer.ws.subscribe("after/close") is False
    assert peer.ws.subscribe("before") is False
    assert peer.ws.unsubscribe("before") is False
    assert peer.ws.is_subscribed("after/close") is False
    assert peer.ws.topics == []
    assert hub.server.stats()["subscriptions"] == 0
    assert hub.server.num_subscribers("after/close") == 0
    with pytest.raises(ValueError):  # a malformed filter is still an error
        peer.ws.subscribe("a/#/b")


async def test_subscribe_while_the_close_handshake_runs_returns_false(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("t")
    peer.ws.close(1000, "done")  # the close frame is queued: nothing more can be sent
    assert peer.ws.subscribe("new/topic") is False
    assert hub.server.publish("t", "too late") is False  # the only subscriber is closing
    with pytest.raises(ConnectionClosed) as closing:
        await peer.recv()
    assert closing.value.rcvd is not None and closing.value.rcvd.code == 1000
    await until(lambda: hub.server.stats()["subscriptions"] == 0)
    assert peer.ws.topics == []


async def test_publish_from_the_close_handler_reaches_the_others(hub):
    leaving, *members = await hub.peers(3)
    for peer in (leaving, *members):
        peer.ws.subscribe("room/presence")
    published: list[bool] = []
    leaving.ws.on(
        "close",
        lambda code, message: published.append(leaving.ws.publish("room/presence", "left")),
    )
    await asyncio.wait_for(leaving.client.close(), T)
    for peer in members:
        assert await peer.recv() == "left"
    assert published == [True]


# -- malformed filters and topics ----------------------------------------------------------------


MALFORMED_FILTERS = [
    ("a/#/b", "last level"),
    ("#/a", "last level"),
    ("#/", "last level"),
    ("a+/b", "whole level"),
    ("a/b#", "whole level"),
    ("+a", "whole level"),
    ("a/+b/c", "whole level"),
    ("##", "whole level"),
    ("++", "whole level"),
    ("", "empty"),
]


@pytest.mark.parametrize(("topic_filter", "problem"), MALFORMED_FILTERS)
async def test_malformed_filters_raise_value_error(hub, topic_filter, problem):
    (peer,) = await hub.peers(1)
    with pytest.raises(ValueError, match=problem) as raised:
        peer.ws.subscribe(topic_filter)
    assert f"'{topic_filter}'" in str(raised.value)  # the message names the filter
    with pytest.raises(ValueError, match=problem):
        peer.ws.unsubscribe(topic_filter)
    assert peer.ws.topics == []
    assert hub.server.stats()["subscriptions"] == 0
    # the connection is unharmed and can still subscribe
    assert peer.ws.subscribe("fine/+") is True
    assert hub.server.publish("fine/x", "ok") is True
    assert await peer.rest() == ["ok"]


WILDCARD_TOPICS = ["a/+", "+", "#", "a/#", "a+b", "a/b#c", "sport/+/player1"]


@pytest.mark.parametrize("topic", [*WILDCARD_TOPICS, ""])
async def test_published_topic_with_wildcards_or_empty_raises_value_error(hub, topic):
    sender, receiver = await hub.peers(2)
    receiver.ws.subscribe("#")
    receiver.ws.subscribe("a/+")
    expected = "empty" if topic == "" else "wildcard"
    with pytest.raises(ValueError, match=expected):
        hub.server.publish(topic, "x")
    with pytest.raises(ValueError, match=expected):
        sender.ws.publish(topic, "x")
    with pytest.raises(ValueError, match=expected):
        hub.server.num_subscribers(topic)
    assert await receiver.rest() == []  # nothing was delivered


async def test_publish_with_a_wildcard_from_another_thread_raises_there(hub):
    (peer,) = await hub.peers(1)
    peer.ws.subscribe("#")
    with pytest.raises(ValueError, match="wildcard"):
        await asyncio.wait_for(asyncio.to_thread(hub.server.publish, "a/+", "x"), T)
    assert await peer.rest() == []


# -- message types -------------------------------------------------------------------------------


async def test_published_message_types(hub):
    sender, receiver = await hub.peers(2)
    receiver.ws.subscribe("types")
    publishes = [
        (("text ✓",), {}, "text ✓"),
        ((b"bytes",), {}, b"bytes"),
        ((bytearray(b"bytearray"),), {}, b"bytearray"),
        ((memoryview(b"memoryview"),), {}, b"memoryview"),
        (("str as binary", True), {}, b"str as binary"),
        ((b"bytes as text",), {"is_binary": False}, "bytes as text"),
        ((bytearray("bå as text".encode()),), {"is_binary": False}, "bå as text"),
        (("explicit text",), {"is_binary": False}, "explicit text"),
        (("compress asked",), {"compress": True}, "compress asked"),
        (("",), {}, ""),
        ((b"",), {}, b""),
    ]
    for publish in (hub.server.publish, sender.ws.publish):
        for args, kwargs, _ in publishes:
            assert publish("types", *args, **kwargs) is True
        got = await receiver.rest()
        assert got == [expected for _, _, expected in publishes]
        assert [type(m) for m in got] == [type(expected) for _, _, expected in publishes]


@pytest.mark.parametrize("size", [125, 126, 4095, 4096, 65535, 65536, 1024 * 1024])
async def test_published_message_sizes(hub, size):
    # A 1 MiB message's frame is just over the default max_backpressure (1 MiB): once the peers have it
    # all, the next publish must not be refused (the server counts its write before it refuses).
    peers = await hub.peers(3)
    for peer in peers:
        peer.ws.subscribe("big")
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    text = "é" * (size // 2)
    # one at a time: queueing several large ones would meet max_backpressure (not tested here)
    for message in (payload, text, "after"):
        assert hub.server.publish("big", message) is True
        for peer in peers:
            assert await peer.recv() == message


async def test_bad_messages_raise_and_deliver_nothing(hub):
    sender, receiver = await hub.peers(2)
    receiver.ws.subscribe("t")
    with pytest.raises(ValueError, match="UTF-8"):
        hub.server.publish("t", b"\xff\xfe", is_binary=False)
    with pytest.raises(ValueError, match="UTF-8"):
        sender.ws.publish("t", b"\xc3", False)
    with pytest.raises(ValueError):
        hub.server.publish("t", "lone \ud800 surrogate")
    with pytest.raises(TypeError):
        hub.server.publish("t", 42)
    with pytest.raises(TypeError):
        sender.ws.publish("t", None)
    assert await receiver.rest() == []


# -- the server's publish outside of listen() ----------------------------------------------------


async def test_server_publish_before_listen_and_after_close(serve):
    server = hyperws.Server()
    sockets: list[hyperws.Websocket] = []
    server.ws("/ps", sockets.append)
    assert server.publish("t", "before listen") is False
    assert server.num_subscribers("t") == 0
    assert server.stats()["subscriptions"] == 0
    await serve(server)
    async with connect(url(server, "/ps"), open_timeout=T) as client:
        await until(lambda: len(sockets) == 1)
        sockets[0].subscribe("t")
        assert server.publish("t", "while listening") is True
        assert await asyncio.wait_for(client.recv(), T) == "while listening"
        await asyncio.wait_for(server.close(timeout=2), T)
    assert server.publish("t", "after close") is False
    assert server.num_subscribers("t") == 0
    assert server.stats()["subscriptions"] == 0


async def test_subscribe_in_the_open_handler_and_welcome_by_publish(serve):
    def on_open(ws):
        ws.subscribe("lobby")
        ws.publish("lobby", "someone joined")  # to the others only
        ws.send("welcome")

    server = hyperws.Server()
    server.ws("/chat", on_open)
    await serve(server)
    async with connect(url(server, "/chat"), open_timeout=T) as first:
        assert await asyncio.wait_for(first.recv(), T) == "welcome"
        async with connect(url(server, "/chat"), open_timeout=T) as second:
            assert await asyncio.wait_for(second.recv(), T) == "welcome"
            assert await asyncio.wait_for(first.recv(), T) == "someone joined"
            assert server.num_subscribers("lobby") == 2


# -- 10 000 subscribed connections leave nothing behind ------------------------------------------

CLEANUP_CONNECTIONS = 10_000
CLEANUP_BATCH = 500
CLEANUP_SAFETY = 60  # seconds per step: only so that a broken server fails instead of hanging


def ensure_fd_limit(needed: int) -> tuple[int, int] | None:
    """Raises the soft RLIMIT_NOFILE to ``needed``; returns the old limits (None if unchanged)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    if hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return soft, hard


async def close_batch(
    way: str, clients: list[RawWebSocket], sockets: list[hyperws.Websocket]
) -> None:
    """Ends a batch of connections: by the client's close handshake, by a TCP abort, or by the
    server (close handshake or destroy)."""
    if way == "client close":

        async def handshake(client: RawWebSocket) -> None:
            await client.send_close(1000)
            await client.read_until(CLOSE, CLEANUP_SAFETY)
            await client.aclose()

        await asyncio.gather(*(handshake(client) for client in clients))
    elif way == "abort":
        for client in clients:
            client.writer.transport.abort()
    elif way == "server close":
        for ws in sockets:
            ws.close(1001, "going")

        async def answer(client: RawWebSocket) -> None:
            await client.read_until(CLOSE, CLEANUP_SAFETY)
            await client.send_close(1001)
            await client.aclose()

        await asyncio.gather(*(answer(client) for client in clients))
    else:
        for ws in sockets:
            ws.destroy()
        for client in clients:
            client.writer.transport.abort()


@pytest.mark.slow
async def test_ten_thousand_subscribed_connections_leave_no_subscription(serve):
    old_limits = ensure_fd_limit(4 * CLEANUP_BATCH + 1024)
    counter = itertools.count()
    batch_sockets: list[hyperws.Websocket] = []
    closed = 0

    def on_open(ws: hyperws.Websocket) -> None:
        n = next(counter)
        for topic_filter in (f"user/{n}", f"room/{n % 50}", "room/+", "room/#", "#"):
            ws.subscribe(topic_filter)
        if n % 2:
            ws.unsubscribe("room/+")  # some connections close with one filter fewer
        batch_sockets.append(ws)

        def on_close(code: int, message: str) -> None:
            nonlocal closed
            closed += 1

        ws.on("close", on_close)

    server = hyperws.Server()
    server.ws("/ps", on_open, idle_timeout=0)
    await serve(server)
    ways = ["client close", "abort", "server close", "server destroy"]
    try:
        for batch, start in enumerate(range(0, CLEANUP_CONNECTIONS, CLEANUP_BATCH)):
            batch_sockets.clear()
            clients = await asyncio.wait_for(
                asyncio.gather(
                    *(RawWebSocket.connect(server.port, "/ps") for _ in range(CLEANUP_BATCH))
                ),
                CLEANUP_SAFETY,
            )
            await until(lambda: len(batch_sockets) == CLEANUP_BATCH, timeout=CLEANUP_SAFETY)
            # the batch is subscribed (so that the final zero means something)
            assert server.stats()["subscriptions"] == CLEANUP_BATCH * 5 - CLEANUP_BATCH // 2
            assert server.num_subscribers("room/7") == CLEANUP_BATCH
            assert server.num_subscribers(f"user/{start}") == CLEANUP_BATCH  # through '#'
            await asyncio.wait_for(
                close_batch(ways[batch % len(ways)], clients, batch_sockets), CLEANUP_SAFETY
            )
            await until(lambda start=start: closed == start + CLEANUP_BATCH, timeout=CLEANUP_SAFETY)
            await until(lambda: server.stats()["subscriptions"] == 0, timeout=CLEANUP_SAFETY)
    finally:
        if old_limits is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, old_limits)

    assert closed == CLEANUP_CONNECTIONS
    # destroy() fires 'close' at once; its socket leaves the count when the I/O thread has dropped it
    await until(lambda: server.connections == 0, timeout=CLEANUP_SAFETY)
    assert server.stats()["subscriptions"] == 0
    for topic in ["room/7", "room", "user/0", "user/9999", "anything/at/all"]:
        assert server.num_subscribers(topic) == 0
        assert server.publish(topic, "to nobody") is False
    assert all(ws.topics == [] for ws in batch_sockets)

    # the registry is as good as new
    batch_sockets.clear()
    async with connect(url(server, "/ps"), open_timeout=T) as client:
        await until(lambda: len(batch_sockets) == 1)
        assert server.num_subscribers("room/7") == 1
        assert server.publish("room/7", "hello again") is True
        assert await asyncio.wait_for(client.recv(), T) == "hello again"


# -- known bugs ----------------------------------------------------------------------------------


async def test_destroy_ends_the_subscriptions_with_the_close_event(hub):
    gone, staying = await hub.peers(2)
    in_close_handler: list[int] = []
    gone.ws.on(
        "close",
        lambda code, message: in_close_handler.append(hub.server.num_subscribers("room/1")),
    )
    gone.ws.subscribe("room/1")
    gone.ws.subscribe("room/+")
    staying.ws.subscribe("lobby")
    gone.ws.destroy()
    assert gone.ws.closed is True
    observed = {
        "topics": gone.ws.topics,
        "is_subscribed": gone.ws.is_subscribed("room/1"),
        "num_subscribers in close handler": in_close_handler,
        "num_subscribers": hub.server.num_subscribers("room/1"),
        "publish reached someone": hub.server.publish("room/1", "to nobody"),
        "subscriptions": hub.server.stats()["subscriptions"],
    }
    assert observed == {
        "topics": [],
        "is_subscribed": False,
        "num_subscribers in close handler": [0],
        "num_subscribers": 0,
        "publish reached someone": False,
        "subscriptions": 1,
    }


class BackgroundPublisher:
    """A thread that calls server.publish in a loop (like a market-data feed) until stopped."""

    def __init__(self, server: hyperws.Server, topic: str) -> None:
        self.server = server
        self.topic = topic
        self.stop_event = threading.Event()
        self.started = threading.Event()
        self.published = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set() and self.published < 10_000_000:
                self.server.publish(self.topic, f"tick {self.published}")
                self.published += 1
                self.started.set()
        except BaseException as error:
            self.errors.append(error)
        finally:
            self.started.set()

    async def start(self) -> None:
        self.thread.start()
        await asyncio.wait_for(asyncio.to_thread(self.started.wait), T)

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(asyncio.to_thread(self.thread.join), T)


async def test_connections_come_and_go_while_another_thread_publishes(serve):
    connections = 50
    opened = closed = 0

    def on_open(ws: hyperws.Websocket) -> None:
        nonlocal opened
        opened += 1
        ws.subscribe("feed")

        def on_close(code: int, message: str) -> None:
            nonlocal closed
            closed += 1

        ws.on("close", on_close)

    server = hyperws.Server()
    server.ws("/ws", on_open)
    await serve(server)
    feed = BackgroundPublisher(server, "feed")
    await feed.start()
    try:
        for n in range(1, connections + 1):
            async with connect(url(server, "/ws"), open_timeout=T, max_queue=None):
                await until(lambda n=n: opened == n)
            await until(lambda n=n: closed == n)
    finally:
        await feed.stop()
    assert feed.errors == []
    assert server.stats()["subscriptions"] == 0
    assert server.num_subscribers("feed") == 0


async def test_server_close_while_another_thread_publishes(serve):
    server = hyperws.Server()
    server.ws("/ws", lambda ws: ws.subscribe("feed"))
    await serve(server)
    feed = BackgroundPublisher(server, "feed")
    await feed.start()
    try:
        await asyncio.wait_for(server.close(timeout=2), T)
        after_close = server.publish("feed", "after close")
    finally:
        await feed.stop()
    assert feed.errors == []
    assert after_close is False
