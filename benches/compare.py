#!/usr/bin/env python3
"""Side-by-side WebSocket server comparison: hyperws against its peers (Bun, Node ws and the Python servers), same
app, same load.

    bash benches/setup_peers.sh
    benches/.peers/venv/bin/python benches/compare.py [--workloads echo32,echo16k] [--reps 3] [--duration 10]

For every workload, repetition and server (interleaved: each repetition runs every server once), a fresh server
process is started pinned to one CPU (taskset -c 0), the Rust load generator runs pinned to the other (taskset
-c 1), and its JSON verdict is read. A run the generator reports invalid (any protocol error, wrong byte, gap,
closed connection or message still in flight at the end) is shown as INVALID, never as a number. Prints a table
and writes it, with the machine and versions, to benches/results/<date>.md (raw JSON lines beside it).

In the echo workloads the server's syscalls are counted over the measured window (perf stat on the syscall
tracepoints, enabled and disabled at the generator's WINDOW markers) and shown per echoed message; hyperws also
reports its own loop wake-ups and events handed to Python (SIGUSR1 makes the bench server print its stats).

The TLS workloads (echo32tls, connecttls, idletls) run against the servers whose app serves TLS, all with the same
throwaway certificate made once per run (trustme: a CA and an ECDSA P-256 leaf for localhost and 127.0.0.1, in a
temporary directory): the server gets --cert and --key, the generator wss:// urls with --ca and --tls-name.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SERVERS_DIR = BENCH_DIR / "servers"
PEERS_DIR = BENCH_DIR / ".peers"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_LOADGEN = BENCH_DIR / "loadgen" / "target" / "release" / "loadgen"
NODE_MODULES = PEERS_DIR / "node" / "node_modules"
BUN = NODE_MODULES / ".bin" / "bun"
# socketify's native library links libuv.so.1: setup_peers.sh unpacks Debian's libuv1 here
LIBUV_DIR = PEERS_DIR / "debroot" / "usr" / "lib" / "x86_64-linux-gnu"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DASH = "\N{EN DASH}"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- what is compared -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    script: str  # in benches/servers/
    runtime: str = (
        "python"  # "python" (the --python interpreter), "node" or "bun" (from benches/.peers/node)
    )
    module: str = ""  # python: must import in the venv, or the server is skipped
    python_peer: bool = (
        True  # counts for the "best Python peer" ratio (hyperws is not a peer of itself)
    )
    stats: bool = False  # prints `STATS <json>` on stderr on SIGUSR1 (the hyperws bench server)
    tls: bool = False  # its app serves wss:// when given --cert and --key (the TLS workloads)
    listed: bool = (
        True  # run when --servers is not given (False: a variant for A/B runs, named explicitly)
    )


SERVERS = [
    Server(
        "hyperws", "hyperws_server.py", module="hyperws", python_peer=False, stats=True, tls=True
    ),
    Server(
        "hyperws-ioreads",
        "hyperws_ioreads_server.py",
        module="hyperws",
        python_peer=False,
        stats=True,
        listed=False,
    ),
    Server("bun", "bun_server.js", runtime="bun", python_peer=False, tls=True),
    Server("node-ws", "node_ws_server.js", runtime="node", python_peer=False),
    Server("socketify", "socketify_server.py", module="socketify", tls=True),
    Server("picows", "picows_server.py", module="picows"),
    Server("aiohttp", "aiohttp_server.py", module="aiohttp"),
    Server("websockets", "websockets_server.py", module="websockets"),
    Server("granian", "granian_server.py", module="granian"),
    Server("uvicorn", "uvicorn_server.py", module="uvicorn"),
]
REFERENCE = "bun"  # the ratio columns: against Bun, and against the best Python peer
SUBJECT = "hyperws"  # the summary's ratios are this server's


def command(server: Server, python: str) -> list[str]:
    script = str(SERVERS_DIR / server.script)
    if server.runtime == "node":
        return ["node", script]
    if server.runtime == "bun":
        return [str(BUN), script]
    return [python, script]


def unavailable(server: Server, python: str) -> str | None:
    """Why this server cannot run here, or None."""
    if server.runtime == "node":
        if not (NODE_MODULES / "ws").is_dir():
            return f"no ws in {NODE_MODULES}; run benches/setup_peers.sh"
        return None
    if server.runtime == "bun":
        ok = subprocess.run([str(BUN), "--version"], capture_output=True, check=False)
        return (
            None if ok.returncode == 0 else f"no working bun at {BUN}; run benches/setup_peers.sh"
        )
    r = subprocess.run(
        [python, "-c", f"import {server.module}"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"not installed in {python} ({last}); run benches/setup_peers.sh"
    return None


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    description: str
    unit: str
    # (base ws:// url, seconds, warm-up seconds) -> load generator arguments
    argv: Callable[[str, float, float], list[str]]
    higher_is_better: bool = True
    # "rate": the generator's `rate`; "rss_per_conn": server RSS growth per open connection (idle workloads);
    # "peak_rss": the server's peak RSS in MiB (flood), valid only when the generator says nothing was lost;
    # a percentile of PERCENTILES ("p50", ...): the generator's round trip at that percentile, in µs
    metric: str = "rate"
    default_duration: float | None = None  # overrides --duration when that is not given
    # also show the server's RSS at start and its peak (VmHWM, read right before the server is stopped)
    peak_rss: bool = False
    # the bench app's route it needs: a server that says UNSUPPORTED for it is shown as unsupported
    route: str = "/echo"
    # count the server's syscalls (and hyperws's wake-ups) per message over the measured window
    counters: bool = False
    # over TLS: the server serves the run's throwaway certificate, the generator connects with wss://
    tls: bool = False
    # the issue's target for hyperws / Bun (a floor, or a ceiling when lower is better), shown in the summary
    target: float | None = None
    # also show the server's CPU per operation: what the server needs even when the generator is the limit
    cpu_per_op: bool = False
    # round-trip percentiles (keys of PERCENTILES) shown as columns, and as rows of the summary
    latency: tuple[str, ...] = ()
    # the issue's ceilings for hyperws / Bun on some of those percentiles, shown in the summary
    latency_targets: tuple[tuple[str, float], ...] = ()

    @property
    def under_load(self) -> bool:
        """Its figure depends on both pinned CPUs staying free (so noise and a busy generator matter)."""
        return self.metric == "rate" or self.metric in PERCENTILES


# The generator's round-trip percentiles (echo mode), by the name used here: its report's `<name>_us` field.
PERCENTILES = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9"}
RR = ("p50", "p99")  # what the request-reply workloads show


def _timed(d: float, w: float) -> list[str]:
    return ["--duration", f"{d:g}", "--warmup", f"{w:g}"]


WORKLOADS = {
    w.name: w
    for w in [
        Workload(
            "echo32",
            "echo, 32 B text, 64 connections x 16 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echo", "--conns", "64", "--inflight", "16"),
                    *("--size", "32", *_timed(d, w)),
                ]
            ),
            counters=True,
            target=0.9,
            latency=RR,
            latency_targets=(("p99", 1.2),),
        ),
        Workload(
            "rr100",
            "request-reply: echo, 32 B text, 100 connections x 1 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echo", "--conns", "100", "--inflight", "1"),
                    *("--size", "32", *_timed(d, w)),
                ]
            ),
            counters=True,
            target=1.0,
            latency=RR,
            cpu_per_op=True,
        ),
        Workload(
            "rr1000",
            "request-reply: echo, 32 B text, 1000 connections x 1 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echo", "--conns", "1000", "--inflight", "1"),
                    *("--size", "32", *_timed(d, w)),
                ]
            ),
            counters=True,
            target=1.0,
            latency=RR,
            cpu_per_op=True,
        ),
        Workload(
            "pingpong",
            "ping-pong: echo, 32 B text, 1 connection x 1 in flight: round trip p50",
            "µs",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echo", "--conns", "1", "--inflight", "1"),
                    *("--size", "32", *_timed(d, w)),
                ]
            ),
            higher_is_better=False,
            metric="p50",
            counters=True,
            target=1.1,
            latency=RR,
        ),
        Workload(
            "jsonapp",
            "JSON app: {room, text} parsed, a per-room count updated, a json.dumps reply; "
            "100 connections x 1 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/json", "--conns", "100", "--inflight", "1"),
                    *("--json", "--size", "32", *_timed(d, w)),
                ]
            ),
            route="/json",
            latency=RR,
            cpu_per_op=True,
        ),
        Workload(
            "echo16k",
            "echo, 16 KiB binary, 16 connections x 4 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echo", "--conns", "16", "--inflight", "4"),
                    *("--size", "16384", "--binary", *_timed(d, w)),
                ]
            ),
            counters=True,
        ),
        Workload(
            "echo32z",
            "echo, 32 B text, permessage-deflate (no context takeover), 64 connections x 16 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echoz", "--conns", "64", "--inflight", "16"),
                    *("--size", "32", "--deflate", *_timed(d, w)),
                ]
            ),
            route="/echoz",
            counters=True,
        ),
        Workload(
            "echo512z",
            "echo, 512 B text (compressible), permessage-deflate, 64 connections x 16 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echoz", "--conns", "64", "--inflight", "16"),
                    *("--size", "512", "--deflate", *_timed(d, w)),
                ]
            ),
            route="/echoz",
            counters=True,
        ),
        Workload(
            "fanout",
            "fan-out, 32 B to 1000 subscribers, publisher window 32",
            "deliveries/s",
            lambda u, d, w: (
                [
                    *("fanout", "--pub-url", f"{u}/pub", "--sub-url", f"{u}/sub"),
                    *("--subs", "1000", "--window", "32", "--size", "32", *_timed(d, w)),
                ]
            ),
        ),
        Workload(
            "slowsub",
            "fan-out, 1 KiB to 100 subscribers + 10 that never read, publisher window 32",
            "deliveries/s",
            lambda u, d, w: (
                [
                    *("fanout", "--pub-url", f"{u}/pub", "--sub-url", f"{u}/sub"),
                    *("--subs", "100", "--slow", "10", "--window", "32", "--size", "1024"),
                    *_timed(d, w),
                ]
            ),
            peak_rss=True,
        ),
        Workload(
            "connect",
            "connect, handshake, one echo, close; 16 at a time",
            "handshakes/s",
            lambda u, d, w: ["connect", "--url", f"{u}/echo", "--concurrency", "16", *_timed(d, w)],
            default_duration=5,
        ),
        Workload(
            "idle",
            "10000 idle connections: server RSS growth per connection",
            "KiB/conn",
            lambda u, d, w: ["idle", "--url", f"{u}/echo", "--conns", "10000", "--hold", "60"],
            higher_is_better=False,
            metric="rss_per_conn",
        ),
        Workload(
            "flood",
            "200 MiB of 64 KiB binary messages at a handler that sleeps 1 ms per message: peak RSS",
            "MiB",
            lambda u, d, w: [
                "flood",
                "--url",
                f"{u}/slow",
                "--total-mib",
                "200",
                "--size",
                "65536",
            ],
            higher_is_better=False,
            metric="peak_rss",
            peak_rss=True,
            route="/slow",
        ),
        Workload(
            "echo32tls",
            "echo over TLS 1.3, 32 B text, 64 connections x 16 in flight",
            "msg/s",
            lambda u, d, w: (
                [
                    *("echo", "--url", f"{u}/echo", "--conns", "64", "--inflight", "16"),
                    *("--size", "32", *_timed(d, w)),
                ]
            ),
            counters=True,
            tls=True,
            target=0.75,
        ),
        Workload(
            "connecttls",
            "connect, full TLS 1.3 handshake, WebSocket handshake, one echo, close; 16 at a time",
            "handshakes/s",
            lambda u, d, w: ["connect", "--url", f"{u}/echo", "--concurrency", "16", *_timed(d, w)],
            default_duration=5,
            tls=True,
            target=1.0,
            cpu_per_op=True,
        ),
        Workload(
            "idletls",
            "10000 idle TLS connections: server RSS growth per connection",
            "KiB/conn",
            lambda u, d, w: ["idle", "--url", f"{u}/echo", "--conns", "10000", "--hold", "60"],
            higher_is_better=False,
            metric="rss_per_conn",
            tls=True,
            target=1.25,
        ),
    ]
}
DEFAULT_WORKLOADS = "echo32,echo16k"


# --- TLS ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """The run's throwaway certificate: the CA the generator trusts, the chain and key the servers serve."""

    ca: Path
    cert: Path
    key: Path
    name: str = "localhost"  # what the generator sends as SNI and checks against the certificate

    def server_args(self) -> list[str]:
        return ["--cert", str(self.cert), "--key", str(self.key)]

    def loadgen_args(self) -> list[str]:
        return ["--ca", str(self.ca), "--tls-name", self.name]


