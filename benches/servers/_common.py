"""Helpers shared by the benchmark servers: argument parsing, the event loop choice, the READY line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop")
    return p.parse_args()


def ready(name: str, loop_name: str) -> None:
    """The driver waits for this exact line on stdout."""
    print(f"{name}: listening ({loop_name})", file=sys.stderr, flush=True)
    print("READY", flush=True)


def run(main: Coroutine[Any, Any, None], no_uvloop: bool) -> None:
    """Runs `main` on uvloop when installed (the peers' best configuration), else on asyncio's loop."""
    if not no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
