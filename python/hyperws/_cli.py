"""``python -m hyperws module:server``: runs an app's server the way ``uvicorn module:app`` does."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ._server import Server

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m hyperws",
        description="Serve a hyperws.Server found as MODULE:ATTRIBUTE (like uvicorn's app:app).",
    )
    arguments.add_argument("app", help="where the server is, e.g. chat:server or pkg.app:server")
    arguments.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    arguments.add_argument("--port", type=int, default=9001, help="port to bind (default 9001)")
    arguments.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port with SO_REUSEPORT (default 1)",
    )
    arguments.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    arguments.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log every HTTP request and upgrade on the hyperws.access logger (default: as the "
        "app's Server(access_log=...) says, which is off unless it is set)",
    )
    return arguments


def load_server(location: str) -> Server:
    """The Server at ``module:attribute`` (the attribute may be dotted); errors name what is wrong."""
    module_name, _, attribute = location.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"error: expected MODULE:ATTRIBUTE, like chat:server; got {location!r}")
    sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise SystemExit(f"error: no module {module_name!r} (looked in {os.getcwd()})") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise SystemExit(f"error: module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, Server):
        kind = type(found).__name__
        raise SystemExit(f"error: {location} is a {kind}, not a hyperws.Server")
    return found


def main(argv: list[str] | None = None) -> None:
    options = parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = load_server(options.app)
    if options.access_log is not None:
        server.access_log = options.access_log
    logging.getLogger("hyperws").info(
        "serving %s on ws://%s:%d/ (pid %d)", options.app, options.host, options.port, os.getpid()
    )
    server.run(options.port, options.host, workers=options.workers)
