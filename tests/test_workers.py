"""Worker processes: `server.run(port, workers=N)` and `python -m hyperws app:server --workers N` run N
processes on one port (SO_REUSEPORT) under a supervisor that restarts a worker that dies and, on
SIGTERM or SIGINT, has every worker close its connections with 1001 before it exits."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect

import hyperws

from helpers import TIMEOUT, until

HERE = Path(__file__).resolve().parent
START = 30.0  # safety net for processes to start or stop, not a speed assertion


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Supervised:
    """A supervisor process started with `command`, stopped (and reaped) at the end."""

    def __init__(
        self,
        command: list[str],
        tls: ssl.SSLContext | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tls = tls
        self.port = free_port()
        self.process = subprocess.Popen(
            [part.replace("PORT", str(self.port)) for part in command],
            cwd=HERE,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    async def connect(self) -> ClientConnection:
        if self.tls is None:
            return await connect(f"ws://127.0.0.1:{self.port}/pid", open_timeout=TIMEOUT)
        return await connect(
            f"wss://127.0.0.1:{self.port}/pid",
            ssl=self.tls,
            server_hostname="localhost",
            open_timeout=TIMEOUT,
        )

    async def pid_of_a_connection(self) -> int:
        async with await self.connect() as client:
            return int(await asyncio.wait_for(client.recv(), TIMEOUT))

    async def serving(self) -> None:
        async def up() -> None:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"the supervisor exited: {self.output()}")
                try:
                    await self.pid_of_a_connection()
                    return
                except OSError:
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(up(), START)

    async def pids(self, count: int = 2) -> set[int]:
        """The worker pids seen over new connections, once `count` distinct ones are seen."""
        seen: set[int] = set()

        async def gather() -> None:
            while len(seen) < count:
                seen.add(await self.pid_of_a_connection())
                await asyncio.sleep(0.01)  # a restarted worker may still be starting

        try:
            await asyncio.wait_for(gather(), START)
        except asyncio.TimeoutError:
            raise AssertionError(f"new connections reached only workers {seen}") from None
        return seen

    async def exit_code(self) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), START)

    def output(self) -> str:
        if self.process.poll() is None:
            return "(running)"
        return self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def supervised():
    started: list[Supervised] = []

    def start(
        *command: str, tls: ssl.SSLContext | None = None, env: dict[str, str] | None = None
    ) -> Supervised:
        supervisor = Supervised(list(command), tls, env)
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        supervisor.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


RUN = ("{python}", "worker_app.py", "PORT", "2")
CLI = ("{python}", "-m", "hyperws", "worker_app:server", "--port", "PORT", "--workers", "2")


@pytest.mark.parametrize(
    ("command", "stop_signal"),
    [(RUN, signal.SIGTERM), (CLI, signal.SIGTERM), (CLI, signal.SIGINT)],
    ids=["run-sigterm", "cli-sigterm", "cli-sigint"],
)
async def test_workers_share_the_port_and_a_stop_signal_closes_every_connection_with_1001(
    supervised, command, stop_signal
):
    supervisor = supervised(*(part.format(python=sys.executable) for part in command))
    await supervisor.serving()
    workers = await supervisor.pids()
    assert len(workers) == 2 and supervisor.process.pid not in workers
    clients = [await supervisor.connect() for _ in range(20)]
    served_by = {int(await asyncio.wait_for(client.recv(), TIMEOUT)) for client in clients}
    supervisor.process.send_signal(stop_signal)
    for client in clients:
        await asyncio.wait_for(client.wait_closed(), START)
        assert client.close_code == 1001
    assert await supervisor.exit_code() == 0, supervisor.output()
    assert not any(alive(pid) for pid in workers | served_by)


async def test_a_worker_that_dies_is_restarted(supervised):
    supervisor = supervised(sys.executable, "worker_app.py", "PORT", "2")
    await supervisor.serving()
    first, second = sorted(await supervisor.pids())
    os.kill(first, signal.SIGKILL)
    await until(lambda: not alive(first), timeout=START)
    now = await supervisor.pids()
    assert second in now and first not in now
    supervisor.process.send_signal(signal.SIGINT)
    assert await supervisor.exit_code() == 0, supervisor.output()
    output = supervisor.output()
    assert "worker 1 exited" in output or "worker 2 exited" in output
    assert "2 workers without pubsub: a publish reaches only the subscribers" in output


async def test_workers_need_a_port():
    server = hyperws.Server()
    with pytest.raises(ValueError, match="give run\\(\\) a port"):
        server.run(0, workers=2)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("worker_app", "expected MODULE:ATTRIBUTE"),
        ("no_such_module:server", "no module 'no_such_module'"),
        ("worker_app:nothing", "has no attribute 'nothing'"),
        ("worker_app:on_open", "is a function, not a hyperws.Server"),
    ],
)
def test_the_cli_names_what_is_wrong_with_the_app(location, message):
    done = subprocess.run(
        [sys.executable, "-m", "hyperws", location],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=START,
    )
    assert done.returncode != 0
    assert message in done.stderr


async def test_listen_with_reuse_port_lets_servers_share_a_port(serve):
    first, second, third = hyperws.Server(), hyperws.Server(), hyperws.Server()
    await first.listen(0, "127.0.0.1", reuse_port=True)
    try:
        await second.listen(first.port, "127.0.0.1", reuse_port=True)
        await second.close()
        with pytest.raises(OSError, match="cannot listen"):
            await third.listen(first.port, "127.0.0.1")
    finally:
        await first.close()


async def test_workers_serve_tls(supervised, tmp_path):
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_file.write_bytes(leaf.private_key_pem.bytes())
    context = ssl.create_default_context()
    ca.configure_trust(context)
    env = {"WORKER_APP_CERT": str(cert_file), "WORKER_APP_KEY": str(key_file)}
    supervisor = supervised(sys.executable, "worker_app.py", "PORT", "2", tls=context, env=env)
    await supervisor.serving()
    assert len(await supervisor.pids()) == 2
    supervisor.process.send_signal(signal.SIGTERM)
    assert await supervisor.exit_code() == 0, supervisor.output()
