"""examples/tls.py runs as written: it makes its certificate, serves wss://, and a websockets client
that trusts the CA it prints gets its messages echoed; Ctrl-C stops it and removes the files."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import sys
from pathlib import Path

from websockets.asyncio.client import connect

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tls.py"
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_tls_example_echoes_for_a_client_that_trusts_its_ca():
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        printed = ""
        while "Try it:" not in printed:
            line = await asyncio.wait_for(process.stdout.readline(), WAIT)
            assert line, f"the example stopped before it listened; it printed: {printed!r}"
            printed += line.decode()
        assert f"wss://127.0.0.1:{port}/" in printed
        ca_file = Path(re.search(r"Its CA.*: (\S+)", printed).group(1))
        context = ssl.create_default_context(cafile=str(ca_file))

        for _ in range(300):  # until the example listens (safety: about 30 s)
            try:
                client = await connect(f"wss://127.0.0.1:{port}/", ssl=context, open_timeout=WAIT)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the example never accepted a connection")
        async with client:
            await client.send("over TLS")
            assert await asyncio.wait_for(client.recv(), WAIT) == "over TLS"
            await client.send(b"\x00\xff" * 1000)
            assert await asyncio.wait_for(client.recv(), WAIT) == b"\x00\xff" * 1000

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
        assert not ca_file.exists(), "the throwaway certificate outlived the example"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
