"""Soak: churn connections at a fixed rate against a server in its own process, and check that what
the server holds comes back to its baseline.

    python benches/soak.py [--minutes 1] [--rate 40] [--idle-timeout 2]

Each second, `rate` connections open on /churn, where each subscribes to a topic. In turn, a
connection is one of three kinds:
- polite: a `websockets` client publishes (the server publishes to every subscriber), sends a message
  and reads its echo, then closes with 1000;
- destroyed: a raw socket upgrades, sends a message and is reset (no close frame, no FIN);
- abandoned: a raw socket upgrades and then never reads nor writes; the server closes it at its
  idle_timeout (and releases it close_timeout later, as no close answers its own).

Every few seconds the server's RSS (/proc/<pid>/status), open fds (/proc/<pid>/fd), and its
`connections`, `subscriptions` and live Websocket objects (weakrefs, after gc.collect()), from its
GET /stats, are sampled and printed. The baseline is taken after a warm-up (a few seconds of the same
churn, then quiet), since the first connections grow the allocator's pools and start the I/O
threads. At the end, once the last connection is gone, connections, subscriptions and objects must be
0, fds the baseline's, and RSS within RSS_TOLERANCE of the baseline; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass

MiB = 1024 * 1024
RSS_TOLERANCE = 4 * MiB
CLOSE_TIMEOUT = 1.0
SAFETY = 30.0  # seconds: only so that a broken server fails the run instead of hanging it
WARM_UP = 5.0  # seconds of churn before the baseline


# -- the server (run as `soak.py --serve IDLE_TIMEOUT`) -----------------------------------------


async def serve(idle_timeout: float) -> None:
    import hyperws

    server = hyperws.Server(close_timeout=CLOSE_TIMEOUT)
    alive: weakref.WeakSet[hyperws.Websocket] = weakref.WeakSet()

    def churn(ws: hyperws.Websocket) -> None:
        alive.add(ws)
        ws.subscribe("soak/news")

        def on_message(message: str | bytes, is_binary: bool) -> None:
            if message == "publish":
                server.publish("soak/news", "news")
            else:
                ws.send(message, is_binary)

        ws.on("message", on_message)

    server.ws("/churn", churn, idle_timeout=idle_timeout, max_backpressure=64 * 1024)

    @server.get("/stats")
    def stats(request: hyperws.Request, response: hyperws.Response) -> None:
        gc.collect()
        stats = server.stats()
        response.json(
            {
                "connections": stats["connections"],
                "subscriptions": stats["subscriptions"],
                "objects": len(alive),
            }
        )

    await server.listen(0, "127.0.0.1")
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close(timeout=2.0)


# -- the clients --------------------------------------------------------------------------------


async def upgraded(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), SAFETY)
    writer.write(
        b"GET /churn HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SAFETY)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


# A masked text frame "hello" (mask key 0: the payload is sent as is).
HELLO_FRAME = b"\x81\x85\x00\x00\x00\x00hello"


async def polite(port: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/churn", open_timeout=SAFETY) as client:
        await client.send("publish")
        await client.send("echo me")
        while await asyncio.wait_for(client.recv(), SAFETY) != "echo me":
            pass  # publishes, ours and others'


async def destroyed(port: int) -> None:
    _, writer = await upgraded(port)
    writer.write(HELLO_FRAME)
    await writer.drain()
    writer.transport.abort()


async def abandoned(port: int, idle_timeout: float) -> None:
    reader, writer = await upgraded(port)
    try:
        # Not read: the server's close arrives at idle_timeout, and its FIN close_timeout later.
        await asyncio.wait_for(reader.read(), idle_timeout + CLOSE_TIMEOUT + SAFETY)
    finally:
        writer.close()


@dataclass
class Churn:
    port: int
    idle_timeout: float
    opened: int = 0
    failed: int = 0

    async def one(self, kind: int) -> None:
        try:
            if kind == 0:
                await polite(self.port)
            elif kind == 1:
                await destroyed(self.port)
            else:
                await abandoned(self.port, self.idle_timeout)
        except Exception as error:  # counted and reported: a failed connection
            self.failed += 1
            print(f"connection failed: {error!r}", file=sys.stderr)

    async def run(self, seconds: float, rate: int) -> None:
        loop = asyncio.get_running_loop()
        tasks = set()
        start = loop.time()
        for n in itertools.count():
            due = start + n / rate
            if due - start >= seconds:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            task = asyncio.create_task(self.one(n % 3))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.opened += 1
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), self.idle_timeout + SAFETY)


# -- sampling -----------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    opened: int
    rss: int
    fds: int
    connections: int
    subscriptions: int
    objects: int

    HEADER = (
        f"{'time':>7} {'opened':>7} {'RSS MiB':>8} {'fds':>5} {'conns':>6} {'subs':>6} {'objs':>6}"
    )

    def row(self) -> str:
        return (
            f"{self.seconds:7.1f} {self.opened:7} {self.rss / MiB:8.1f} {self.fds:5} "
            f"{self.connections:6} {self.subscriptions:6} {self.objects:6}"
        )


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def server_stats(port: int) -> dict[str, int]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), SAFETY)
    try:
        writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), SAFETY)
    finally:
        writer.close()
    return json.loads(response.partition(b"\r\n\r\n")[2])


async def sample(pid: int, port: int, churn: Churn, start: float) -> Sample:
    stats = await server_stats(port)
    return Sample(
        seconds=time.monotonic() - start,
        opened=churn.opened,
        rss=rss(pid),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        connections=stats["connections"],
        subscriptions=stats["subscriptions"],
        objects=stats["objects"],
    )


async def settle(pid: int, port: int, churn: Churn, start: float) -> Sample:
    """The first sample with no connection left (they may wait for close_timeout) and the same fds
    as the one before (a socket just closed may not be released yet)."""
    deadline = time.monotonic() + SAFETY
    last = await sample(pid, port, churn, start)
    while True:
        await asyncio.sleep(0.2)
        now = await sample(pid, port, churn, start)
        gone = now.connections == 0 and now.objects == 0
        if (gone and now.fds == last.fds) or time.monotonic() > deadline:
            return now
        last = now


async def sample_every(interval: float, pid: int, port: int, churn: Churn, start: float) -> None:
    while True:
        await asyncio.sleep(interval)
        print((await sample(pid, port, churn, start)).row(), flush=True)


def leaks(baseline: Sample, end: Sample) -> list[str]:
    found = []
    for name in ("connections", "subscriptions", "objects"):
        if getattr(end, name) != 0:
            found.append(f"{name}: {getattr(end, name)} left")
    if end.fds > baseline.fds:
        found.append(f"open fds: {baseline.fds} at the baseline, {end.fds} at the end")
    if end.rss - baseline.rss > RSS_TOLERANCE:
        growth = (end.rss - baseline.rss) / MiB
        found.append(f"RSS grew by {growth:.1f} MiB (tolerance {RSS_TOLERANCE / MiB:.0f} MiB)")
    return found


async def soak(pid: int, port: int, args: argparse.Namespace) -> int:
    start = time.monotonic()
    warm_up = Churn(port, args.idle_timeout)
    await warm_up.run(WARM_UP, args.rate)
    baseline = await settle(pid, port, warm_up, start)
    print(f"churning {args.rate} connections/s for {args.minutes} min", flush=True)
    print(Sample.HEADER)
    print(baseline.row(), " baseline (after warm-up)", flush=True)
    churn = Churn(port, args.idle_timeout)
    sampler = asyncio.create_task(sample_every(args.interval, pid, port, churn, start))
    try:
        await churn.run(args.minutes * 60, args.rate)
    finally:
        sampler.cancel()
    end = await settle(pid, port, churn, start)
    print(end.row(), " end")
    found = leaks(baseline, end)
    if churn.failed:
        found.append(f"{churn.failed} of {churn.opened} connections failed")
    for leak in found:
        print(f"LEAK: {leak}")
    if not found:
        print(
            f"OK: {churn.opened} connections; back to the baseline (RSS within {RSS_TOLERANCE // MiB} MiB)"
        )
    return 1 if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=40, help="connections opened per second")
    parser.add_argument("--idle-timeout", type=float, default=2.0, help="of the server's route")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.idle_timeout))
        return 0
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--idle-timeout", str(args.idle_timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        port = int(server.stdout.readline())
        return asyncio.run(soak(server.pid, port, args))
    finally:
        server.stdin.close()
        try:
            server.wait(SAFETY)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
