"""A test server in a process of its own (so /proc/<pid> measures the server alone): the script prints
its port, then serves until its stdin closes."""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rawws import http_exchange

START = 30.0  # safety net for the process to start or stop, not a speed assertion


@contextmanager
def child_server(script: Path, *args: str) -> Iterator[tuple[int, int]]:
    """Runs `script` with `args`; yields its (pid, port); closes its stdin at the end and requires a clean
    exit."""
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=script.parent,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], START)
        assert ready, f"{script.name} did not start"
        yield process.pid, int(process.stdout.readline())
    finally:
        process.stdin.close()
        try:
            process.wait(START)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"{script.name} exited with {process.returncode}"


@dataclass
class ChildServer:
    """A server started by `child_server`, with a GET /stats route answering JSON counters."""

    pid: int
    port: int

    async def stats(self) -> dict[str, int]:
        request = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        response = await http_exchange(self.port, request, timeout=START)
        assert response.status == 200, response
        return json.loads(response.body)

    async def stats_until(self, predicate: Callable[[dict[str, int]], bool]) -> dict[str, int]:
        for _ in range(int(START / 0.05)):
            stats = await self.stats()
            if predicate(stats):
                return stats
            await asyncio.sleep(0.05)
        raise AssertionError(f"the server's stats never matched: {stats}")