def make_certificate(folder: Path) -> TlsFiles:
    """A throwaway CA and a leaf certificate for localhost and 127.0.0.1, both ECDSA P-256 (trustme's default
    key type), written as PEM into `folder`."""
    import trustme  # installed by setup_peers.sh

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


# --- one run ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    workload: str
    server: str
    rep: int
    valid: bool = False
    value: float | None = None
    errors: int = 0
    lost: int = 0
    server_cpu: float | None = None  # seconds of CPU the server used while the generator ran
    loadgen_cpu: float | None = None
    wall: float | None = None
    # CPU seconds other processes used meanwhile on the server's CPU and on the generator's
    other_server_cpu: float | None = None
    other_loadgen_cpu: float | None = None
    rss_start_kib: int | None = None  # server RSS just before the generator starts
    rss_peak_kib: int | None = None  # server VmHWM (its peak RSS), right before it is stopped
    note: str = ""
    unsupported: str = (
        ""  # why the server does not serve the workload's route (then nothing was run)
    )
    # per echoed message over the measured window: "writes", "reads", "epoll" (syscalls of the server);
    # hyperws also "wakeups_per_s", "events_per_wakeup"
    counters: dict[str, float] = dataclasses.field(default_factory=dict)
    report: dict[str, object] | None = None

    def cell(self) -> str:
        if self.unsupported:
            return "unsupported"
        if self.value is None or not self.valid:
            return f"INVALID ({self.errors} errors" + (f", {self.lost} lost)" if self.lost else ")")
        return fmt(self.value)

    def noise(self) -> float:
        """Share of a needed pinned CPU that other processes took: always the server's; the generator's only
        when the generator needed nearly all of it."""
        if not self.wall or self.other_server_cpu is None or self.other_loadgen_cpu is None:
            return 0.0
        share = self.other_server_cpu / self.wall
        if ((self.loadgen_cpu or 0) + self.other_loadgen_cpu) / self.wall > 0.9:
            share = max(share, self.other_loadgen_cpu / self.wall)
        return share

    def cpu_per_op(self) -> float | None:
        """The server's CPU per operation in microseconds: its CPU seconds over the generator's whole run
        divided by rate x that run's length (warm-up and measured window run at the same rate; start-up and
        drain make it a slight overestimate). What the server needs even when the generator is the limit."""
        if self.server_cpu is None or not self.value or not self.wall:
            return None
        return self.server_cpu / (self.value * self.wall) * 1e6

    def latency(self, percentile: str) -> float | None:
        """The round trip at `percentile` (a key of PERCENTILES) in µs, from the generator's report."""
        v = (self.report or {}).get(f"{percentile}_us")
        return float(v) if isinstance(v, (int, float)) else None

    def why(self) -> str:
        """Why the run is invalid, in a few words (for the notes and the progress line)."""
        if self.note:
            return self.note
        samples = list((self.report or {}).get("error_samples", []))  # type: ignore[call-overload]
        return str(samples[0]) if samples else ""


def fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.1f} k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


NICE = 0  # set from --nice


def pin(cpu: int) -> list[str]:
    """Command prefix: pinned to `cpu`, at the chosen niceness (ahead of builds sharing the machine)."""
    return (["nice", "-n", str(NICE)] if NICE else []) + ["taskset", "-c", str(cpu)]


def interpreter(path: str) -> str:
    """An interpreter path as the servers, run from benches/servers, can use it: absolute, not resolved
    (a venv's python is a symlink out of the venv)."""
    return str(Path(path).absolute())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float | None:
    """User+system CPU seconds of a process and all its threads, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except OSError:
        return None


def proc_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a process since it started."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def prepare_child() -> None:
    """Runs in each server and generator child, after setsid: the same (highest) fd limit for all (the idle
    workload needs 10 000+), and the niceness also for the child's new scheduler autogroup, without which
    `nice` only ranks processes within one session and the machine's other work keeps its full share."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if NICE:
        try:
            Path("/proc/self/autogroup").write_text(str(NICE))
        except OSError:
            pass


def cpu_busy(cpu: int) -> float:
    """Seconds one CPU spent running processes (user, nice, system) or stolen by the hypervisor, since boot.
    Interrupt and softirq time is left out, and so is that CPU's ksoftirqd thread: on loopback that is mostly
    the benchmark's own TCP traffic, which the kernel charges to no process."""
    busy = 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, line.split()[1:9])
            busy = (user + nice + system + steal) / CLK_TCK
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == f"ksoftirqd/{cpu}":
                    busy -= proc_cpu(int(d.name)) or 0.0
            except OSError:
                pass
    return busy


