//! `Engine`: one server's native half. It owns the tokio side and drains its events on the asyncio thread.

use std::sync::Arc;
use std::time::Duration;

use pyo3::call::PyCallArgs;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::awaitable::is_awaitable;
use super::cork::{self, CorkGuard};
use super::gil_cell::GilCell;
use super::os_error;
use super::payload::MessageType;
use super::publish;
use super::request::PendingRequest;
use super::tls::TlsConfig;
use super::upgrade::PendingUpgrade;
use super::websocket::{self, Websocket};
use crate::backplane::{self, Backplane, Counters, Interest};
use crate::bridge::{Event, EventQueue, Traffic};
use crate::net::{
    Bind, ConnIdMap, ForwardHeader, HttpRoute, HttpRoutes, NetServer, Network, RouteConfig,
    ServerConfig, Trust, TrustProxy,
};
use crate::protocol::deflate::Compression;
use crate::pubsub::Topics;
use crate::routing::RouteTable;

/// The open connections by id, looked up for each event: in a `GilCell` (no atomic borrow flag per
/// lookup), which a batch's dispatch takes once from the engine.
type Sockets = GilCell<ConnIdMap<Py<Websocket>>>;

struct PyRoute {
    handler: Py<PyAny>,
    message_type: MessageType,
}

/// What the engine shares with each of its `Websocket`s (one pointer per connection, not three).
pub struct EngineShared {
    pub events: Arc<EventQueue>,
    /// The Python runtime helper (`hyperws._runtime.Hooks`): error reporting and async chains.
    pub hooks: Py<PyAny>,
    pub topics: Arc<Topics>,
    /// The broker that carries publishes to and from the other nodes, when `pubsub` is set.
    pub backplane: Option<Backplane>,
}

