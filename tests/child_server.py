"""A test server in a process of its own (so /proc/<pid> measures the server alone): the script prints
its port, then serves until its stdin closes."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START = 30.0  # safety net for the process to start or stop, not a speed assertion


@contextmanager
def child_server(script: Path) -> Iterator[tuple[int, int]]:
    """Runs `script`; yields its (pid, port); closes its stdin at the end and requires a clean exit."""
    process = subprocess.Popen(
        [sys.executable, str(script)],
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
