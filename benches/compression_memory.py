#!/usr/bin/env python3
"""Memory per idle connection with permessage-deflate: hyperws with compression disabled, shared and dedicated.

    python benches/compression_memory.py [--connections 5000] [--modes disabled,shared,dedicated,dedicated:10]

For each mode (`dedicated:N` sets compression_window_bits=N) a fresh server process (hyperws from the current environment) serves an echo route that
replies with compress=True. The client opens the connections, each offering permessage-deflate (with
client_max_window_bits, as browsers do), sends one compressed 1 KiB text message (plain where compression
is disabled) and reads the compressed echo, so every connection has used compression both ways; then all stay idle and the server's RSS growth
is divided by the connection count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import subprocess
import sys
import time
import zlib

SERVER = """
import asyncio, sys, hyperws
server = hyperws.Server()
def echo(ws):
    ws.on("message", lambda m, b: ws.send(m, b, compress=True))
mode, _, bits = sys.argv[1].partition(":")
options = {"compression_window_bits": int(bits)} if bits else {}
server.ws("/ws", echo, compression=mode, idle_timeout=0, **options)
async def main():
    await server.listen(0, host="127.0.0.1")
    print(server.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
MESSAGE = (b'{"symbol": "ACME", "bid": 101.25, "ask": 101.5, "venue": "XNAS"} ' * 16)[:1024]
TAIL = b"\x00\x00\xff\xff"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def text_frame(payload: bytes, compress: bool) -> bytes:
    """A masked (with a zero key: masking is then the identity) text frame, compressed or not."""
    first = 0x81
    if compress:
        compressor = zlib.compressobj(wbits=-15)
        payload = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[: -len(TAIL)]
        first |= 0x40
    if len(payload) < 126:
        head = bytes([first, 0x80 | len(payload)])
    else:
        head = bytes([first, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    return head + b"\x00\x00\x00\x00" + payload


async def open_one(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    negotiated = b"permessage-deflate" in head
    writer.write(text_frame(MESSAGE, negotiated))
    first = await reader.readexactly(2)
    length = first[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    payload = await reader.readexactly(length)
    echoed = (
        zlib.decompressobj(wbits=-15).decompress(payload + TAIL) if first[0] & 0x40 else payload
    )
    assert echoed == MESSAGE
    return reader, writer, negotiated


async def measure(mode: str, count: int) -> tuple[float, bool]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        # the first connection warms up what every server needs once (thread pools, code paths)
        warm = await open_one(port)
        await asyncio.sleep(0.2)
        before = rss_kib(server.pid)
        connections = []
        for start in range(0, count, 200):
            connections += await asyncio.gather(
                *(open_one(port) for _ in range(min(200, count - start)))
            )
        await asyncio.sleep(1.0)
        after = rss_kib(server.pid)
        negotiated = all(c[2] for c in connections)
        for _, writer, _ in [*connections, warm]:
            writer.close()
        return (after - before) / count, negotiated
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--modes", default="disabled,shared,dedicated,dedicated:12,dedicated:9")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.connections)), hard))
    print(f"{args.connections} connections, each used compression both ways, then idle")
    print(f"{'compression':<14} {'KiB per connection':>20} {'negotiated':>11}")
    for mode in args.modes.split(","):
        started = time.monotonic()
        per_connection, negotiated = asyncio.run(measure(mode, args.connections))
        print(
            f"{mode:<14} {per_connection:>20.1f} {negotiated!s:>11}"
            f"   ({time.monotonic() - started:.0f} s)"
        )


if __name__ == "__main__":
    main()