class ServerProcess:
    def __init__(
        self, server: Server, python: str, cpu: int, log: Path, tls: TlsFiles | None = None
    ) -> None:
        self.server = server
        self.tls = tls
        self.port = free_port()
        self.log = log
        self.unsupported: dict[
            str, str
        ] = {}  # route -> why, from `UNSUPPORTED <route> <why>` lines
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [
                *pin(cpu),
                *command(server, python),
                *("--port", str(self.port)),
                *(tls.server_args() if tls else []),
            ],
            cwd=SERVERS_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            start_new_session=True,
            preexec_fn=prepare_child,  # compare.py has no threads
        )

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> str | None:
        """None when READY was printed, else why not."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                lines = buf.decode(errors="replace").splitlines()
                for line in lines:
                    if line.startswith("UNSUPPORTED "):
                        _, route, *why = line.split(" ", 2)
                        self.unsupported[route] = " ".join(why)
                if any(line.strip() == "READY" for line in lines):
                    return None
            elif self.proc.poll() is not None:
                break
        self.stop()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
        why = "exited" if self.proc.returncode is not None else f"no READY within {timeout:g} s"
        return f"{why}: " + (" | ".join(tail) if tail else "(no output)")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log_file.close()


def run_loadgen(
    loadgen: Path,
    argv: list[str],
    cpu: int,
    timeout: float,
    on_ready: Callable[[int], None] | None,
    on_window: Callable[[str], None] | None = None,
) -> tuple[dict[str, object] | None, float, str]:
    """Runs the generator pinned to `cpu`; returns (its JSON or None, its CPU seconds, stderr/why).
    `on_ready(n)` is called on its `READY <n>` line (idle), `on_window("start"|"end")` on its WINDOW lines."""
    proc = subprocess.Popen(
        [*pin(cpu), str(loadgen), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=prepare_child,
    )
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out, err, why = b"", b"", ""
    open_streams = 2
    while open_streams:
        left = deadline - time.monotonic()
        if left <= 0:
            why = f"load generator killed after {timeout:g} s"
            proc.kill()
            break
        for key, _ in sel.select(timeout=min(left, 1)):
            chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
            elif key.data == "err":
                err += chunk
            else:
                out += chunk
                while b"\n" in out and not out.startswith(b"{"):
                    line, out = out.split(b"\n", 1)
                    words = line.decode(errors="replace").split()
                    if words[:1] == ["READY"] and on_ready:
                        on_ready(int(words[1]))
                        on_ready = None
                        proc.stdin.close()  # tells the generator the measurement is done
                    elif words[:1] == ["WINDOW"] and on_window:
                        on_window(words[1])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if not f.closed:
            f.close()
    report = None
    for line in out.decode(errors="replace").splitlines()[::-1]:
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    if report is None and not why:
        why = f"no JSON from the load generator (exit {proc.returncode}): " + " | ".join(
            err.decode(errors="replace").strip().splitlines()[-3:]
        )
    return report, usage.ru_utime + usage.ru_stime, why


def exit_reason(rc: int) -> str:
    if rc >= 0:
        return f"exit status {rc}"
    try:
        return f"killed by {signal.Signals(-rc).name}"
    except ValueError:
        return f"killed by signal {-rc}"


SYSCALLS = {
    "writes": ("write", "writev", "pwritev", "sendto", "sendmsg", "sendmmsg"),
    "reads": ("read", "readv", "recvfrom", "recvmsg", "recvmmsg"),
    "epoll": ("epoll_wait", "epoll_pwait", "epoll_pwait2"),
}


COUNTING_SECONDS = 3.0  # measured seconds of the separate counting pass


def loadgen_argv(
    workload: Workload, srv: ServerProcess, duration: float, warmup: float
) -> list[str]:
    """The generator's arguments for this workload against this server (with the CA to trust over TLS)."""
    argv = workload.argv(srv.url, duration, warmup)
    return argv + (srv.tls.loadgen_args() if srv.tls else [])


