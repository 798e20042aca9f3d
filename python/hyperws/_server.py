"""Server: a Router that listens. The engine (Rust) owns the sockets; this class wires it to asyncio."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

from . import _core, _workers
from ._options import UpgradeOptions, proxy_header_option, trust_proxy_option
from ._router import Router
from ._runtime import HandlerChain, Hooks, connections_logger
from ._tls import PathLike, check_server_name, tls_config

logger = logging.getLogger("hyperws")

GOING_AWAY = 1001
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_BROKER_WAIT = 3.0  # seconds listen() waits for the first connection to the broker


class Server(Router):
    """A WebSocket server that also serves plain HTTP routes. Add routes with ``ws()``, ``get()``...
    (or mount routers with ``use()``), then ``await server.listen(port)``.

    Keyword options: ``io_threads`` (the engine's I/O threads, default: the CPUs this process may
    use; worker *processes* are ``run(workers=N)``'s), ``inline_reads`` (default True:
    plain, uncompressed WebSocket connections are read on the asyncio thread, so that a message is
    read, handled and answered without a thread switch; False: the I/O threads read every connection
    and answer pings while the loop is blocked; see docs/architecture.md, "Reads on the asyncio
    thread"),
    ``max_header_bytes`` (largest request head, default 16 KiB; larger gets 431),
    ``request_timeout`` (seconds a client has to send its request, and a kept-alive connection may
    wait for its next one, default 10),
    ``close_timeout`` (seconds to wait for a client's close frame after sending ours, default 5),
    ``max_pending_bytes`` (received bytes a connection may have waiting for its Python listeners before
    the server stops reading its socket, default 1 MiB), ``max_pending_bytes_total`` (the same for all
    connections together, default 64 MiB), ``max_body_length`` (largest request body of an HTTP
    route, default 1 MiB; larger gets 413), ``trust_proxy`` (the number of proxy hops in front of the
    server, or a list of proxy addresses and networks, whose ``proxy_header`` names the client;
    default None: forwarding headers are ignored), ``proxy_header`` (``"X-Forwarded-For"``, the
    default, or ``"Forwarded"``) and ``proxy_protocol`` (connections start with a PROXY protocol v1
    or v2 header from an L4 load balancer; default False).

    TLS (``wss://`` and ``https://`` on every ``listen()``): ``cert_file`` (PEM, the server's
    certificate then its chain) and ``key_file`` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC; encrypted
    PKCS#8 with ``key_password``), or HyperExpress' ``cert_file_name``, ``key_file_name`` and
    ``passphrase``; ``ca_file`` with ``client_auth="optional"`` or ``"required"`` asks clients for
    certificates signed by that CA. A file that cannot be read raises ``OSError`` with its name; one
    that cannot be used raises ``ValueError`` starting with its name.

    Scale-out (see docs/api.md, "Scale-out"): ``pubsub`` (``"redis://host:6379/0"`` or
    ``"nats://host:4222"``: publishes also reach the subscribers of every other server sharing that
    broker; default None: this process only), ``pubsub_prefix`` (the namespace of this app's
    channels or subjects on the broker, default ``"hyperws"``) and ``pubsub_required`` (``listen()``
    raises ``ConnectionError`` when the broker cannot be reached; default False: it serves, with a
    warning, and connects when the broker is back).

    Logging (see docs/howto/logging.md): ``access_log`` (default False) logs every answered HTTP
    request and upgrade, in the Combined Log Format, on the ``hyperws.access`` logger.
    """

    def __init__(
        self,
        *,
        io_threads: int | None = None,
        max_header_bytes: int = 16 * 1024,
        request_timeout: float = 10.0,
        close_timeout: float = 5.0,
        max_pending_bytes: int = 1024 * 1024,
        max_pending_bytes_total: int = 64 * 1024 * 1024,
        max_body_length: int = 1024 * 1024,
        trust_proxy: int | list[str] | None = None,
        proxy_header: str = "X-Forwarded-For",
        proxy_protocol: bool = False,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        key_password: str | None = None,
        ca_file: PathLike | None = None,
        client_auth: str = "none",
        cert_file_name: PathLike | None = None,
        key_file_name: PathLike | None = None,
        passphrase: str | None = None,
        pubsub: str | None = None,
        pubsub_prefix: str = "hyperws",
        pubsub_required: bool = False,
        access_log: bool = False,
        inline_reads: bool = True,
    ) -> None:
        super().__init__()
        if io_threads is None:
            io_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        _positive("io_threads", io_threads, int)
        _positive("max_header_bytes", max_header_bytes, int)
        _positive("request_timeout", request_timeout, (int, float))
        _positive("close_timeout", close_timeout, (int, float))
        _positive("max_pending_bytes", max_pending_bytes, int)
        _positive("max_pending_bytes_total", max_pending_bytes_total, int)
        _positive("max_body_length", max_body_length, int)
        trusted_hops, trusted_networks = trust_proxy_option(trust_proxy)
        if not isinstance(proxy_protocol, bool):
            raise ValueError(f"proxy_protocol must be True or False, got {proxy_protocol!r}")
        _check_pubsub(pubsub, pubsub_prefix, pubsub_required)
        self._engine_options: dict[str, Any] = {
            "max_pending_bytes": max_pending_bytes,
            "max_pending_bytes_total": max_pending_bytes_total,
            "pubsub": pubsub,
            "pubsub_prefix": pubsub_prefix,
        }
        self._pubsub_required = pubsub_required
        self._access_log = _flag("access_log", access_log)
        self._settings: dict[str, Any] = {
            "io_threads": io_threads,
            "max_header_bytes": max_header_bytes,
            "request_timeout": float(request_timeout),
            "close_timeout": float(close_timeout),
            "max_body_length": max_body_length,
            "trusted_hops": trusted_hops,
            "trusted_networks": trusted_networks,
            "proxy_header": proxy_header_option(proxy_header),
            "proxy_protocol": proxy_protocol,
            "inline_reads": _flag("inline_reads", inline_reads),
        }
        self._tls = tls_config(
            cert_file=cert_file,
            key_file=key_file,
            key_password=key_password,
            ca_file=ca_file,
            client_auth=client_auth,
            cert_file_name=cert_file_name,
            key_file_name=key_file_name,
            passphrase=passphrase,
        )
        self._engine: _core.Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hooks: Hooks | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (useful after ``listen(0)``)."""
        if self._port is None:
            raise RuntimeError("the server is not listening: call await server.listen(port) first")
        return self._port

    @property
    def access_log(self) -> bool:
        """Whether every answered HTTP request and upgrade is logged on ``hyperws.access`` (set it
        before ``listen()``)."""
        return self._access_log

    @access_log.setter
    def access_log(self, on: bool) -> None:
        if self._engine is not None:
            raise RuntimeError("access_log is set before listen()")
        self._access_log = _flag("access_log", on)

    @property
    def connections(self) -> int:
        """How many WebSocket connections are open."""
        return self._engine.connections if self._engine is not None else 0

    def stats(self) -> dict[str, int]:
        """Counters: open connections, wake-ups of the event loop, events handed to Python,
        subscriptions held, with ``pubsub`` the broker's (``broker_published``, ``broker_received``,
        ``broker_received_dropped``, ``broker_dropped``, ``broker_reconnects``, ``broker_subscriptions``, ``broker_connected``),
        and, with TLS, ``tls_handshake_failures`` (see docs/api.md)."""
        if self._engine is None:
            stats = {
                "connections": 0,
                "loop_wakeups": 0,
                "events": 0,
                "subscriptions": 0,
                "dropped": 0,
                "pending_bytes": 0,
                "inline_connections": 0,
                "messages_in": 0,
                "bytes_in": 0,
                "messages_out": 0,
                "bytes_out": 0,
                "broker_published": 0,
                "broker_received": 0,
                "broker_received_dropped": 0,
                "broker_dropped": 0,
                "broker_reconnects": 0,
                "broker_subscriptions": 0,
                "broker_connected": False,
            }
        else:
            stats = self._engine.stats()
        if self._tls is not None:
            stats["tls_handshake_failures"] = self._tls.handshake_failures
        return stats

    def add_server_name(
        self,
        name: str,
        *,
        cert_file: PathLike,
        key_file: PathLike,
        key_password: str | None = None,
    ) -> None:
        """Serves TLS clients that ask for ``name`` (SNI; ``*.example.com`` serves one label under
        it) with this certificate; others get the server's own. Takes effect for new handshakes,
        before or after ``listen()``; a file that cannot be used raises and changes nothing."""
        tls = self._tls_config("add_server_name")
        tls.add_server_name(
            check_server_name(name), os.fspath(cert_file), os.fspath(key_file), key_password
        )

    def remove_server_name(self, name: str) -> bool:
        """Stops serving ``name`` with its own certificate; returns whether it had one."""
        return self._tls_config("remove_server_name").remove_server_name(name)

    def reload_tls(self) -> None:
        """Reads every certificate, key and CA file again: new handshakes use them, open connections
        are untouched. If a file cannot be used, this raises and the server keeps what it had."""
        self._tls_config("reload_tls").reload()

    def _tls_config(self, method: str) -> _core.TlsConfig:
        if self._tls is None:
            raise RuntimeError(f"{method}() needs TLS: make the Server with cert_file and key_file")
        return self._tls

    def publish(
        self,
        topic: str,
        message: str | bytes | bytearray | memoryview,
        is_binary: bool | None = None,
        compress: bool = False,
    ) -> bool:
        """Sends ``message`` to every connection subscribed to ``topic`` (MQTT filters with ``+`` and
        ``#`` match), and with ``pubsub`` to the other servers' subscribers too. The frame is encoded
        once and fanned out in Rust. Returns whether any connection of this server was reached.
        Callable from the loop and from other threads."""
        engine = self._engine
        if engine is None:
            return False
        return engine.publish(topic, message, is_binary, compress)

    def num_subscribers(self, topic: str) -> int:
        """How many connections of this server a publish to ``topic`` would reach."""
        engine = self._engine
        return engine.num_subscribers(topic) if engine is not None else 0

    async def listen(
        self, port: int = 0, host: str = "0.0.0.0", *, reuse_port: bool = False
    ) -> None:
        """Binds ``host:port`` and starts serving; returns once the socket is bound. Port 0 picks a
        free port (see ``server.port``). ``reuse_port`` sets SO_REUSEPORT: processes that all set it
        may bind the same port, and the kernel spreads new connections over them (``run(workers=N)``
        does this for you)."""
        if self._engine is not None:
            raise RuntimeError("this server is already listening")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        loop = asyncio.get_running_loop()
        hooks = Hooks(loop)
        engine = _core.Engine(hooks, **self._engine_options)
        # Connected before serving, so that the first publishes are not dropped; an unreachable broker is
        # logged (once) by the hooks, and raises here only when it is required.
        unreachable = engine.wait_broker(_BROKER_WAIT)
        if unreachable is not None and self._pubsub_required:
            engine.shutdown()
            raise ConnectionError(
                f"pubsub broker {self._engine_options['pubsub']} unreachable: {unreachable}"
            )
        upgrades = {route.pattern: route for route in self._all_upgrade_routes()}
        ws_patterns = set()
        for index, route in enumerate(self._all_ws_routes()):
            ws_patterns.add(route.pattern)
            upgrade = upgrades.get(route.pattern)
            if upgrade is not None:
                chain = HandlerChain(
                    route.pattern,
                    upgrade.middlewares,
                    upgrade.handler,
                    upgrade.options.upgrade_timeout,
                )
            else:
                chain = HandlerChain(
                    route.pattern, route.middlewares, None, UpgradeOptions.upgrade_timeout
                )
            intercept = chain.handler is not None or bool(chain.middlewares)
            if intercept:
                hooks.upgrades[index] = chain
            engine.add_ws_route(
                route.pattern,
                route.handler,
                max_payload_length=route.options.max_payload_length,
                idle_timeout=route.options.idle_timeout,
                max_lifetime=route.options.max_lifetime,
                send_pings_automatically=route.options.send_pings_automatically,
                message_type=route.options.message_type,
                max_backpressure=route.options.max_backpressure,
                close_on_backpressure_limit=route.options.close_on_backpressure_limit,
                intercept=intercept,
                upgrade_timeout=chain.timeout,
                origins=list(route.options.origins) if route.options.origins is not None else None,
                compression=route.options.compression,
                compression_window_bits=route.options.compression_window_bits,
            )
        for http in self._all_http_routes():
            timeout = http.options.handler_timeout
            index = engine.add_http_route(http.pattern, http.method, timeout)
            hooks.requests[index] = HandlerChain(
                http.pattern, http.middlewares, http.handler, timeout
            )
        orphans = sorted(set(upgrades) - ws_patterns)
        if orphans:
            raise ValueError(f"upgrade route(s) without a ws route of the same pattern: {orphans}")
        self._port = engine.listen(
            host,
            port,
            reuse_port=reuse_port,
            tls=self._tls,
            access_log=self._access_log,
            log_connections=connections_logger.isEnabledFor(logging.DEBUG),
            **self._settings,
        )
        loop.add_reader(engine.fileno(), engine.drain)
        inline = engine.inline_fileno()
        if inline is not None:
            loop.add_reader(inline, engine.read_inline)
        self._engine, self._loop, self._hooks = engine, loop, hooks

    async def close(self, timeout: float = 5.0) -> None:
        """Stops accepting, closes every connection with 1001 (going away), waits up to ``timeout``
        seconds for the close handshakes and for running async handlers, then drops what is left and
        stops the engine."""
        engine, loop, hooks = self._engine, self._loop, self._hooks
        if engine is None or loop is None or hooks is None:
            return
        engine.stop_accepting()
        engine.close_all(GOING_AWAY, "server shutting down")
        deadline = loop.time() + timeout
        while engine.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if engine.connections:
            engine.destroy_all()
            destroyed_by = loop.time() + 1.0  # a destroyed connection ends at once; bounded anyway
            while engine.connections and loop.time() < destroyed_by:
                await asyncio.sleep(0.005)
        engine.drain()
        loop.remove_reader(engine.fileno())
        inline = engine.inline_fileno()
        if inline is not None:
            loop.remove_reader(inline)
        engine.shutdown()
        await hooks.wait_idle(max(0.0, deadline - loop.time()))
        self._engine = self._loop = self._hooks = None
        self._port = None

    def run(self, port: int = 0, host: str = "0.0.0.0", *, workers: int = 1) -> None:
        """Listens and serves until SIGTERM or SIGINT (Ctrl-C), then closes gracefully and returns
        (blocking). Uses uvloop when it is installed.

        ``workers=N`` (N > 1) runs N worker processes that each run this program and serve the same
        port (SO_REUSEPORT); this process watches them, restarts one that dies, and on SIGTERM or
        SIGINT has every worker close its connections with 1001 and waits for them. The workers run
        the program from its start (as ``python -m hyperws`` or your script), so build the server at
        import time and call ``run()`` last."""
        _positive("workers", workers, int)
        worker = _workers.worker_index()
        if worker is None and workers > 1:
            if port == 0:
                raise ValueError("workers share one port: give run() a port, not 0")
            if self._engine_options["pubsub"] is None:
                _workers.logger.warning(
                    "%d workers without pubsub: a publish reaches only the subscribers of the "
                    "worker that makes it; give Server(pubsub='redis://...' or 'nats://...') "
                    "to reach every worker's",
                    workers,
                )
            raise SystemExit(_workers.Supervisor(workers).run())

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for stop_signal in STOP_SIGNALS:
                loop.add_signal_handler(stop_signal, stop.set)
            try:
                await self.listen(port, host, reuse_port=worker is not None)
                schemes = "wss://, https://" if self._tls is not None else "ws://, http://"
                logger.info(
                    "listening on %s:%d (%s; pid %d)", host, self.port, schemes, os.getpid()
                )
                if worker is not None:
                    _workers.stop_with_parent(loop, stop)
                await stop.wait()
            finally:
                for stop_signal in STOP_SIGNALS:
                    loop.remove_signal_handler(stop_signal)
                await self.close()

        # Chosen before serving, so that an error while serving is not chained to the ImportError.
        runner = asyncio.run if importlib.util.find_spec("uvloop") is None else _uvloop_run
        runner(serve())

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


# Redis, Redis over TLS, NATS, NATS over TLS.
_PUBSUB_SCHEMES = ("redis", "rediss", "nats", "tls")


def _check_pubsub(pubsub: str | None, prefix: str, required: bool) -> None:
    if pubsub is not None:
        if not isinstance(pubsub, str):
            raise ValueError(f"pubsub must be a broker URL or None, got {pubsub!r}")
        scheme = pubsub.partition("://")[0]
        if scheme not in _PUBSUB_SCHEMES:
            raise ValueError(
                f"unsupported pubsub URL scheme {scheme!r} in {pubsub!r}: use "
                + ", ".join(f"{known}://" for known in _PUBSUB_SCHEMES)
            )
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"pubsub_prefix must be a non-empty str, got {prefix!r}")
    if not isinstance(required, bool):
        raise ValueError(f"pubsub_required must be True or False, got {required!r}")


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _positive(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _uvloop_run(main: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(main)
