"""Cross-node fan-out: one publisher on node A, subscribers spread over nodes A and B, the two nodes
sharing a broker; deliveries per second against what Python users run today for the same app.

    benches/.peers/venv/bin/python benches/cross_node.py [--duration 10] [--reps 3] [--subs 1000]

Each setup is two server processes (two nodes) of one server script, both given the same broker:

- `hyperws-redis`, `hyperws-nats`: `servers/hyperws_server.py --pubsub URL` (the engine's own broker client);
- `starlette-broadcaster`: `servers/starlette_broadcaster_server.py`, Starlette on uvicorn with the
  `broadcaster` package's Redis backend;
- `websockets-redis`: `servers/websockets_redis_server.py`, `websockets` with redis-py's asyncio pub/sub.

The load generator (`loadgen fanout`, Rust) connects half the subscribers to A's /sub and half to B's,
publishes 32 B text messages on A's /pub while keeping `--window` messages ahead of the slowest of two
trackers (one subscriber per node), and checks that every subscriber receives every message, in order,
intact. A run with any error or loss is reported as INVALID with the generator's first complaint, never as a
number. Each rep runs every setup once (interleaved), fresh processes and a fresh namespace on the broker
each time. Nothing is pinned: the two nodes, the broker and the generator share the machine's CPUs, and the
table shows the CPU (in cores) each used during the measured window, so what bounds a number is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from compare import free_port, proc_cpu  # the comparison harness beside this script

BENCH_DIR = Path(__file__).resolve().parent
SERVERS = BENCH_DIR / "servers"
LOADGEN = BENCH_DIR / "loadgen" / "target" / "release" / "loadgen"

# setup name: (server script, broker)
SETUPS = {
    "hyperws-redis": ("hyperws_server.py", "redis"),
    "hyperws-nats": ("hyperws_server.py", "nats"),
    "starlette-broadcaster": ("starlette_broadcaster_server.py", "redis"),
    "websockets-redis": ("websockets_redis_server.py", "redis"),
}
OURS = "hyperws-redis"
PEERS = ("starlette-broadcaster", "websockets-redis")
TARGET_RATIO = 10.0  # issue 15: ≥ 10x the best peer through the same Redis
TARGET_RATE = 650_000.0  # issue 15: Centrifugo's deliveries/s through one Redis


@dataclass
class Run:
    setup: str
    rate: float | None = None
    why: str = ""  # why there is no rate
    cores: dict[str, float] = field(default_factory=dict)  # CPU used in the window, per process


def listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` or *:`port` (the broker's), found through /proc/net/tcp
    and the processes' sockets; None when it cannot be seen (another user's process)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


class Node:
    """One server process: `script --port P --pubsub URL --pubsub-prefix PREFIX`, READY on stdout."""

    def __init__(self, python: str, script: str, broker_url: str, prefix: str, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("wb")
        options = ["--port", str(self.port), "--pubsub", broker_url, "--pubsub-prefix", prefix]
        self.proc = subprocess.Popen(
            [python, str(SERVERS / script), *options],
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=SERVERS,
            start_new_session=True,
        )

    def ready(self, timeout: float = 30.0) -> str | None:
        """None once READY was printed, else why not."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline, out = time.monotonic() + timeout, b""
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
                if b"READY\n" in out:
                    return None
        return f"no READY within {timeout:g} s (exit {self.proc.poll()}), see {self.log.name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


