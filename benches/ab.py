"""Two builds or settings of hyperws side by side *at the same time*: both bench servers pinned to CPU 0,
one load generator for each pinned to CPU 1, started together. The scheduler shares each core between
the two, so whatever slows the machine down during a run (on a VM, most of the variation between runs)
slows both alike, and the ratio of their rates is the inverse ratio of what a message (or a handshake)
costs each: an A/A run gives 1.00 ± 0.01 on the 2-core development VM, where sequential runs of the same
build spread by ± 15 %. What it does not give is latency: each server is preempted by the other.

    benches/.peers/venv/bin/python benches/ab.py --a-python /tmp/old/bin/python --b-python .venv/bin/python
    benches/.peers/venv/bin/python benches/ab.py --b-env HYPERWS_BENCH_IO_READS=1 --workload connect
    benches/.peers/venv/bin/python benches/ab.py --a-server picows --b-python .venv/bin/python

A and B default to the same interpreter and no extra environment (an A/A run). Prints each run and the
medians of B's rate over A's and of B's server CPU per message (or handshake, or delivery) over A's; the second
is the one to read when the generators, not the servers, are the bottleneck. A run whose generator saw an error is reported and left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# the comparison harness beside this script: its paths, pinning and /proc reading
from compare import BUN, DEFAULT_LOADGEN, SERVERS_DIR, free_port, interpreter, pin, proc_cpu


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--a-env/--b-env take NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


PEERS = ["hyperws", "bun", "picows", "socketify", "websockets"]


def start_server(name: str, python: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The bench server of `name` (benches/servers/) under `python`; Bun's when either is "bun"."""
    app = (
        [str(BUN), "bun_server.js"]
        if "bun" in (name, python)
        else [interpreter(python), f"{name}_server.py"]
    )
    server = subprocess.Popen(
        [*pin(0), *app, "--port", str(port)],
        cwd=SERVERS_DIR,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdout is not None
    # A peer first names the routes of the bench app it does not serve (benches/servers/_common.py).
    for line in server.stdout:
        if line.strip() == b"READY":
            return server
    server.kill()
    sys.exit(f"the server ({name}, {python}, {env}) did not start")


# compare.py's fan-out workloads: subscribers, of them never reading, message size
FANOUTS = {"fanout": ("1000", "0", "32"), "slowsub": ("100", "10", "1024")}


def generator(args: argparse.Namespace, port: int) -> list[str]:
    url = f"ws://127.0.0.1:{port}/echo"
    timing = ["--duration", str(args.duration), "--warmup", "1"]
    if args.workload == "connect":
        return [str(DEFAULT_LOADGEN), "connect", "--url", url, "--concurrency", "16", *timing]
    if args.workload in FANOUTS:
        subs, slow, size = FANOUTS[args.workload]
        base = f"ws://127.0.0.1:{port}"
        return [
            *(str(DEFAULT_LOADGEN), "fanout", "--pub-url", f"{base}/pub"),
            *("--sub-url", f"{base}/sub"),
            *("--subs", subs, "--slow", slow, "--window", "32", "--size", size, *timing),
        ]
    conns, inflight, size = {
        "pingpong": (1, 1, ["--size", "32"]),
        "echo32": (64, 16, ["--size", "32"]),
        "echo16k": (16, 4, ["--size", "16384", "--binary"]),
        "rr100": (100, 1, ["--size", "32"]),
        "rr1000": (1000, 1, ["--size", "32"]),
    }[args.workload]
    return [
        *(str(DEFAULT_LOADGEN), "echo", "--url", url, *size),
        *("--conns", str(conns), "--inflight", str(inflight), *timing),
    ]


def cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    seconds = proc_cpu(server.pid)
    if seconds is None:
        sys.exit(f"server {server.args} ended during the run")
    return seconds


def one_run(args: argparse.Namespace) -> tuple[float, float, str] | None:
    """Both servers and generators at once: B's rate over A's, B's CPU per message (or handshake) over
    A's, and a line describing the run."""
    sides = {
        "A": (args.a_server, args.a_python, parse_env(args.a_env)),
        "B": (args.b_server, args.b_python, parse_env(args.b_env)),
    }
    ports = {name: free_port() for name in sides}
    servers = {
        name: start_server(server, py, env, ports[name])
        for name, (server, py, env) in sides.items()
    }
    try:
        started = {name: cpu_seconds(s) for name, s in servers.items()}
        generators = {
            name: subprocess.Popen(
                [*pin(1), *generator(args, ports[name])],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for name in sides
        }
        reports = {
            name: json.loads(g.communicate()[0].strip().splitlines()[-1])
            for name, g in generators.items()
        }
        cpu = {name: cpu_seconds(s) - started[name] for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.kill()
            server.wait()
    for name, report in reports.items():
        if not report.get("valid") or report.get("errors") or report.get("lost"):
            print(
                f"  {name}'s generator saw errors or losses: {report.get('error_samples')}; run left out"
            )
            return None
    a, b = reports["A"]["rate"], reports["B"]["rate"]
    cost = (cpu["B"] / b) / (cpu["A"] / a)
    line = (
        f"A {a:,.0f}/s (CPU {cpu['A']:.2f} s)  B {b:,.0f}/s (CPU {cpu['B']:.2f} s)  "
        f"B/A rate {b / a:.3f}, CPU per unit {cost:.3f}"
    )
    return b / a, cost, line


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--a-python",
        default=sys.executable,
        help='interpreter with build A installed, or "bun" for Bun\'s server (benches/setup_peers.sh)',
    )
    p.add_argument("--b-python", default=None, help="the same for B (default: A's)")
    p.add_argument(
        "--a-server",
        choices=PEERS,
        default="hyperws",
        help="whose bench server A runs (a Python peer runs under --a-python)",
    )
    p.add_argument("--b-server", choices=PEERS, default="hyperws", help="the same for B")
    p.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--workload",
        choices=["pingpong", "echo32", "echo16k", "rr100", "rr1000", "connect", *FANOUTS],
        default="rr100",
    )
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    args = p.parse_args()
    args.b_python = args.b_python or args.a_python
    if not DEFAULT_LOADGEN.exists():
        sys.exit(
            f"{DEFAULT_LOADGEN} is missing: cargo build --release --manifest-path benches/loadgen/Cargo.toml"
        )
    print(
        f"{args.workload}: A = {args.a_server} {args.a_python} {args.a_env}, "
        f"B = {args.b_server} {args.b_python} {args.b_env}"
    )
    rates, costs = [], []
    for run in range(args.runs):
        outcome = one_run(args)
        if outcome is not None:
            rates.append(outcome[0])
            costs.append(outcome[1])
            print(f"  run {run + 1}: {outcome[2]}", flush=True)
        time.sleep(0.5)
    if not rates:
        sys.exit("no valid run")
    for what, ratios in (("rate", rates), ("server CPU per unit", costs)):
        print(
            f"B/A {what}: median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} valid runs of {args.runs})"
        )


if __name__ == "__main__":
    main()
