"""max_lifetime and the traffic counters of server.stats()."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

import hyperws

from helpers import TIMEOUT, Recorder, url
from rawws import CLOSE, RawWebSocket


async def test_max_lifetime_closes_even_a_busy_connection(serve):
    rec = Recorder()
    server = hyperws.Server()

    def on_open(ws: hyperws.Websocket) -> None:
        ws.on("message", lambda message, is_binary: ws.send(message, is_binary))
        ws.on("close", rec.listener("close"))

    server.ws("/short", on_open, max_lifetime=0.02)  # minutes: 1.2 s
    await serve(server)
    async with await RawWebSocket.connect(server.port, "/short") as raw:
        echoed = 0
        while True:  # keep talking: a live connection is closed all the same
            await raw.send_text(b"still here")
            frame = await raw.read_frame()
            if frame.opcode == CLOSE:
                break
            echoed += 1
            await asyncio.sleep(0.05)
        assert frame.close_code == 1001 and frame.close_reason == "max lifetime reached"
        assert echoed > 0
        await raw.send_close(1001)
    assert (await rec.first("close"))[0] == 1001


@pytest.mark.parametrize("value", [-1, "1", True])
def test_bad_max_lifetime_is_a_value_error(value):
    with pytest.raises(ValueError, match="max_lifetime"):
        hyperws.Router().ws("/x", lambda ws: None, max_lifetime=value)


async def test_stats_count_messages_and_bytes_both_ways(serve):
    server = hyperws.Server()
    server.ws("/echo", lambda ws: ws.on("message", lambda m, b: ws.send(m, b)))
    await serve(server)
    async with connect(url(server, "/echo"), compression=None) as client:
        for _ in range(10):
            await client.send("x" * 100)
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "x" * 100
    # Read after the close handshake: the I/O thread counts written bytes right after each write, so
    # the echoes are counted once the server's close frame (written after them) has arrived.
    stats = server.stats()
    assert stats["messages_in"] == 10 and stats["bytes_in"] == 1000
    assert stats["messages_out"] == 10
    assert stats["bytes_out"] >= 10 * (100 + 2), "frames written, headers included"


def test_run_on_a_port_in_use_raises_the_os_error_with_its_errno(tmp_path):
    """The error a user sees is the bind's own: errno set, and not chained to an ImportError."""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = tmp_path / "app.py"
        script.write_text(
            "import errno, hyperws\n"
            "try:\n"
            f"    hyperws.Server().run({port}, '127.0.0.1')\n"
            "except OSError as error:\n"
            "    assert error.errno == errno.EADDRINUSE, error.errno\n"
            "    assert error.__context__ is None and error.__cause__ is None, repr(error.__context__)\n"
            "    print('EADDRINUSE', error)\n"
        )
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("EADDRINUSE [Errno 98] cannot listen on 127.0.0.1:")
    assert done.stdout.rstrip().endswith(": Address already in use")
