"""What an idle connection costs the server, plain and over TLS, side by side.

    python benches/tls_idle.py [--connections 2000]

Starts the server in its own process for each case, opens the connections (each sends one message and
gets its echo, then stays idle), and prints the growth of the server's RSS per connection. Needs trustme
(a throwaway CA) for the certificates. A connection that failed is reported, not counted."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

SERVER = """
import asyncio, sys
import hyperws

async def main():
    tls = {"cert_file": sys.argv[1], "key_file": sys.argv[2]} if len(sys.argv) > 2 else {}
    server = hyperws.Server(**tls)
    server.ws("/", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)), idle_timeout=600)
    await server.listen(0, "127.0.0.1")
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()

asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def measure(connections: int, tls: tuple[Path, Path, ssl.SSLContext] | None) -> str:
    from websockets.asyncio.client import connect

    args = [sys.executable, "-c", SERVER] + ([str(tls[0]), str(tls[1])] if tls else [])
    server = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    scheme, options = (
        ("wss", {"ssl": tls[2], "server_hostname": "localhost"}) if tls else ("ws", {})
    )
    clients, failures = [], 0
    try:
        await asyncio.sleep(0.5)
        before = rss_kib(server.pid)
        for _ in range(connections):
            try:
                client = await connect(f"{scheme}://127.0.0.1:{port}/", compression=None, **options)
                await client.send("hello")
                await asyncio.wait_for(client.recv(), 5)
                clients.append(client)
            except (OSError, asyncio.TimeoutError):
                failures += 1
        await asyncio.sleep(1.0)
        after = rss_kib(server.pid)
    finally:
        for client in clients:
            await client.close()
        server.stdin.close()
        server.wait(30)
    per = (after - before) / max(1, len(clients))
    failed = f", {failures} FAILED" if failures else ""
    return (
        f"{'TLS' if tls else 'plain'}: {len(clients)} idle connections, {per:.2f} KiB each{failed}"
    )


def main() -> None:
    import trustme

    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--connections", type=int, default=2000)
    options = arguments.parse_args()
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        context = ssl.create_default_context()
        ca.configure_trust(context)
        print(asyncio.run(measure(options.connections, None)))
        print(asyncio.run(measure(options.connections, (cert, key, context))))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
