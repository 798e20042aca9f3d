#!/usr/bin/env python3
"""Groups a flat `perf report --no-children --sort dso,symbol --stdio` of the hyperws bench server by area of the
echo path, and turns the shares into nanoseconds per echoed message with the CPU time `perf stat` measured.

    profile_areas.py report.txt loadgen.json server.err stat.txt

The areas are decided by the symbol (and its DSO), first match wins; the rules are below, in order. They are
approximate by nature: a kernel spin-unlock counts as scheduling even when a socket path took the lock.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

AREAS: list[tuple[str, str, str]] = [
    # (area, DSO regex, symbol regex)
    (
        "wake-ups and context switches (kernel scheduler, futex, eventfd, epoll)",
        r"kernel",
        r"finish_task_switch|schedule|switch_to|_raw_spin_unlock_irq|try_to_wake_up|futex|eventfd|ep_poll"
        r"|enqueue|dequeue|update_curr|pick_next|native_write_msr|irqentry_exit|ttwu|select_task_rq"
        r"|psi_|cpuacct|update_load|__wake_up",
    ),
    (
        "memory: page faults and malloc/free",
        r"kernel|libc|ld-linux",
        r"page_fault|clear_page|do_anonymous|handle_mm_fault|alloc_pages|__tls_get_addr"
        r"|malloc|_int_free|\bfree\b|realloc|sysmalloc|malloc_consolidate|cfree|mprotect|madvise",
    ),
    ("socket I/O (kernel TCP and syscalls, libc wrappers)", r"kernel|libc|vdso", r"."),
    (
        "frame parsing (hyperws: read buffer, header decode, unmask, UTF-8)",
        r"_core",
        r"decode|protocol::|utf8|unmask|split_to|BytesMut|bytes_mut|read_buf|Reader",
    ),
    (
        "send path (hyperws: encode, outbound queue, writer)",
        r"_core",
        r"send|queue_frame|ConnHandle|encode|writ|flush|outbound|Frame::",
    ),
    (
        "hand-over to Python (hyperws engine/bridge: event queue, batch drain, dispatch)",
        r"_core",
        r"engine|bridge|consume|deliver|dispatch|event|Event|Notif|Drain|drain|backlog",
    ),
    ("Python handler (CPython, uvloop, listener call)", r"python|uvloop", r"."),
    ("Python handler (CPython, uvloop, listener call)", r"_core", r"call_listeners"),
    ("tokio runtime and other hyperws code", r"_core", r"."),
    ("other", r".", r"."),
]

LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[[^\]]*\]\s+(.*?)\s*(?:-\s+-\s*)?$")


def classify(dso: str, symbol: str) -> str:
    for area, dso_re, sym_re in AREAS:
        if re.search(dso_re, dso) and re.search(sym_re, symbol):
            return area
    return "other"


def main() -> None:
    report, loadgen, server_err, stat = (Path(a) for a in sys.argv[1:5])
    shares: dict[str, float] = dict.fromkeys((a[0] for a in AREAS), 0.0)
    top: dict[str, list[tuple[float, str]]] = {a[0]: [] for a in AREAS}
    for line in report.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pct, dso, symbol = float(m.group(1)), m.group(2), m.group(3)
        area = classify(dso, symbol)
        shares[area] += pct
        top[area].append((pct, f"{symbol[:70]} ({dso})"))
    gen = json.loads(next(ln for ln in loadgen.read_text().splitlines() if ln.startswith("{")))
    rate = float(gen["rate"])
    task_ms = None
    for line in stat.read_text().splitlines():
        if "task-clock" in line:
            task_ms = float(line.split()[0].replace(",", ""))
    ns_per_msg = task_ms * 1e6 / rate if task_ms else None  # perf stat covered 1 s
    stats = [
        json.loads(ln[6:]) for ln in server_err.read_text().splitlines() if ln.startswith("STATS ")
    ]
    print(f"echo32: {rate:,.0f} msg/s (load generator, whole measured window)")
    if ns_per_msg:
        print(
            f"server CPU: {task_ms:.0f} ms per second (perf stat task-clock) = {ns_per_msg:.0f} ns per message"
        )
    if len(stats) >= 2:
        wake = stats[-1]["loop_wakeups"] - stats[-2]["loop_wakeups"]
        events = stats[-1]["events"] - stats[-2]["events"]
        print(
            f"hand-over during the recording: {wake} loop wake-ups, {events} events, {events / max(wake, 1):.0f} events per wake-up"
        )
    print()
    print(f"{'area':<82} {'share':>7} {'ns/msg':>7}")
    for area, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        if pct <= 0:
            continue
        ns = f"{pct / 100 * ns_per_msg:.0f}" if ns_per_msg else "?"
        print(f"{area:<82} {pct:6.1f}% {ns:>7}")
        for p, name in sorted(top[area], reverse=True)[:4]:
            print(f"    {p:5.2f}%  {name}")


if __name__ == "__main__":
    main()