/// The native half of a `hyperws.Server`.
#[pyclass(module = "hyperws._core")]
pub struct Engine {
    shared: Arc<EngineShared>,
    table: RouteTable<Arc<RouteConfig>>,
    routes: Vec<PyRoute>,
    /// Plain HTTP routes (their handlers stay on the Python side, by index).
    http: HttpRoutes,
    http_count: usize,
    server: Option<NetServer>,
    sockets: Arc<Sockets>,
    /// Upgrades handed to the Python upgrade handlers, until their connection opens or they end.
    pending: ConnIdMap<Py<PendingUpgrade>>,
    /// Messages refused over a connection's `max_backpressure` (by send or publish).
    dropped: u64,
    /// Tell the hooks of every connection's open and close (for their debug log).
    log_connections: bool,
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (hooks, *, max_pending_bytes, max_pending_bytes_total, pubsub=None, pubsub_prefix="hyperws"))]
    fn new(
        hooks: Py<PyAny>,
        max_pending_bytes: usize,
        max_pending_bytes_total: usize,
        pubsub: Option<&str>,
        pubsub_prefix: &str,
    ) -> PyResult<Self> {
        let events = EventQueue::new(max_pending_bytes, max_pending_bytes_total)
            .map_err(|e| PyOSError::new_err(format!("cannot create eventfd: {e}")))?;
        let (topics, backplane) = match pubsub {
            None => (Arc::new(Topics::new()), None),
            Some(url) => {
                let config =
                    backplane::Config::parse(url, pubsub_prefix).map_err(PyValueError::new_err)?;
                let interest = Arc::new(Interest::new(Arc::clone(config.naming())));
                let topics = Arc::new(Topics::with_interest(Arc::clone(&interest)));
                let backplane =
                    Backplane::start(config, interest, Arc::clone(&topics), Arc::clone(&events))
                        .map_err(|e| {
                            PyOSError::new_err(format!("cannot start the broker thread: {e}"))
                        })?;
                (topics, Some(backplane))
            }
        };
        Ok(Self {
            shared: Arc::new(EngineShared {
                events,
                hooks,
                topics,
                backplane,
            }),
            table: RouteTable::new(),
            routes: Vec::new(),
            http: HttpRoutes::default(),
            http_count: 0,
            server: None,
            sockets: Arc::new(GilCell::new(ConnIdMap::default())),
            pending: ConnIdMap::default(),
            dropped: 0,
            log_connections: false,
        })
    }

    /// Registers a WebSocket route; options were validated by the Python side.
    // The keyword arguments mirror the route options one to one.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (pattern, handler, *, max_payload_length, idle_timeout, max_lifetime, send_pings_automatically, message_type, max_backpressure, close_on_backpressure_limit, intercept, upgrade_timeout, origins, compression, compression_window_bits))]
    fn add_ws_route(
        &mut self,
        pattern: &str,
        handler: Py<PyAny>,
        max_payload_length: usize,
        idle_timeout: f64,
        max_lifetime: f64,
        send_pings_automatically: bool,
        message_type: &str,
        max_backpressure: usize,
        close_on_backpressure_limit: bool,
        intercept: bool,
        upgrade_timeout: f64,
        origins: Option<Vec<String>>,
        compression: &str,
        compression_window_bits: u8,
    ) -> PyResult<()> {
        if self.server.is_some() {
            return Err(PyRuntimeError::new_err(
                "routes cannot be added after listen()",
            ));
        }
        let config = RouteConfig {
            index: self.routes.len(),
            pattern: Arc::from(pattern),
            max_payload_length,
            idle_timeout: (idle_timeout > 0.0).then(|| Duration::from_secs_f64(idle_timeout)),
            max_lifetime: (max_lifetime > 0.0)
                .then(|| Duration::from_secs_f64(max_lifetime * 60.0)),
            send_pings_automatically,
            max_backpressure,
            close_on_backpressure_limit,
            intercept,
            upgrade_timeout: Duration::from_secs_f64(upgrade_timeout),
            origins,
            compression: match compression {
                "disabled" => Compression::Disabled,
                "shared" => Compression::Shared,
                "dedicated" => Compression::Dedicated {
                    window_bits: compression_window_bits,
                },
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown compression {other:?}"
                    )))
                }
            },
        };
        let message_type = MessageType::parse(message_type)?;
        self.table
            .insert(pattern, Arc::new(config))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.routes.push(PyRoute {
            handler,
            message_type,
        });
        Ok(())
    }

    /// Registers a plain HTTP route for `method` (upper case, or `ANY`); returns the index the
    /// Python side keeps its handler at.
    fn add_http_route(&mut self, pattern: &str, method: &str, timeout: f64) -> PyResult<usize> {
        if self.server.is_some() {
            return Err(PyRuntimeError::new_err(
                "routes cannot be added after listen()",
            ));
        }
        let index = self.http_count;
        let route = HttpRoute {
            index,
            pattern: Arc::from(pattern),
            timeout: Duration::from_secs_f64(timeout),
        };
        self.http
            .add(pattern, method, route)
            .map_err(PyValueError::new_err)?;
        self.http_count += 1;
        Ok(index)
    }

    /// Binds and starts the I/O threads. Returns the bound port.
    // The keyword arguments mirror `Server(...)`'s options one to one.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (host, port, *, reuse_port, io_threads, max_header_bytes, request_timeout, close_timeout, max_body_length, trusted_hops, trusted_networks, proxy_header, proxy_protocol, tls=None, access_log=false, log_connections=false, inline_reads=true))]
    fn listen(
        slf: &Bound<'_, Self>,
        host: &str,
        port: u16,
        reuse_port: bool,
        io_threads: usize,
        max_header_bytes: usize,
        request_timeout: f64,
        close_timeout: f64,
        max_body_length: usize,
        trusted_hops: usize,
        trusted_networks: Vec<String>,
        proxy_header: &str,
        proxy_protocol: bool,
        tls: Option<PyRef<'_, TlsConfig>>,
        access_log: bool,
        log_connections: bool,
        inline_reads: bool,
    ) -> PyResult<u16> {
        let config = ServerConfig {
            max_header_bytes,
            request_timeout: Duration::from_secs_f64(request_timeout),
            close_timeout: Duration::from_secs_f64(close_timeout),
            max_body_length,
            trust: trust(trusted_hops, &trusted_networks, proxy_header)?,
            proxy_protocol,
            tls: tls.map(|tls| Arc::clone(&tls.tls)),
            access_log,
            log_connections,
            inline_reads,
        };
        let (table, http, events) = {
            let mut this = slf.borrow_mut();
            if this.server.is_some() {
                return Err(PyRuntimeError::new_err("this server is already listening"));
            }
            (
                std::mem::take(&mut this.table),
                std::mem::take(&mut this.http),
                Arc::clone(&this.shared.events),
            )
        };
        let server = slf
            .py()
            .detach(|| {
                let bind = Bind {
                    host,
                    port,
                    reuse_port,
                    io_threads,
                };
                NetServer::bind(bind, table, http, config, events)
            })
            .map_err(|e| os_error(&e, &format!("cannot listen on {host}:{port}"), None))?;
        let port = server.local_addr().port();
        let mut this = slf.borrow_mut();
        this.server = Some(server);
        this.log_connections = log_connections;
        Ok(port)
    }

    /// The descriptor to watch with `loop.add_reader(fd, engine.drain)`.
    fn fileno(&self) -> i32 {
        self.shared.events.fd()
    }

    /// Dispatches every waiting event to Python: the message listeners are called right here.
    fn drain(slf: &Bound<'_, Self>) {
        let events = Arc::clone(&slf.borrow().shared.events);
        events.begin_drain();
        let inline = slf.borrow().inline_fileno().is_some();
        dispatch_waiting(slf, &events, inline);
    }

    /// The descriptor to watch with `loop.add_reader(fd, engine.read_inline)` when connections are read
    /// on the asyncio thread (`inline_reads`); None otherwise.
    fn inline_fileno(&self) -> Option<i32> {
        Some(self.server.as_ref()?.inline_reads()?.fd())
    }

    /// Reads the connections that have input and dispatches their events with every other waiting one.
    fn read_inline(slf: &Bound<'_, Self>) {
        let (events, inline) = {
            let this = slf.borrow();
            let inline = this.server.as_ref().and_then(|s| s.inline_reads().cloned());
            (Arc::clone(&this.shared.events), inline)
        };
        if let Some(inline) = &inline {
            inline.read_ready(&events);
        }
        dispatch_waiting(slf, &events, inline.is_some());
    }

    /// Stops accepting new connections and frees the port.
    fn stop_accepting(&self) {
        if let Some(server) = &self.server {
            server.stop_accepting();
        }
    }

    /// Starts the close handshake on every connection.
    fn close_all(&self, code: u16, reason: &str) {
        cork::flush_publishes();
        if let Some(server) = &self.server {
            server.close_all(code, reason);
        }
    }

    /// Drops every connection without a close handshake.
    fn destroy_all(&self) {
        if let Some(server) = &self.server {
            server.destroy_all();
        }
    }

    /// Stops the I/O threads and disconnects from the broker. Connections still open are dropped.
    fn shutdown(slf: &Bound<'_, Self>) {
        let server = slf.borrow_mut().server.take();
        let shared = Arc::clone(&slf.borrow().shared);
        slf.py().detach(move || {
            drop(server);
            if let Some(backplane) = &shared.backplane {
                backplane.stop();
            }
        });
    }

    /// Waits up to `timeout` seconds for the first connection to the broker; returns why there is
    /// none, or None when connected (or without a broker).
    fn wait_broker(&self, py: Python<'_>, timeout: f64) -> Option<String> {
        let backplane = self.shared.backplane.as_ref()?;
        py.detach(|| backplane.wait_connected(Duration::from_secs_f64(timeout)))
            .err()
    }

    /// Live connections (upgraded and not yet ended).
    #[getter]
    fn connections(&self) -> usize {
        self.server.as_ref().map_or(0, NetServer::connection_count)
    }

    /// Publishes to every subscriber of `topic`; returns whether any was reached.
    #[pyo3(signature = (topic, message, is_binary=None, compress=false))]
    fn publish(
        slf: &Bound<'_, Self>,
        topic: &str,
        message: &Bound<'_, PyAny>,
        is_binary: Option<bool>,
        compress: bool,
    ) -> PyResult<bool> {
        // No borrow of the engine is held while the GIL is released: other threads publish too.
        let shared = Arc::clone(&slf.borrow().shared);
        publish::publish(slf.py(), &shared, topic, message, is_binary, compress, None)
    }

    /// How many connections a publish to `topic` would reach.
    fn num_subscribers(&self, topic: &str) -> PyResult<usize> {
        self.shared
            .topics
            .count_matches(topic)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Counters: wake-ups of the loop and events handed over.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        cork::flush_publishes();
        let stats = self.shared.events.stats();
        let dict = PyDict::new(py);
        dict.set_item("connections", self.connections())?;
        dict.set_item("loop_wakeups", stats.wakeups)?;
        dict.set_item("events", stats.events)?;
        dict.set_item("subscriptions", self.shared.topics.len())?;
        dict.set_item("dropped", self.dropped)?;
        dict.set_item("pending_bytes", self.shared.events.backlog().total())?;
        let inline = self.server.as_ref().and_then(|s| s.inline_reads());
        dict.set_item("inline_connections", inline.map_or(0, |i| i.connections()))?;
        let traffic = self.shared.events.traffic();
        dict.set_item("messages_in", Traffic::read(&traffic.messages_in))?;
        dict.set_item("bytes_in", Traffic::read(&traffic.bytes_in))?;
        dict.set_item("messages_out", Traffic::read(&traffic.messages_out))?;
        dict.set_item("bytes_out", Traffic::read(&traffic.bytes_out))?;
        let broker = self.shared.backplane.as_ref().map(Backplane::counters);
        let count = |read: fn(&Counters) -> u64| broker.map_or(0, read);
        dict.set_item("broker_published", count(|c| Counters::read(&c.published)))?;
        dict.set_item("broker_received", count(|c| Counters::read(&c.received)))?;
        dict.set_item(
            "broker_received_dropped",
            count(|c| Counters::read(&c.received_dropped)),
        )?;
        dict.set_item("broker_dropped", count(|c| Counters::read(&c.dropped)))?;
        dict.set_item(
            "broker_reconnects",
            count(|c| Counters::read(&c.reconnects)),
        )?;
        dict.set_item(
            "broker_subscriptions",
            broker.map_or(0, Counters::subscriptions),
        )?;
        dict.set_item(
            "broker_connected",
            broker.is_some_and(Counters::is_connected),
        )?;
        Ok(dict)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.shared.hooks)?;
        for route in &self.routes {
            visit.call(&route.handler)?;
        }
        if let Some(sockets) = self.sockets.borrow_during_gc() {
            for socket in sockets.values() {
                visit.call(socket)?;
            }
        }
        for pending in self.pending.values() {
            visit.call(pending)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.routes.clear();
        Python::attach(|py| self.sockets.update(py, std::mem::take));
        self.pending.clear();
    }
}

