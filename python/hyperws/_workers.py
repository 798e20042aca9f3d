"""Worker processes: N copies of the program, each serving the same port with SO_REUSEPORT, watched
by a parent that restarts a worker that dies and, on SIGTERM or SIGINT, stops them all gracefully."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import subprocess
import sys
import time

logger = logging.getLogger("hyperws.workers")

WORKER_ENV = "HYPERWS_WORKER"
# How long the workers have to close their connections once told to stop, before they are killed.
STOP_TIMEOUT = 30.0
# A worker that dies sooner than this after its start is restarted after a growing delay.
MIN_LIFETIME = 1.0
MAX_RESTART_DELAY = 10.0


def worker_index() -> int | None:
    """This process's worker number when a supervisor started it, else None."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value else None


def stop_with_parent(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Sets ``stop`` if the supervisor goes away without stopping this worker (killed)."""
    parent = os.getppid()

    def check() -> None:
        if os.getppid() != parent:
            logger.warning("the supervisor (pid %d) is gone: stopping", parent)
            stop.set()
        else:
            loop.call_later(1.0, check)

    loop.call_later(1.0, check)


class Worker:
    """One worker process and its restart schedule."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.restart_at = 0.0
        self.restart_delay = 0.1

    def start(self, command: list[str]) -> None:
        env = {**os.environ, WORKER_ENV: str(self.index)}
        self.process = subprocess.Popen(command, env=env)
        self.started = time.monotonic()
        logger.info("worker %d started (pid %d)", self.index, self.process.pid)

    def exited(self) -> int | None:
        """The exit code if the process ended since the last look (then it is forgotten)."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            self.process = None
        return code

    def schedule_restart(self, now: float) -> None:
        if now - self.started < MIN_LIFETIME:
            self.restart_delay = min(self.restart_delay * 2, MAX_RESTART_DELAY)
        else:
            self.restart_delay = 0.1
        self.restart_at = now + self.restart_delay


class Supervisor:
    """Runs ``count`` workers of this program until SIGTERM or SIGINT."""

    def __init__(self, count: int, command: list[str] | None = None) -> None:
        self.command = command if command is not None else list(sys.orig_argv)
        self.workers = [Worker(index) for index in range(1, count + 1)]
        self._stopping = False

    def run(self) -> int:
        """Serves until told to stop; returns the exit code for this process."""
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        # A signal wakes the loop through a pipe that the interpreter writes to itself
        # (signal.set_wakeup_fd): no lock is taken (a threading.Event's lock, held by the interrupted
        # wait, deadlocked the supervisor when a worker's SIGCHLD came then).
        self._wake_read, wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        logger.info("supervisor (pid %d) starting %d workers", os.getpid(), len(self.workers))
        try:
            for worker in self.workers:
                worker.start(self.command)
            while not self._stopping:
                select.select([self._wake_read], [], [], 1.0)
                self._take_wakeups()
                self._tend()
            return self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(self._wake_read)
            os.close(wake_write)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            self._stopping = True

    def _take_wakeups(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _tend(self) -> None:
        """Notes workers that died and restarts those whose delay is over."""
        now = time.monotonic()
        for worker in self.workers:
            code = worker.exited()
            if code is not None and not self._stopping:
                worker.schedule_restart(now)
                logger.warning(
                    "worker %d exited with code %d; restarting it in %.1f s",
                    worker.index,
                    code,
                    worker.restart_delay,
                )
            if worker.process is None and not self._stopping and now >= worker.restart_at:
                worker.start(self.command)

    def _stop_all(self) -> int:
        """Tells every worker to stop, waits for them (killing those that overstay)."""
        running = [w.process for w in self.workers if w.process is not None]
        logger.info("stopping %d workers", len(running))
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        failed = 0
        for process in running:
            try:
                code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error(
                    "worker pid %d did not stop in %.0f s: killed", process.pid, STOP_TIMEOUT
                )
                process.kill()
                code = process.wait()
            failed += code != 0
        return 1 if failed else 0