def run_loadgen(
    argv: list[str], timeout: float, pids: dict[str, int | None]
) -> tuple[dict, str, dict]:
    """Runs the generator; returns its JSON report (or {}), why there is none, and the CPU (cores) each
    of `pids` and the generator used between its WINDOW start and end lines."""
    proc = subprocess.Popen(
        [str(LOADGEN), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    pids = {**pids, "generator": proc.pid}
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out, err, streams = b"", b"", 2
    start: tuple[float, dict[str, float | None]] | None = None
    cores: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while streams and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                sel.unregister(key.fileobj)
                streams -= 1
            elif key.data == "err":
                err += chunk
            else:
                out += chunk
                if b"WINDOW start\n" in out and start is None:
                    start = time.monotonic(), {k: proc_cpu(p) for k, p in pids.items() if p}
                if b"WINDOW end\n" in out and start is not None and not cores:
                    wall = time.monotonic() - start[0]
                    for name, pid in pids.items():
                        before, after = start[1].get(name), proc_cpu(pid) if pid else None
                        if before is not None and after is not None:
                            cores[name] = (after - before) / wall
    if streams:
        proc.kill()
        proc.wait()
        return {}, f"load generator killed after {timeout:g} s", cores
    proc.wait()
    for line in out.decode(errors="replace").splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line), "", cores
    tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
    return {}, f"no report from the load generator (exit {proc.returncode}): {tail}", cores


def one_run(setup: str, args: argparse.Namespace, log_dir: Path) -> Run:
    script, broker = SETUPS[setup]
    url = args.redis_url if broker == "redis" else args.nats_url
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    run = Run(setup)
    nodes = [
        Node(args.python, script, url, prefix, log_dir / f"{setup}-{name}.log") for name in "AB"
    ]
    try:
        for node in nodes:
            if why := node.ready():
                run.why = why
                return run
        a, b = nodes
        argv = [
            "fanout",
            "--pub-url",
            f"ws://127.0.0.1:{a.port}/pub",
            "--sub-url",
            f"ws://127.0.0.1:{a.port}/sub,ws://127.0.0.1:{b.port}/sub",
            *("--subs", str(args.subs), "--size", "32", "--window", str(args.window)),
            *("--duration", str(args.duration), "--warmup", str(args.warmup)),
            # the subscribers' broker subscriptions are made after their handshakes
            *("--settle-ms", "1000"),
        ]
        broker_port = urllib.parse.urlsplit(url).port or (6379 if broker == "redis" else 4222)
        pids = {"node A": a.proc.pid, "node B": b.proc.pid, broker: listener_pid(broker_port)}
        report, why, run.cores = run_loadgen(argv, args.duration + args.warmup + 120, pids)
        if why:
            run.why = why
        elif not report.get("valid"):
            samples = report.get("error_samples") or ["(no sample)"]
            run.why = (
                f"INVALID: {report.get('errors', '?')} errors, {report.get('lost', '?')} lost; "
                f"first: {samples[0]}"
            )
        else:
            run.rate = float(report["rate"])
        return run
    finally:
        for node in nodes:
            node.stop()


def fmt_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate / 1000:,.1f} k"


def table(rows: list[list[str]], heads: list[str]) -> str:
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = [heads, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--setups", default=",".join(SETUPS), help="comma-separated, of: " + ", ".join(SETUPS)
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--subs", type=int, default=1000, help="subscribers, half on each node")
    p.add_argument("--window", type=int, default=32, help="messages the publisher keeps in flight")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    p.add_argument("--python", default=sys.executable, help="interpreter of the servers")
    args = p.parse_args()
    setups = args.setups.split(",")
    if unknown := [s for s in setups if s not in SETUPS]:
        p.error(f"unknown setups {unknown}; known: {', '.join(SETUPS)}")
    if not LOADGEN.exists():
        p.error(f"{LOADGEN} is missing: run benches/setup_peers.sh")
    log_dir = BENCH_DIR / "results" / f"cross-node-{time.strftime('%Y%m%d-%H%M%S')}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    runs: dict[str, list[Run]] = {s: [] for s in setups}
    for rep in range(args.reps):
        for setup in setups:
            run = one_run(setup, args, log_dir)
            runs[setup].append(run)
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in run.cores.items())
            print(
                f"[rep {rep + 1}] {setup}: {fmt_rate(run.rate) if run.rate else run.why}  (cores: {cpu})",
                flush=True,
            )

    medians: dict[str, float | None] = {}
    rows = []
    for setup, rs in runs.items():
        ok = [r.rate for r in rs if r.rate is not None]
        failed = [r.why for r in rs if r.rate is None]
        medians[setup] = statistics.median(ok) if ok and not failed else None
        names = sorted({k for r in rs for k in r.cores})
        cores = "; ".join(
            f"{n} {statistics.median([r.cores[n] for r in rs if n in r.cores]):.2f}" for n in names
        )
        verdict = (
            fmt_rate(medians[setup])
            if medians[setup]
            else f"no number: {failed[0] if failed else '?'}"
        )
        runs_cell = " / ".join(fmt_rate(r.rate) if r.rate else "INVALID" for r in rs)
        rows.append([setup, verdict, runs_cell, cores])
    print()
    print(
        f"cross-node fan-out: {args.subs} subscribers over 2 nodes, 32 B, window {args.window}, "
        f"{args.duration:g} s x {args.reps} (deliveries/s, median)"
    )
    print(table(rows, ["setup", "deliveries/s", "runs", "CPU in cores (median)"]))

    ours = medians.get(OURS)
    peers = {s: medians[s] for s in PEERS if s in medians}
    if ours is not None and peers:
        print()
        ratio_rows = [
            [f"{OURS} / {peer}", f"{ours / rate:.1f}x" if rate else "—"]
            for peer, rate in peers.items()
        ]
        valid = [r for r in peers.values() if r]
        if valid:
            best = max(valid)
            met = "met" if ours / best >= TARGET_RATIO else "NOT met"
            ratio_rows.append(
                [f"{OURS} / best peer", f"{ours / best:.1f}x (target ≥ {TARGET_RATIO:g}x: {met})"]
            )
        met = "met" if ours >= TARGET_RATE else "NOT met: see the CPU column for what bounds it"
        ratio_rows.append([f"{OURS} vs 650 k/s", f"{ours / TARGET_RATE:.2f}x ({met})"])
        print(table(ratio_rows, ["ratio", "value"]))
    print(f"\nserver logs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
