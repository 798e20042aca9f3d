"""How SO_REUSEPORT spreads new connections over worker processes.

    python benches/worker_spread.py [--workers 2 4] [--connections 2000]

For each worker count it starts this file as a supervised app (`server.run(port, workers=N)`), opens
the connections one after another from 127.0.0.1 (each is told the pid of its worker, then closes) and
prints each worker's share against the fair share. Any failed connection is reported, not counted."""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
import time

import hyperws

server = hyperws.Server()


@server.ws("/pid")
def on_open(ws: hyperws.Websocket) -> None:
    ws.send(str(os.getpid()))
    ws.close()


async def spread(port: int, connections: int) -> tuple[collections.Counter[int], int]:
    from websockets.asyncio.client import connect

    counts: collections.Counter[int] = collections.Counter()
    failures = 0
    for _ in range(connections):
        try:
            async with connect(f"ws://127.0.0.1:{port}/pid") as client:
                counts[int(await asyncio.wait_for(client.recv(), 5))] += 1
        except (OSError, asyncio.TimeoutError):
            failures += 1
    return counts, failures


def measure(workers: int, connections: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    supervisor = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(workers)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not start") from None
                time.sleep(0.05)
        time.sleep(1.0)  # every worker bound (the first to bind answers the probe)
        counts, failures = asyncio.run(spread(port, connections))
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(30)
    fair = connections / workers
    shares = sorted(counts.values())
    print(
        f"{workers} workers, {connections} connections: per worker {shares}, "
        f"min {shares[0] / fair:.2f}x max {shares[-1] / fair:.2f}x the fair share"
        + (f", {failures} FAILED" if failures else "")
        + ("" if len(counts) == workers else f", only {len(counts)} workers reached")
    )


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    arguments.add_argument("--connections", type=int, default=2000)
    arguments.add_argument("--serve", nargs=2, type=int, metavar=("PORT", "WORKERS"))
    options = arguments.parse_args()
    if options.serve:
        port, workers = options.serve
        server.run(port, "127.0.0.1", workers=workers)
        return
    for workers in options.workers:
        measure(workers, options.connections)


if __name__ == "__main__":
    main()