/// Dispatches events until the queue is empty, with writer wake-ups corked for the whole batch.
fn dispatch_waiting(engine: &Bound<'_, Engine>, events: &EventQueue, write_replies: bool) {
    let _cork = match write_replies {
        true => CorkGuard::begin_writing_replies(),
        false => CorkGuard::begin(),
    };
    let sockets = Arc::clone(&engine.borrow().sockets);
    let mut batch = Vec::new();
    while events.take(&mut batch) {
        for event in batch.drain(..) {
            dispatch(engine, &sockets, event);
        }
    }
}

fn dispatch(engine: &Bound<'_, Engine>, sockets: &Sockets, event: Event) {
    let py = engine.py();
    let cost = event.cost();
    match event {
        Event::Open { conn, route } => {
            let (handler, message_type, shared, log_connections) = {
                let this = engine.borrow();
                let route = &this.routes[route];
                (
                    route.handler.clone_ref(py),
                    route.message_type,
                    Arc::clone(&this.shared),
                    this.log_connections,
                )
            };
            let id = conn.id;
            let pending = engine.borrow_mut().pending.remove(&id);
            let upgrade = pending.and_then(|p| p.get().take_accepted());
            let ws = match Bound::new(py, Websocket::new(conn, message_type, shared, upgrade)) {
                Ok(ws) => ws,
                Err(error) => return log_failure(engine, "opening a connection", error),
            };
            if log_connections {
                call_hooks(engine, intern!(py, "opened"), (&ws,));
            }
            sockets.update(py, |sockets| sockets.insert(id, ws.clone().unbind()));
            match handler.bind(py).call1((&ws,)) {
                Ok(result) if result.is_none() => {}
                Ok(result) => {
                    if is_awaitable(&result) {
                        websocket::schedule_one(&ws, result);
                    }
                }
                Err(error) => websocket::report(&ws, "open", error),
            }
        }
        Event::Message { id, data, binary } => match socket(py, sockets, id) {
            Some(ws) => cork::answering(id, || {
                websocket::deliver_message(ws.bind(py), &data, binary, cost)
            }),
            None => consumed_orphan(engine, cost),
        },
        Event::Ping { id, data } => match socket(py, sockets, id) {
            Some(ws) => websocket::deliver_control(ws.bind(py), "ping", &data, cost),
            None => consumed_orphan(engine, cost),
        },
        Event::Pong { id, data } => match socket(py, sockets, id) {
            Some(ws) => websocket::deliver_control(ws.bind(py), "pong", &data, cost),
            None => consumed_orphan(engine, cost),
        },
        Event::Upgrade {
            id,
            route,
            request,
            reply,
        } => {
            let pending = match Py::new(py, PendingUpgrade::new(request, route, reply)) {
                Ok(pending) => pending,
                Err(error) => return log_failure(engine, "handing over an upgrade", error),
            };
            engine
                .borrow_mut()
                .pending
                .insert(id, pending.clone_ref(py));
            hand_to_hooks(engine, intern!(py, "upgrade"), pending.into_any());
        }
        Event::Http {
            route,
            request,
            reply,
        } => match Py::new(py, PendingRequest::new(request, route, reply)) {
            Ok(pending) => hand_to_hooks(engine, intern!(py, "request"), pending.into_any()),
            Err(error) => log_failure(engine, "handing over a request", error),
        },
        Event::UpgradeEnded { id } => {
            engine.borrow_mut().pending.remove(&id);
        }
        Event::Drain { id } => {
            if let Some(ws) = socket(py, sockets, id) {
                websocket::deliver_drain(ws.bind(py));
            }
        }
        Event::Dropped { id, data, binary } => {
            engine.borrow_mut().dropped += 1;
            if let Some(ws) = socket(py, sockets, id) {
                websocket::deliver_dropped(ws.bind(py), &data, binary);
            }
        }
        Event::Shutdown { conn, code, reason } => {
            cork::flush_publishes();
            conn.close(code, reason);
        }
        Event::Broker { connected, detail } => {
            call_hooks(engine, intern!(py, "broker"), (connected, detail));
        }
        Event::Access(entry) => {
            let time = entry
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64());
            let head = entry.head;
            let args = (
                head.id,
                websocket::display_ip(head.client),
                head.request_line,
                entry.status,
                entry.bytes,
                head.referer,
                head.user_agent,
                entry.route.as_deref(),
                time,
            );
            call_hooks(engine, intern!(py, "access"), args);
        }
        Event::TlsFailed { id, peer, detail } => {
            let peer = websocket::display_ip(peer);
            call_hooks(engine, intern!(py, "tls_failed"), (id, peer, detail));
        }
        Event::Close { id, code, reason } => {
            // The run's publishes came before the subscriber left.
            cork::flush_publishes();
            let log_connections = {
                let this = engine.borrow();
                this.shared.topics.unsubscribe_all(id);
                this.log_connections
            };
            let removed = sockets.update(py, |sockets| sockets.remove(&id));
            if let Some(ws) = removed {
                if log_connections {
                    let text = String::from_utf8_lossy(&reason);
                    call_hooks(engine, intern!(py, "closed"), (&ws, code, text));
                }
                websocket::deliver_close(ws.bind(py), code, &reason);
            }
        }
    }
}