class Counters:
    """Samples the server between the generator's WINDOW markers. With `stats`: its STATS lines (SIGUSR1 makes
    the hyperws bench server print `server.stats()`; nearly free, so done in the measured run). With
    `syscalls`: its syscalls, with `perf stat` on the syscall tracepoints, attached to every thread of the
    server, started disabled, enabled and disabled through its control pipe. Tracing every syscall slows a
    server down (by about a third for hyperws on this VM), so that is done in a separate, shorter counting pass
    on the same server process after the measured run, never while the rate is measured. /proc/<pid>/io's
    `syscw` would cost nothing but counts only write/writev, not send/sendto/sendmsg (what uWebSockets, so Bun
    and socketify, use)."""

    def __init__(self, pid: int, stats: bool, syscalls: bool) -> None:
        self.pid, self.stats = pid, stats
        self.perf: subprocess.Popen[bytes] | None = None
        self.error = ""
        events = [f"syscalls:sys_enter_{n}" for names in SYSCALLS.values() for n in names]
        ctl_r, self._ctl = os.pipe()
        self._ack, ack_w = os.pipe()
        if not syscalls:
            os.close(ctl_r)
            os.close(ack_w)
            return
        try:
            self.perf = subprocess.Popen(
                [
                    *("perf", "stat", "-x", ",", "-D", "-1"),
                    *("--control", f"fd:{ctl_r},{ack_w}", "-e", ",".join(events), "-p", str(pid)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(ctl_r, ack_w),
            )
        except OSError as e:
            self.error = f"perf: {e}"
        os.close(ctl_r)
        os.close(ack_w)

    def _control(self, cmd: str) -> None:
        if self.perf is None or self.perf.poll() is not None:
            return
        os.write(self._ctl, cmd.encode() + b"\n")
        sel = selectors.DefaultSelector()
        sel.register(self._ack, selectors.EVENT_READ)
        if sel.select(timeout=2):
            os.read(self._ack, 64)
        sel.close()

    def window(self, edge: str) -> None:
        self._control("enable" if edge == "start" else "disable")
        if self.stats:
            os.kill(self.pid, signal.SIGUSR1)

    def finish(self, messages: float, seconds: float, log: Path) -> dict[str, float]:
        """Per-message figures (stops perf; reads the STATS lines from the server's log)."""
        counts: dict[str, float] = {}
        if self.perf is not None:
            if self.perf.poll() is None:
                self.perf.send_signal(signal.SIGINT)
            try:
                _, err = self.perf.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.perf.kill()
                _, err = self.perf.communicate()
            totals = parse_perf(err.decode(errors="replace"))
            if totals is None:
                self.error = "perf stat: " + err.decode(errors="replace").strip()[-200:]
            elif messages > 0:
                for key, names in SYSCALLS.items():
                    counts[key] = sum(totals.get(n, 0) for n in names) / messages
        os.close(self._ctl)
        os.close(self._ack)
        if self.stats:
            stats = [
                json.loads(line[6:])
                for line in log.read_text(errors="replace").splitlines()
                if line.startswith("STATS ")
            ]
            if len(stats) >= 2 and seconds > 0:
                wakeups = stats[-1]["loop_wakeups"] - stats[-2]["loop_wakeups"]
                events = stats[-1]["events"] - stats[-2]["events"]
                counts["wakeups_per_s"] = wakeups / seconds
                counts["events_per_wakeup"] = events / wakeups if wakeups else 0.0
        return counts


def parse_perf(text: str) -> dict[str, float] | None:
    """`perf stat -x ,` output -> {syscall name: count}; None when it counted nothing at all."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_"):
            name = fields[2].removeprefix("syscalls:sys_enter_")
            try:
                totals[name] = float(fields[0])
            except ValueError:  # "<not counted>": none in the window
                totals[name] = 0.0
    return totals or None


def finish_counters(
    counters: Counters, report: dict[str, object] | None, log: Path
) -> dict[str, float]:
    r = report or {}
    out = counters.finish(
        float(r.get("messages", 0)),  # type: ignore[arg-type]
        float(r.get("seconds", 0)),  # type: ignore[arg-type]
        log,
    )
    if counters.error:
        print(f"      (counters: {counters.error})", flush=True)
    return out


def counting_pass(
    args: argparse.Namespace, workload: Workload, srv: ServerProcess, run: Run
) -> str:
    """A second, short run of the same load on the same server with its syscalls counted (see Counters).
    Returns why it was invalid ("" when valid): that makes the run INVALID like any other error."""
    counters = Counters(srv.proc.pid, False, syscalls=True)
    argv = loadgen_argv(workload, srv, COUNTING_SECONDS, 1.0)
    report, _, why = run_loadgen(
        args.loadgen, argv, args.loadgen_cpu, COUNTING_SECONDS + 60, None, counters.window
    )
    run.counters.update(finish_counters(counters, report, srv.log))
    if report is None or not report.get("valid"):
        samples = list((report or {}).get("error_samples", []))  # type: ignore[call-overload]
        return "counting pass: " + (str(samples[0]) if samples else why or "invalid")
    return ""


def one_run(
    args: argparse.Namespace, workload: Workload, server: Server, rep: int, logs: Path
) -> tuple[Run, str | None]:
    """Returns the run and, if the server could not start, why."""
    run = Run(workload.name, server.name, rep)
    if workload.tls and not server.tls:
        run.unsupported = "its bench app does not serve TLS"
        return run, None
    srv = ServerProcess(
        server,
        args.python,
        args.server_cpu,
        logs / f"{workload.name}-{server.name}-{rep}.log",
        args.tls if workload.tls else None,
    )
    failed = srv.wait_ready()
    if failed:
        run.note = "server did not start"
        return run, failed
    if workload.route in srv.unsupported:
        srv.stop()
        run.unsupported = srv.unsupported[workload.route] or "route not served"
        return run, None
    duration = args.duration
    if duration is None:
        duration = workload.default_duration or 10.0
    argv = loadgen_argv(workload, srv, duration, args.warmup)
    rss: dict[str, float] = {}

    def on_ready(n: int) -> None:  # idle: all connections open
        time.sleep(1.0)  # let the server finish its per-connection work
        after = proc_rss_kib(srv.proc.pid)
        if after is not None and n > 0:
            rss["per_conn"] = (after - rss["before"]) / n
            rss["after"] = after

    counting = workload.counters and args.counters
    counters = Counters(srv.proc.pid, server.stats, syscalls=False) if counting else None
    time.sleep(0.3)
    rss["before"] = proc_rss_kib(srv.proc.pid) or 0
    cpu0, t0 = proc_cpu(srv.proc.pid), time.monotonic()
    busy0 = cpu_busy(args.server_cpu), cpu_busy(args.loadgen_cpu)
    report, gen_cpu, why = run_loadgen(
        args.loadgen,
        argv,
        args.loadgen_cpu,
        args.warmup + duration + 120,
        on_ready,
        counters.window if counters else None,
    )
    cpu1, t1 = proc_cpu(srv.proc.pid), time.monotonic()
    busy1 = cpu_busy(args.server_cpu), cpu_busy(args.loadgen_cpu)
    alive = srv.proc.poll() is None
    run.rss_start_kib = int(rss["before"]) or None
    run.rss_peak_kib = proc_hwm_kib(srv.proc.pid)
    counting_failed = ""
    if counters:
        run.counters = finish_counters(counters, report, srv.log)
        if alive and report and report.get("valid"):
            counting_failed = counting_pass(args, workload, srv, run)
    srv.stop()

    run.wall, run.loadgen_cpu = t1 - t0, gen_cpu
    if cpu0 is not None and cpu1 is not None:
        run.server_cpu = cpu1 - cpu0
        run.other_server_cpu = max(0.0, busy1[0] - busy0[0] - run.server_cpu)
        run.other_loadgen_cpu = max(0.0, busy1[1] - busy0[1] - gen_cpu)
    run.report = report
    if report is None:
        run.note = why
        return run, None
    run.errors, run.lost = int(report.get("errors", 0)), int(report.get("lost", 0))  # type: ignore[call-overload]
    run.valid = bool(report.get("valid")) and alive and not counting_failed
    if counting_failed:
        run.note = counting_failed
    if not alive:
        run.note = f"server died during the run: {exit_reason(srv.proc.returncode)}"
    if workload.metric == "rate":
        if "rate" in report:
            run.value = float(report["rate"])  # type: ignore[arg-type]
        else:
            run.valid = False
            run.note = run.note or run.why() or "no rate in the report"
    elif workload.metric in PERCENTILES:
        run.value = run.latency(workload.metric)
        if run.value is None:
            run.valid = False
            run.note = run.note or run.why() or "no round trip measured"
    elif workload.metric == "peak_rss":
        if run.rss_peak_kib is not None:
            run.value = run.rss_peak_kib / 1024
        else:
            run.valid, run.note = False, "no peak RSS sample"
    elif "per_conn" in rss:
        run.value = rss["per_conn"]
    else:
        run.valid, run.note = False, "no RSS sample"
    return run, None


# --- the table --------------------------------------------------------------------------------------------------


def medians_of(
    runs: list[Run], server_order: list[str], measure: Callable[[Run], float | None] | None = None
) -> dict[str, float]:
    """Median of the valid repetitions' values (or of another `measure` of them), per server that has
    any."""
    out: dict[str, float] = {}
    for name in server_order:
        mine = [r for r in runs if r.server == name and r.valid]
        vals = [v for r in mine if (v := measure(r) if measure else r.value) is not None]
        if vals:
            out[name] = statistics.median(vals)
    return out


def best_python_peer(higher_is_better: bool, medians: dict[str, float]) -> str | None:
    pick = max if higher_is_better else min
    peers = {s.name for s in SERVERS if s.python_peer}
    meds = {n: v for n, v in medians.items() if n in peers}
    return pick(meds, key=lambda n: meds[n]) if meds else None


def ratio(mine: float | None, other: float | None) -> str:
    return f"{mine / other:.2f}x" if mine is not None and other else DASH


def counter_cells(runs: list[Run]) -> list[str]:
    """Medians over the valid runs: write, read and epoll-wait syscalls per message; hyperws's wake-ups."""

    def med(key: str) -> float | None:
        vals = [r.counters[key] for r in runs if r.valid and key in r.counters]
        return statistics.median(vals) if vals else None

    cells = []
    for key in SYSCALLS:
        v = med(key)
        cells.append(f"{v:.3f}" if v is not None else DASH)
    wakeups, per = med("wakeups_per_s"), med("events_per_wakeup")
    cells.append(
        f"{fmt(wakeups)}/s, {per:.0f} events each" if wakeups is not None and per else DASH
    )
    return cells


def cpu_per_op_cell(ok: list[Run]) -> str:
    """Median server CPU per operation over the valid runs, in microseconds (`Run.cpu_per_op`)."""
    per = [v for r in ok if (v := r.cpu_per_op()) is not None]
    return fmt(statistics.median(per)) if per else DASH


def notes_for(workload: Workload, mine: list[Run], ok: list[Run]) -> list[str]:
    notes = []
    for why in dict.fromkeys(r.why() for r in mine if not r.valid and not r.unsupported):
        if why:
            notes.append(f"INVALID: {why[:100]}")
    for why in dict.fromkeys(r.unsupported for r in mine if r.unsupported):
        notes.append(f"unsupported: {why}")
    for tls in dict.fromkeys(str((r.report or {}).get("tls")) for r in ok if workload.tls):
        notes.append(f"negotiated {tls}")
    plain = [r for r in ok if (r.report or {}).get("compressed_in") == 0]
    if plain:
        notes.append(f"sent every echo uncompressed in {len(plain)} rep(s)")
    busy = [
        r
        for r in ok
        if r.loadgen_cpu and r.wall and r.loadgen_cpu / r.wall > 0.9 and workload.under_load
    ]
    if busy:
        notes.append(f"generator-bound in {len(busy)} rep(s): a lower bound")
    held = [r for r in ok if (r.report or {}).get("held_for_laggards")]
    if held:
        notes.append(
            f"publisher held for lagging subscribers in {len(held)} rep(s) (see fanout.rs)"
        )
    # (the idle and flood workloads leave the CPUs idle on purpose)
    worst = max((r.noise() for r in mine if r.valid and workload.under_load), default=0)
    if worst > 0.05:
        notes.append(f"other processes took up to {worst:.0%} of a needed CPU")
    return notes


def summarize(workload: Workload, runs: list[Run], server_order: list[str]) -> list[list[str]]:
    medians = medians_of(runs, server_order)
    best_peer = best_python_peer(workload.higher_is_better, medians)
    ref = medians.get(REFERENCE)
    best = medians.get(best_peer) if best_peer else None
    rows = []
    for name in server_order:
        mine = [r for r in runs if r.server == name]
        if not mine:
            continue
        ok = [r for r in mine if r.valid and r.value is not None]
        vals = [r.value for r in ok if r.value is not None]
        med = medians.get(name)
        unsupported = all(r.unsupported for r in mine)
        cpu = [f"{r.server_cpu:.2f}" if r.server_cpu is not None else "?" for r in mine]
        gen = [f"{r.loadgen_cpu:.2f}" if r.loadgen_cpu is not None else "?" for r in mine]
        rss_cols = []
        if workload.peak_rss:
            rss_cols = [
                ", ".join(mib(r.rss_peak_kib) for r in mine),
                ", ".join(mib(r.rss_start_kib) for r in mine),
            ]
        rows.append(
            [
                name,
                "unsupported" if unsupported else fmt(med) if med is not None else "INVALID",
                f"{fmt(min(vals))} {DASH} {fmt(max(vals))}" if vals else DASH,
                ", ".join(r.cell() for r in mine),
                *rss_cols,
                *(latency_cells(workload, ok) if workload.latency else []),
                *(counter_cells(mine) if workload.counters else []),
                *([cpu_per_op_cell(ok)] if workload.cpu_per_op else []),
                " / ".join(cpu),
                " / ".join(gen),
                f"{len(ok)}/{len(mine)}",
                ratio(med, ref),
                f"{ratio(med, best)} ({best_peer})" if med is not None and best else DASH,
                "; ".join(notes_for(workload, mine, ok)),
            ]
        )
    return rows


def latency_cells(workload: Workload, ok: list[Run]) -> list[str]:
    """Per percentile shown: the median round trip over the valid runs, and the min - max."""
    cells = []
    for key in workload.latency:
        vals = [v for r in ok if (v := r.latency(key)) is not None]
        cells.append(
            f"{fmt(statistics.median(vals))} ({fmt(min(vals))} {DASH} {fmt(max(vals))})"
            if vals
            else DASH
        )
    return cells


def summary_rows(all_runs: dict[str, list[Run]], server_order: list[str]) -> list[list[str]]:
    """One row per workload, and one per round-trip percentile it shows (other than its own metric): every
    server's median, then hyperws's ratios to Bun (with the issue's target) and to the best Python peer."""
    rows = []
    for wname, runs in all_runs.items():
        workload = WORKLOADS[wname]
        better = "higher" if workload.higher_is_better else "lower"
        rows.append(
            summary_row(
                runs,
                server_order,
                f"{wname} ({workload.unit}, {better} is better)",
                None,
                workload.higher_is_better,
                workload.target,
            )
        )
        ceilings = dict(workload.latency_targets)
        for key in workload.latency:
            if key != workload.metric:
                label = f"{wname} round trip {PERCENTILES[key]} (µs, lower is better)"
                rows.append(
                    summary_row(
                        runs,
                        server_order,
                        label,
                        round_trip_at(key),
                        False,
                        ceilings.get(key),
                    )
                )
        if workload.cpu_per_op:
            label = f"{wname} server CPU µs per op (≈, lower is better)"
            rows.append(summary_row(runs, server_order, label, Run.cpu_per_op, False, None))
    return rows


def round_trip_at(percentile: str) -> Callable[[Run], float | None]:
    return lambda run: run.latency(percentile)


def summary_row(
    runs: list[Run],
    server_order: list[str],
    label: str,
    measure: Callable[[Run], float | None] | None,
    higher_is_better: bool,
    target: float | None,
) -> list[str]:
    """The summary's row for the runs' values, or another `measure` of them (a round-trip percentile, the
    CPU per operation)."""
    medians = medians_of(runs, server_order, measure)
    best_peer = best_python_peer(higher_is_better, medians)
    cells = []
    for name in server_order:
        mine = [r for r in runs if r.server == name]
        if not mine:
            cells.append(DASH)
        elif all(r.unsupported for r in mine):
            cells.append("unsupported")
        else:
            cells.append(fmt(medians[name]) if name in medians else "INVALID")
    subject = medians.get(SUBJECT)
    return [
        label,
        *cells,
        ratio(subject, medians.get(REFERENCE)),
        target_cell(target, higher_is_better, subject, medians.get(REFERENCE)),
        f"{ratio(subject, medians.get(best_peer))} ({best_peer})" if best_peer else DASH,
    ]


def target_cell(
    target: float | None, higher_is_better: bool, mine: float | None, reference: float | None
) -> str:
    """The issue's target for the subject / reference ratio (a floor, or a ceiling when lower is better), and
    whether this run met it."""
    if target is None:
        return DASH
    bound = f"{'>=' if higher_is_better else '<='} {target:.2f}x"
    if mine is None or not reference:
        return f"{bound}: no valid ratio"
    r = mine / reference
    met = r >= target if higher_is_better else r <= target
    return f"{bound}: {'met' if met else 'MISSED'}"


def summary_headers(server_order: list[str]) -> list[str]:
    return [
        "workload",
        *server_order,
        f"{SUBJECT} / {REFERENCE}",
        "target",
        f"{SUBJECT} / best Python peer",
    ]


def mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f}" if kib is not None else "?"


HEADERS = [
    "server",
    "median",
    f"min {DASH} max",
    "each rep",
    "server CPU s",
    "loadgen CPU s",
    "valid",
    f"vs {REFERENCE}",
    "vs best Python peer",
    "notes",
]


RSS_HEADERS = ["peak RSS MiB (each rep)", "RSS at start MiB"]
COUNTER_HEADERS = [
    "write syscalls/msg",
    "read syscalls/msg",
    "epoll waits/msg",
    "hyperws loop wake-ups",
]


def headers(workload: Workload) -> list[str]:
    """The table's columns: the peak-RSS, round-trip, counter and CPU-per-operation ones go after "each rep" for
    the workloads that have them."""
    extra = (
        (RSS_HEADERS if workload.peak_rss else [])
        + [f"round trip {PERCENTILES[k]} µs (min {DASH} max)" for k in workload.latency]
        + (COUNTER_HEADERS if workload.counters else [])
        + (["server CPU µs/op (≈)"] if workload.cpu_per_op else [])
    )
    return HEADERS[:4] + extra + HEADERS[4:]


def text_table(rows: list[list[str]], heads: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def md_table(rows: list[list[str]], heads: list[str]) -> str:
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


PY_PACKAGES = (
    "hyperws",
    "websockets",
    "picows",
    "aiohttp",
    "socketify",
    "granian",
    "uvicorn",
    "uvloop",
)


def versions(python: str) -> str:
    code = (
        "import importlib.metadata as m, platform\n"
        "out = ['Python ' + platform.python_version()]\n"
        f"for p in {PY_PACKAGES!r}:\n"
        "    try: out.append(p + ' ' + m.version(p))\n"
        "    except Exception: pass\n"
        "print(', '.join(out))"
    )
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    out = [r.stdout.strip() or "?"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    try:
        ws = json.loads((NODE_MODULES / "ws" / "package.json").read_text())["version"]
        out.append(f"Node {node.stdout.strip()} with ws {ws}")
    except (OSError, ValueError, KeyError):
        pass
    bun = subprocess.run([str(BUN), "--version"], capture_output=True, text=True, check=False)
    if bun.returncode == 0:
        out.append(f"Bun {bun.stdout.strip()}")
    return ", ".join(out)


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {int(mem) // 1024 // 1024} GiB, Linux {platform.release()}"
    )


def hyperws_build() -> str:
    """Which source the installed hyperws was built from, as setup_peers.sh recorded it."""
    try:
        return (PEERS_DIR / "hyperws-build.txt").read_text().strip()
    except OSError:
        return f"(build unknown; checkout at {git_rev()})"


def git_rev() -> str:
    r = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (r.stdout.strip() or "?") + (" (with local changes)" if dirty.stdout.strip() else "")


# --- main -------------------------------------------------------------------------------------------------------


def main() -> int:
    venv_python = PEERS_DIR / "venv" / "bin" / "python"
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--workloads",
        default=DEFAULT_WORKLOADS,
        help=f"comma-separated, or 'all' (of: {', '.join(WORKLOADS)}); default {DEFAULT_WORKLOADS}",
    )
    p.add_argument(
        "--servers",
        default=",".join(s.name for s in SERVERS if s.listed),
        help="comma-separated (hyperws-ioreads, hyperws with inline_reads=False, only when named)",
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--duration", type=float, default=None, help="measured seconds per run (default 10)"
    )
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--loadgen-cpu", type=int, default=1)
    p.add_argument(
        "--python",
        default=str(venv_python if venv_python.exists() else sys.executable),
        type=interpreter,
        help="interpreter that runs the servers (default: the venv made by setup_peers.sh)",
    )
    p.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN)
    p.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of the server and the generator (default -10 as root, so other work on the "
        "machine disturbs less; 0 leaves it alone)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="markdown file (default benches/results/<date>.md)"
    )
    p.add_argument(
        "--no-counters",
        dest="counters",
        action="store_false",
        help="do not count the server's syscalls (perf stat) and hyperws's wake-ups in the echo workloads",
    )
    args = p.parse_args()

    global NICE
    NICE = args.nice
    names = list(WORKLOADS) if args.workloads == "all" else args.workloads.split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    wanted = args.servers.split(",")
    bad = [n for n in wanted if n not in {s.name for s in SERVERS}]
    if bad:
        p.error(f"unknown server(s) {bad}")
    if not args.loadgen.exists():
        p.error(f"no load generator at {args.loadgen}: run benches/setup_peers.sh first")

    tls_dir = None
    args.tls = None
    if any(WORKLOADS[n].tls for n in names):
        tls_dir = tempfile.TemporaryDirectory(prefix="hyperws-bench-tls-")
        try:
            args.tls = make_certificate(Path(tls_dir.name))
        except ImportError:
            p.error(
                "the TLS workloads need trustme in the servers' venv: run benches/setup_peers.sh"
            )
    os.environ["LD_LIBRARY_PATH"] = ":".join(
        p for p in (str(LIBUV_DIR), os.environ.get("LD_LIBRARY_PATH", "")) if p
    )
    skipped: dict[str, str] = {}
    servers = []
    for s in SERVERS:
        if s.name not in wanted:
            continue
        why = unavailable(s, args.python)
        if why:
            skipped[s.name] = why
            print(f"SKIP {s.name}: {why}", flush=True)
        else:
            servers.append(s)

    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    RESULTS_DIR.mkdir(exist_ok=True)
    logs = RESULTS_DIR / f"{stamp}-logs"
    logs.mkdir()
    raw = (RESULTS_DIR / f"{stamp}.jsonl").open("w")
    all_runs: dict[str, list[Run]] = {}
    for wname in names:
        workload = WORKLOADS[wname]
        runs: list[Run] = []
        for rep in range(1, args.reps + 1):
            for server in servers:
                if server.name in skipped:
                    continue
                print(f"[{wname} rep {rep}/{args.reps}] {server.name} ...", end=" ", flush=True)
                run, failed = one_run(args, workload, server, rep, logs)
                if failed:
                    skipped[server.name] = f"failed to start: {failed}"
                    print(f"SKIP: {skipped[server.name]}", flush=True)
                    continue
                runs.append(run)
                raw.write(json.dumps(dataclasses.asdict(run)) + "\n")
                raw.flush()
                extra = []
                if run.server_cpu is not None:
                    extra.append(f"server CPU {run.server_cpu:.2f} s")
                if run.loadgen_cpu is not None:
                    extra.append(f"loadgen CPU {run.loadgen_cpu:.2f} s")
                if (
                    run.other_server_cpu is not None
                    and run.other_loadgen_cpu is not None
                    and run.wall
                ):
                    extra.append(
                        f"other processes took {run.other_server_cpu / run.wall:.0%} of the server's "
                        f"CPU, {run.other_loadgen_cpu / run.wall:.0%} of the generator's"
                    )
                if workload.peak_rss:
                    extra.append(
                        f"server RSS {mib(run.rss_start_kib)} MiB at start, peak {mib(run.rss_peak_kib)} MiB"
                    )
                extra += [
                    f"{PERCENTILES[k]} {fmt(v)} µs"
                    for k in workload.latency
                    if run.valid and (v := run.latency(k)) is not None
                ]
                if run.counters:
                    extra.append(
                        ", ".join(f"{k} {v:.3g}" for k, v in run.counters.items())
                        + " (per message)"
                    )
                print(f"{run.cell()} {workload.unit}  ({', '.join(extra)})", flush=True)
                if not run.valid and run.note:
                    print(f"      {run.note}", flush=True)
                if not run.valid and run.report:
                    for sample in list(run.report.get("error_samples", []))[:3]:  # type: ignore[call-overload]
                        print(f"      {sample}", flush=True)
        all_runs[wname] = runs
    raw.close()

    order = [s.name for s in servers]
    head = [
        f"# WebSocket server comparison, {stamp.replace('_', ' ')}",
        "",
        (
            f"- machine: {machine()}; server pinned to CPU {args.server_cpu}, load generator to CPU "
            f"{args.loadgen_cpu}, both at niceness {args.nice}"
        ),
        f"- software: {versions(args.python)}; hyperws {hyperws_build()}",
        (
            f"- command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`; {args.reps} "
            f"repetitions, servers interleaved, a fresh server process per run, warm-up {args.warmup:g} s"
        ),
        f"- median and min {DASH} max over valid repetitions; a repetition with any error or loss is INVALID",
        f"- ratios: against {REFERENCE}, and against the best Python peer of that workload",
        "- server CPU s: CPU the server process used while the generator ran, per repetition",
    ]
    if args.tls:
        head.append(
            "- TLS workloads: one throwaway certificate for every server (trustme: CA and leaf ECDSA P-256, "
            f"for {args.tls.name} and 127.0.0.1); the generator: rustls (aws-lc-rs), TLS 1.3 only, X25519 only, "
            "a full handshake per connection (no resumption), SNI "
            f"{args.tls.name}, ALPN http/1.1"
        )
    for name, why in skipped.items():
        head.append(f"- skipped {name}: {why}")
    md, text = list(head), []
    for wname, runs in all_runs.items():
        workload = WORKLOADS[wname]
        rows = summarize(workload, runs, order)
        better = "higher" if workload.higher_is_better else "lower"
        title = f"{wname}: {workload.description} ({workload.unit}, {better} is better)"
        heads = headers(workload)
        md += ["", f"## {title}", "", md_table(rows, heads) if rows else "(no runs)"]
        text += ["", title, text_table(rows, heads) if rows else "(no runs)"]
    if all_runs and order:
        rows, heads = summary_rows(all_runs, order), summary_headers(order)
        md += ["", "## Summary (medians)", "", md_table(rows, heads)]
        text += ["", "Summary (medians)", text_table(rows, heads)]
    print("\n".join(text))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    out = args.out or RESULTS_DIR / f"{stamp}.md"
    out.write_text("\n".join(md) + "\n")
    print(f"\nwritten: {out} (raw runs: {RESULTS_DIR / (stamp + '.jsonl')}, server logs: {logs})")
    if tls_dir:
        tls_dir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