/// The `trust_proxy` and `proxy_header` options (checked by the Python side; checked again here).
fn trust(hops: usize, networks: &[String], header: &str) -> PyResult<Trust> {
    let proxies = if !networks.is_empty() {
        TrustProxy::Networks(
            networks
                .iter()
                .map(|n| Network::parse(n))
                .collect::<Result<_, _>>()
                .map_err(PyValueError::new_err)?,
        )
    } else if hops > 0 {
        TrustProxy::Hops(hops)
    } else {
        TrustProxy::Nobody
    };
    let header = match header {
        "x-forwarded-for" => ForwardHeader::XForwardedFor,
        "forwarded" => ForwardHeader::Forwarded,
        other => {
            return Err(PyValueError::new_err(format!(
                "proxy_header must be 'X-Forwarded-For' or 'Forwarded', got {other:?}"
            )))
        }
    };
    Ok(Trust { proxies, header })
}

/// Python is done with an event whose connection is gone: its cost leaves the backlog all the same.
fn consumed_orphan(engine: &Bound<'_, Engine>, cost: usize) {
    engine
        .borrow()
        .shared
        .events
        .backlog()
        .consumed_orphan(cost);
}

/// Hands a pending request to the Python runtime's `method` (`upgrade` or `request`).
fn hand_to_hooks(engine: &Bound<'_, Engine>, method: &Bound<'_, PyString>, pending: Py<PyAny>) {
    call_hooks(engine, method, (pending,));
}

/// Calls the Python runtime's `method`; a failure there is logged, never raised into the drain.
fn call_hooks<'py>(
    engine: &Bound<'py, Engine>,
    method: &Bound<'py, PyString>,
    args: impl PyCallArgs<'py>,
) {
    let py = engine.py();
    let hooks = engine.borrow().shared.hooks.clone_ref(py);
    if let Err(error) = hooks.bind(py).call_method1(method, args) {
        log_failure(engine, "calling the runtime hooks", error);
    }
}

/// Logs an error of the engine's own Python side (not the app's) on the `hyperws` logger.
fn log_failure(engine: &Bound<'_, Engine>, doing: &str, error: PyErr) {
    super::log_error(engine.py(), doing, error, Some(engine.as_any()));
}

fn socket(py: Python<'_>, sockets: &Sockets, id: u64) -> Option<Py<Websocket>> {
    sockets.borrow(py).get(&id).map(|ws| ws.clone_ref(py))
}
