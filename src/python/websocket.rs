//! `Websocket`: one connection as Python sees it, an event emitter whose listeners live in Rust.

use std::cell::Ref;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use pyo3::exceptions::{
    PyConnectionError, PyRuntimeError, PyTypeError, PyUserWarning, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::awaitable::is_awaitable;
use super::certificate::PeerCertificate;
use super::cork::{self, CorkGuard};
use super::engine::EngineShared;
use super::gil_cell::GilCell;
use super::listeners::{Callbacks, Listeners};
use super::payload::{extract_message, extract_typed_message, MessageType};
use super::publish;
use crate::bridge::{Event, Traffic};
use crate::net::{ConnHandle, Fragment, Queued};
use crate::protocol::{encode, is_valid_sent_close_code, Utf8Validator};

/// A WebSocket connection. Safe to use after it closed: `send`/`ping` return False, `close`/`destroy` do
/// nothing. Keep per-connection data in `context` (a `Websocket` has no instance `__dict__`).
//
// No instance `__dict__`: on CPython 3.11 creating the dict during construction can run the garbage
// collector, which would traverse the object before its Rust fields exist.
//
// Frozen: what changes is in `state`, borrowed with the GIL held (`gil_cell.rs`: no atomic borrow flag).
#[pyclass(module = "hyperws._core", name = "Websocket", weakref, frozen)]
pub struct Websocket {
    conn: Arc<ConnHandle>,
    message_type: MessageType,
    /// The server's event queue (refused sends are reported through it as 'dropped' events), its
    /// topics and the Python runtime helper.
    shared: Arc<EngineShared>,
    state: GilCell<State>,
}

/// What changes over a connection's life.
#[derive(Default)]
struct State {
    /// Created on first access: an idle connection that never uses it holds no dict.
    context: Option<Py<PyAny>>,
    listeners: Listeners,
    /// While set, events wait in this Python chain behind an awaiting listener, to keep their order.
    chain: Option<Py<PyAny>>,
    /// What Python code awaits on this connection, resolved by the engine directly (never through the
    /// chain, whose head may be the very code that awaits). Boxed: most connections never use it.
    waiters: Option<Box<Waiters>>,
    /// While a message is streamed (`stream()`/`writable`): its UTF-8 check when it is text.
    stream: Option<Utf8Validator>,
    /// The subprotocol chosen at upgrade ("" when none).
    protocol: Box<str>,
    close_fired: bool,
}

impl Websocket {
    /// `upgrade`: what the upgrade handler accepted the connection with, if it had one.
    pub fn new(
        conn: Arc<ConnHandle>,
        message_type: MessageType,
        shared: Arc<EngineShared>,
        upgrade: Option<(Py<PyAny>, String)>,
    ) -> Self {
        let (context, protocol) = upgrade.map_or((None, Box::default()), |(context, protocol)| {
            (Some(context), protocol.into_boxed_str())
        });
        Self {
            conn,
            message_type,
            shared,
            state: GilCell::new(State {
                context,
                protocol,
                ..State::default()
            }),
        }
    }

    fn state<'a>(&'a self, py: Python<'_>) -> Ref<'a, State> {
        self.state.borrow(py)
    }

    fn update<R>(&self, py: Python<'_>, change: impl FnOnce(&mut State) -> R) -> R {
        self.state.update(py, change)
    }
}

/// The awaitables of one connection that the engine resolves itself.
#[derive(Default)]
struct Waiters {
    /// The `async for message in ws` iterator, fed directly (it may be consumed by the chain's head).
    iterator: Option<Py<PyAny>>,
    /// The futures of `await ws.drain()` calls: done at the next drain or at the connection's end.
    drain: Vec<Py<PyAny>>,
}

impl State {
    fn iterator(&self) -> Option<&Py<PyAny>> {
        self.waiters.as_ref()?.iterator.as_ref()
    }

    fn waiters_mut(&mut self) -> &mut Waiters {
        self.waiters.get_or_insert_with(Box::default)
    }
}

/// An IP address as users expect it: IPv4-mapped IPv6 addresses shown as IPv4.
pub fn display_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Delivers a received message: straight to the listeners, or behind a running async chain.
pub fn deliver_message(ws: &Bound<'_, Websocket>, data: &Bytes, binary: bool, cost: usize) {
    let py = ws.py();
    let this = ws.get();
    // One borrow for all this connection's state the message path reads.
    let (iterator, chain) = {
        let state = this.state(py);
        (
            state.iterator().map(|it| it.clone_ref(py)),
            state.chain.as_ref().map(|c| c.clone_ref(py)),
        )
    };
    let payload = match this.message_type.to_python(py, data, !binary) {
        Ok(payload) => payload,
        Err(error) => {
            consume(ws, cost);
            return report(ws, "message", error);
        }
    };
    let cost = match iterator {
        Some(iterator) => {
            // The iterator owns the read-side cost: it is released when the loop body takes the message.
            if let Err(error) = iterator
                .bind(py)
                .call_method1(intern!(py, "push"), (&payload, cost))
            {
                consume(ws, cost);
                report(ws, "message", error);
            }
            0
        }
        None => cost,
    };
    deliver_behind(ws, chain, "message", (payload, binary), cost);
}

/// Ends the `async for` over this connection's messages, if any.
fn end_iterator(ws: &Bound<'_, Websocket>) {
    let py = ws.py();
    let iterator = ws.get().state(py).iterator().map(|it| it.clone_ref(py));
    if let Some(iterator) = iterator {
        if let Err(error) = iterator.bind(py).call_method0(intern!(py, "end")) {
            report(ws, "close", error);
        }
    }
}

/// Delivers 'ping' or 'pong' with its payload.
pub fn deliver_control(ws: &Bound<'_, Websocket>, event: &str, data: &Bytes, cost: usize) {
    let py = ws.py();
    match ws.get().message_type.to_python(py, data, false) {
        Ok(payload) => deliver(ws, event, (payload,), cost),
        Err(error) => {
            consume(ws, cost);
            report(ws, event, error);
        }
    }
}

/// Delivers 'drain': the queue is back below `max_backpressure` after a refusal. The `drain()` awaitables
/// are done now; the listeners may still wait behind the connection's async chain.
pub fn deliver_drain(ws: &Bound<'_, Websocket>) {
    release_drain_waiters(ws);
    deliver(ws, "drain", (), 0);
}

/// Completes every pending `await ws.drain()` of this connection.
fn release_drain_waiters(ws: &Bound<'_, Websocket>) {
    let py = ws.py();
    let futures = ws.get().update(py, |state| {
        state
            .waiters
            .as_mut()
            .map_or_else(Vec::new, |waiters| std::mem::take(&mut waiters.drain))
    });
    for future in futures {
        let future = future.bind(py);
        // A waiter cancelled meanwhile is done already and must not be set.
        if is_done(future) {
            continue;
        }
        if let Err(error) = future.call_method1(intern!(py, "set_result"), (py.None(),)) {
            report(ws, "drain", error);
        }
    }
}

/// Whether an asyncio future is done (a future that cannot say is treated as done: nothing to wake).
fn is_done(future: &Bound<'_, PyAny>) -> bool {
    future
        .call_method0(intern!(future.py(), "done"))
        .and_then(|done| done.is_truthy())
        .unwrap_or(true)
}

/// Delivers 'dropped' with a message that was refused over `max_backpressure`.
pub fn deliver_dropped(ws: &Bound<'_, Websocket>, data: &Bytes, binary: bool) {
    match ws.get().message_type.to_python(ws.py(), data, !binary) {
        Ok(payload) => deliver(ws, "dropped", (payload, binary), 0),
        Err(error) => report(ws, "dropped", error),
    }
}

/// Fires 'close' once; later calls do nothing. Listeners are released after it, which breaks the usual
/// cycle of a listener closure that refers to its socket.
pub fn deliver_close(ws: &Bound<'_, Websocket>, code: u16, reason: &Bytes) {
    let Some(message_type) = mark_close_fired(ws) else {
        return;
    };
    end_iterator(ws);
    release_drain_waiters(ws);
    match message_type.to_python(ws.py(), reason, true) {
        Ok(reason) => deliver(ws, "close", (code, reason), 0),
        Err(error) => report(ws, "close", error),
    }
    release_listeners_if_idle(ws);
}

/// `destroy()`: 'close' fires now, even inside an async chain; the events still waiting in the chain are
/// dropped with the connection.
fn deliver_close_now(ws: &Bound<'_, Websocket>) {
    let py = ws.py();
    let Some(message_type) = mark_close_fired(ws) else {
        return;
    };
    end_iterator(ws);
    release_drain_waiters(ws);
    let chain = ws.get().state(py).chain.as_ref().map(|c| c.clone_ref(py));
    if let Some(chain) = chain {
        match chain.bind(py).call_method0(intern!(py, "discard_events")) {
            Ok(cost) => consume(ws, cost.extract().unwrap_or(0)),
            Err(error) => report(ws, "close", error),
        }
    }
    let reason = message_type.to_python(py, &Bytes::new(), true);
    match reason.and_then(|reason| (crate::protocol::CLOSE_ABNORMAL, reason).into_pyobject(py)) {
        Ok(args) => {
            let awaitables = call_listeners(ws, "close", &args);
            schedule(ws, awaitables);
        }
        Err(error) => report(ws, "close", error),
    }
    release_listeners_if_idle(ws);
}

fn mark_close_fired(ws: &Bound<'_, Websocket>) -> Option<MessageType> {
    let this = ws.get();
    let fired = this.update(ws.py(), |state| {
        std::mem::replace(&mut state.close_fired, true)
    });
    (!fired).then_some(this.message_type)
}

fn release_listeners_if_idle(ws: &Bound<'_, Websocket>) {
    ws.get().update(ws.py(), |state| match state.chain {
        None => std::mem::take(&mut state.listeners),
        Some(_) => Listeners::default(),
    });
}

fn deliver<'py, A>(ws: &Bound<'py, Websocket>, event: &str, args: A, cost: usize)
where
    A: IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>>,
{
    let chain = ws
        .get()
        .state(ws.py())
        .chain
        .as_ref()
        .map(|c| c.clone_ref(ws.py()));
    deliver_behind(ws, chain, event, args, cost);
}

/// Delivers `event` to the listeners, or behind `chain` (this connection's running async chain).
fn deliver_behind<'py, A>(
    ws: &Bound<'py, Websocket>,
    chain: Option<Py<PyAny>>,
    event: &str,
    args: A,
    cost: usize,
) where
    A: IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>>,
{
    let py = ws.py();
    match chain {
        Some(chain) => {
            if let Err(error) = chain
                .bind(py)
                .call_method1(intern!(py, "push_event"), (event, args, cost))
            {
                consume(ws, cost);
                report(ws, event, error);
            }
        }
        None => {
            let args = match args.into_pyobject(py) {
                Ok(args) => args,
                Err(error) => {
                    consume(ws, cost);
                    return report(ws, event, error.into());
                }
            };
            let awaitables = call_listeners(ws, event, &args);
            if awaitables.is_empty() {
                consume(ws, cost);
            } else {
                schedule(ws, awaitables);
                // The event counts against the read-side bound until its async listeners are done.
                let chain = ws.get().state(py).chain.as_ref().map(|c| c.clone_ref(py));
                let pushed =
                    chain.map(|c| c.bind(py).call_method1(intern!(py, "push_cost"), (cost,)));
                if !matches!(pushed, Some(Ok(_))) {
                    consume(ws, cost);
                }
            }
        }
    }
}

/// The Python side is done with `cost` bytes of this connection's events: readers paused on the
/// read-side bound may go on.
fn consume(ws: &Bound<'_, Websocket>, cost: usize) {
    if cost == 0 {
        return;
    }
    let this = ws.get();
    let backlog = this.shared.events.backlog();
    backlog.consumed(&this.conn, cost);
    backlog.resume_ready();
}

/// Calls the listeners of `event` in order; returns the awaitables that async listeners returned.
fn call_listeners<'py>(
    ws: &Bound<'py, Websocket>,
    event: &str,
    args: &Bound<'py, PyTuple>,
) -> Vec<Bound<'py, PyAny>> {
    let py = ws.py();
    let callbacks = ws
        .get()
        .update(py, |state| state.listeners.take_for_call(py, event));
    let mut awaitables = Vec::new();
    let mut call = |callback: Py<PyAny>| match callback.bind(py).call1(args) {
        Ok(result) if result.is_none() => {}
        Ok(result) => {
            if is_awaitable(&result) {
                awaitables.push(result);
            }
        }
        Err(error) => report(ws, event, error),
    };
    match callbacks {
        Callbacks::None => {}
        Callbacks::One(callback) => call(callback),
        Callbacks::Many(list) => list.into_iter().for_each(call),
    }
    awaitables
}

/// Runs awaitables after whatever this connection is already awaiting, in order.
fn schedule<'py>(ws: &Bound<'py, Websocket>, awaitables: Vec<Bound<'py, PyAny>>) {
    for awaitable in awaitables {
        schedule_one(ws, awaitable);
    }
}

/// Runs one awaitable behind this connection's chain, starting the chain if none runs.
pub fn schedule_one<'py>(ws: &Bound<'py, Websocket>, awaitable: Bound<'py, PyAny>) {
    let py = ws.py();
    let this = ws.get();
    let chain = this.state(py).chain.as_ref().map(|c| c.clone_ref(py));
    let hooks = this.shared.hooks.clone_ref(py);
    let result = match chain {
        Some(chain) => chain
            .bind(py)
            .call_method1(intern!(py, "push_awaitable"), (awaitable,))
            .map(drop),
        None => hooks
            .bind(py)
            .call_method1(intern!(py, "start_chain"), (ws, awaitable))
            .map(|chain| {
                this.update(py, |state| state.chain.replace(chain.unbind()));
            }),
    };
    if let Err(error) = result {
        report(ws, "handler", error);
    }
}

/// Logs an exception raised by user code through the hooks (Python `logging`); never raises.
pub fn report(ws: &Bound<'_, Websocket>, event: &str, error: PyErr) {
    let py = ws.py();
    let hooks = ws.get().shared.hooks.clone_ref(py);
    if let Err(failure) = hooks
        .bind(py)
        .call_method1(intern!(py, "report"), (ws, event, error.into_value(py)))
    {
        super::log_error(
            py,
            "reporting a handler's error",
            failure,
            Some(ws.as_any()),
        );
    }
}

#[pymethods]
impl Websocket {
    /// The native connection object (this object itself: hyperws has no separate wrapper).
    #[getter]
    fn raw(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The client's IP address (as a trusted proxy named it, or the peer's).
    /// `Websocket[bytes]` (the type of a "Buffer" route's connections) works at run time too.
    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        let alias = py
            .import(intern!(py, "types"))?
            .getattr(intern!(py, "GenericAlias"))?;
        alias.call1((cls, item))
    }

    /// The connection's number, unique in this server process (the access log and the logs name it).
    #[getter]
    fn id(&self) -> u64 {
        self.conn.id
    }

    /// The pattern of the route the connection came through, e.g. `/chat/:room`.
    #[getter]
    fn route(&self) -> &str {
        &self.conn.route.pattern
    }

    #[getter]
    fn ip(&self) -> String {
        display_ip(self.conn.peer.ip())
    }

    /// The proxy that named the client ("" when none did).
    #[getter]
    fn proxy_ip(&self) -> String {
        self.conn.proxy_ip().map(display_ip).unwrap_or_default()
    }

    /// The TLS certificate the client presented (None without TLS, or when it presented none).
    #[getter]
    fn peer_certificate(&self) -> Option<PeerCertificate> {
        self.conn
            .peer_certificate()
            .and_then(PeerCertificate::parse)
    }

    /// The subprotocol the upgrade handler chose ("" when none).
    #[getter]
    fn protocol(&self, py: Python<'_>) -> String {
        self.state(py).protocol.to_string()
    }

    /// Values given to `response.upgrade(context)`; an empty dict without an upgrade route.
    #[getter]
    fn context(&self, py: Python<'_>) -> Py<PyAny> {
        if let Some(context) = &self.state(py).context {
            return context.clone_ref(py);
        }
        let context = PyDict::new(py).into_any().unbind();
        self.update(py, |state| state.context = Some(context.clone_ref(py)));
        context
    }

    /// Whether the connection is closed or closing (nothing more can be sent).
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.state(py).close_fired || !self.conn.is_open()
    }

    /// Bytes queued for this connection and not yet written to the socket.
    #[getter]
    fn buffered(&self) -> usize {
        self.outbound().buffered()
    }

    /// Topic filters this connection is subscribed to, in subscription order.
    #[getter]
    fn topics(&self) -> Vec<String> {
        self.shared.topics.topics(self.conn.id)
    }

    /// Subscribes to `topic` (MQTT syntax: `+` matches one level, a final `#` any number). Returns whether
    /// it was a new subscription; False after the connection closed.
    fn subscribe(&self, topic: &str) -> PyResult<bool> {
        cork::flush_publishes();
        self.shared
            .topics
            .subscribe(&self.conn, topic)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Removes a subscription; returns whether there was one.
    fn unsubscribe(&self, topic: &str) -> PyResult<bool> {
        cork::flush_publishes();
        self.shared
            .topics
            .unsubscribe(self.conn.id, topic)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Whether this connection is subscribed to exactly this topic filter.
    fn is_subscribed(&self, topic: &str) -> bool {
        self.shared.topics.is_subscribed(self.conn.id, topic)
    }

    /// Publishes to every subscriber of `topic` except this connection. Returns whether any was reached.
    #[pyo3(signature = (topic, message, is_binary=None, compress=false))]
    fn publish(
        slf: &Bound<'_, Self>,
        topic: &str,
        message: &Bound<'_, PyAny>,
        is_binary: Option<bool>,
        compress: bool,
    ) -> PyResult<bool> {
        let this = slf.get();
        publish::publish(
            slf.py(),
            &this.shared,
            topic,
            message,
            is_binary,
            compress,
            Some(this.conn.id),
        )
    }

    /// Sends a message. `is_binary` defaults to the type: bytes-like → binary, str → text. Returns False
    /// when the connection is closed or the message was refused (backpressure). `compress` compresses it
    /// when the connection negotiated permessage-deflate (and sends it plain otherwise).
    #[pyo3(signature = (message, is_binary=None, compress=false))]
    fn send(
        &self,
        message: &Bound<'_, PyAny>,
        is_binary: Option<bool>,
        compress: bool,
    ) -> PyResult<bool> {
        if self.state(message.py()).stream.is_some() {
            return Err(PyRuntimeError::new_err(
                "send() while a message is being streamed (stream() or writable) would break it: \
                 wait for the stream to end",
            ));
        }
        let (outgoing, binary) = extract_typed_message(message, is_binary)?;
        let opcode = if binary { encode::BINARY } else { encode::TEXT };
        let queued = if compress {
            self.counted(
                opcode,
                self.outbound().send_compressed(opcode, outgoing.bytes()),
            )
        } else {
            self.queue(opcode, outgoing.bytes())
        };
        if let Queued::Full = queued {
            let data = Bytes::copy_from_slice(outgoing.bytes());
            self.shared.events.push(Event::Dropped {
                id: self.conn.id,
                data,
                binary,
            });
        }
        Ok(matches!(queued, Queued::Yes { .. }))
    }

    /// Sends a ping (payload at most 125 bytes). Returns False when the connection is closed.
    #[pyo3(signature = (message=None))]
    fn ping(&self, message: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let outgoing = message.map(extract_message).transpose()?;
        let payload = outgoing.as_ref().map_or(&[][..], |o| o.bytes());
        if payload.len() > 125 {
            return Err(PyValueError::new_err(format!(
                "a ping payload is at most 125 bytes, got {}",
                payload.len()
            )));
        }
        Ok(matches!(
            self.queue(encode::PING, payload),
            Queued::Yes { .. }
        ))
    }

    /// Starts the close handshake: queued data is written first, then the close frame.
    #[pyo3(signature = (code=1000, message=""))]
    fn close(&self, code: i64, message: &str) -> PyResult<()> {
        let Some(code) = u16::try_from(code)
            .ok()
            .filter(|code| is_valid_sent_close_code(*code))
        else {
            return Err(PyValueError::new_err(format!(
                "close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999"
            )));
        };
        if message.len() > 123 {
            return Err(PyValueError::new_err(format!(
                "a close message is at most 123 bytes in UTF-8, got {}",
                message.len()
            )));
        }
        self.outbound().close(code, message);
        Ok(())
    }

    /// Drops the connection at once without a close frame; 'close' fires now with 1006.
    fn destroy(slf: &Bound<'_, Self>) {
        let this = slf.get();
        this.outbound().destroy();
        this.shared.topics.unsubscribe_all(this.conn.id);
        deliver_close_now(slf);
    }

    /// Waits until the bytes waiting to be written are at most `max_backpressure` (or the connection
    /// closed). Returns an awaitable, like `asyncio.StreamWriter.drain`. The engine completes it at the
    /// drain itself, so it may be awaited from anywhere, the connection's own async handlers included.
    fn drain<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let must_wait = this.outbound().want_drain() && !this.state(py).close_fired;
        let future = this
            .shared
            .hooks
            .bind(py)
            .call_method1(intern!(py, "drain_future"), (must_wait,))?;
        if must_wait {
            // Waits given up (cancelled, timed out) are let go here rather than kept until the drain;
            // asked and let go outside the borrow, since asking a future runs Python code.
            let mut waiting =
                this.update(py, |state| std::mem::take(&mut state.waiters_mut().drain));
            waiting.retain(|waiting| !is_done(waiting.bind(py)));
            waiting.push(future.clone().unbind());
            this.update(py, |state| {
                let drain = &mut state.waiters_mut().drain;
                waiting.append(drain);
                *drain = waiting;
            });
        }
        Ok(future)
    }

    /// Streams one message, fragmented into frames as `readable` produces chunks: an async iterable of
    /// bytes or str, a sync iterable, a binary file object or an `asyncio.StreamReader`. Waits for
    /// 'drain' rather than dropping; resolves when the last frame is queued.
    #[pyo3(signature = (readable, is_binary=None))]
    fn stream<'py>(
        slf: &Bound<'py, Self>,
        readable: &Bound<'py, PyAny>,
        is_binary: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        slf.get()
            .shared
            .hooks
            .bind(py)
            .call_method1(intern!(py, "stream"), (slf, readable, is_binary))
    }

    /// A writer to pipe one message into: `write(chunk) -> bool`, `await drain()`, `close()`.
    #[getter]
    fn writable<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        slf.get()
            .shared
            .hooks
            .bind(py)
            .call_method1(intern!(py, "writable"), (slf,))
    }

    /// Stream side: starts a streamed message.
    fn _stream_begin(&self, py: Python<'_>) -> PyResult<()> {
        if self.state(py).stream.is_some() {
            return Err(PyRuntimeError::new_err(
                "a message is already being streamed on this connection (one stream() or writable at a time)",
            ));
        }
        self.outbound()
            .begin_stream()
            .map_err(PyConnectionError::new_err)?;
        self.update(py, |state| state.stream = Some(Utf8Validator::default()));
        Ok(())
    }

    /// Stream side: queues one fragment. Returns False when it was refused over `max_backpressure`
    /// (`force=False`), or, with `force=True`, whether the queue is under the limit after queueing it.
    #[pyo3(signature = (chunk, first, last, binary, force=false))]
    fn _stream_fragment(
        &self,
        chunk: &Bound<'_, PyAny>,
        first: bool,
        last: bool,
        binary: bool,
        force: bool,
    ) -> PyResult<bool> {
        let outgoing = extract_message(chunk)?;
        cork::flush_publishes();
        let go_on = self.update(chunk.py(), |state| {
            let Some(validator) = state.stream.as_mut() else {
                return Err(PyRuntimeError::new_err("no message is being streamed"));
            };
            if !force && self.conn.want_drain() {
                return Ok(false);
            }
            if !binary {
                validator.feed(outgoing.bytes(), last).map_err(|_| {
                    PyValueError::new_err("a text message must be valid UTF-8 (a chunk is not, or the message ends inside a character)")
                })?;
            }
            Ok(true)
        })?;
        if !go_on {
            return Ok(false);
        }
        let fragment = Fragment {
            first,
            last,
            binary,
            limited: !force,
        };
        match self.conn.send_fragment(fragment, outgoing.bytes()) {
            Queued::Yes { wake } => {
                if wake {
                    cork::wake(&self.conn, &self.shared.events);
                }
                Ok(!force || self.conn.under_limit())
            }
            Queued::Full => Ok(false),
            Queued::Closed => Err(PyConnectionError::new_err(
                "the connection closed during the stream",
            )),
        }
    }

    /// Stream side: the streamed message is over (or abandoned).
    fn _stream_end(&self, py: Python<'_>) {
        self.update(py, |state| state.stream = None);
        if self.outbound().end_stream() {
            cork::wake(&self.conn, &self.shared.events);
        }
        Traffic::add(&self.shared.events.traffic().messages_out, 1);
    }

    /// `async for message in ws:` yields the messages in order and ends when the connection closes.
    fn __aiter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (existing, chain, ended) = {
            let state = this.state(py);
            (
                state.iterator().map(|it| it.clone_ref(py)),
                state.chain.as_ref().map(|c| c.clone_ref(py)),
                state.close_fired,
            )
        };
        if let Some(iterator) = existing {
            return Ok(iterator.into_bound(py));
        }
        let iterator = this
            .shared
            .hooks
            .bind(py)
            .call_method1(intern!(py, "message_iterator"), (slf,))?;
        this.update(py, |state| {
            state
                .waiters_mut()
                .iterator
                .replace(iterator.clone().unbind())
        });
        // Messages that arrived while an async handler ran belong to the iteration, in order.
        if let Some(chain) = chain {
            let waiting = chain.bind(py).call_method0(intern!(py, "take_messages"))?;
            for item in waiting.try_iter()? {
                let (args, cost): (Bound<'_, PyTuple>, usize) = item?.extract()?;
                iterator.call_method1(intern!(py, "push"), (args.get_item(0)?, cost))?;
            }
        }
        if ended {
            iterator.call_method0(intern!(py, "end"))?;
        }
        Ok(iterator)
    }

    /// Runs `callback()` with writes held back, so every send inside goes out together; returns its result.
    fn atomic(&self, callback: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let _cork = CorkGuard::begin();
        callback.call0().map(Bound::unbind)
    }

    /// Adds a listener (also usable as a decorator: `@ws.on("message")`). Returns the socket, for chaining.
    #[pyo3(signature = (event, listener=None))]
    fn on(
        slf: &Bound<'_, Self>,
        event: &str,
        listener: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        add_listener(slf, event, listener, false)
    }

    /// Adds a listener called at most once (also usable as a decorator).
    #[pyo3(signature = (event, listener=None))]
    fn once(
        slf: &Bound<'_, Self>,
        event: &str,
        listener: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        add_listener(slf, event, listener, true)
    }

    /// Removes `listener` from `event`, or every listener of `event` when `listener` is omitted.
    #[pyo3(signature = (event, listener=None))]
    fn off(slf: &Bound<'_, Self>, event: &str, listener: Option<&Bound<'_, PyAny>>) -> Py<Self> {
        let py = slf.py();
        slf.get()
            .update(py, |state| state.listeners.remove(py, event, listener));
        slf.clone().unbind()
    }

    /// Calls the listeners of `event` with `args`; returns whether there were any.
    #[pyo3(signature = (event, *args))]
    fn emit(slf: &Bound<'_, Self>, event: &str, args: &Bound<'_, PyTuple>) -> bool {
        if slf.get().state(slf.py()).listeners.count(event) == 0 {
            return false;
        }
        let awaitables = call_listeners(slf, event, args);
        schedule(slf, awaitables);
        true
    }

    /// How many listeners `event` has.
    fn listener_count(&self, py: Python<'_>, event: &str) -> usize {
        self.state(py).listeners.count(event)
    }

    /// Chain side: runs the listeners of a queued event and returns the awaitables to await in order.
    fn _call_listeners<'py>(
        slf: &Bound<'py, Self>,
        event: &str,
        args: &Bound<'py, PyTuple>,
    ) -> Vec<Bound<'py, PyAny>> {
        call_listeners(slf, event, args)
    }

    /// Chain side: the listeners of a queued event are done with it (read-side flow control).
    fn _consumed(slf: &Bound<'_, Self>, cost: usize) {
        consume(slf, cost);
    }

    /// Chain side: the chain has nothing left; events go straight to listeners again.
    fn _chain_done(&self, py: Python<'_>) {
        self.update(py, |state| {
            let listeners = match state.close_fired {
                true => std::mem::take(&mut state.listeners),
                false => Listeners::default(),
            };
            (state.chain.take(), listeners)
        });
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.closed(py) { "closed" } else { "open" };
        format!(
            "<hyperws.Websocket #{} {} {}>",
            self.conn.id,
            self.ip(),
            state
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(state) = self.state.borrow_during_gc() else {
            return Ok(());
        };
        if let Some(context) = &state.context {
            visit.call(context)?;
        }
        if let Some(chain) = &state.chain {
            visit.call(chain)?;
        }
        if let Some(waiters) = &state.waiters {
            if let Some(iterator) = &waiters.iterator {
                visit.call(iterator)?;
            }
            for future in &waiters.drain {
                visit.call(future)?;
            }
        }
        state.listeners.traverse(&visit)
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            self.update(py, |state| {
                (
                    std::mem::take(&mut state.listeners),
                    state.context.take(),
                    state.chain.take(),
                    state.waiters.take(),
                )
            })
        });
    }
}

impl Websocket {
    fn queue(&self, opcode: u8, payload: &[u8]) -> Queued {
        self.counted(opcode, self.outbound().send(opcode, payload))
    }

    /// The connection's outbound queue, once the publishes held on this thread are in it: they were
    /// made before whatever is about to be queued or read.
    fn outbound(&self) -> &ConnHandle {
        cork::flush_publishes();
        &self.conn
    }

    /// Counts a queued frame and wakes its writer (now, or at the end of the cork).
    fn counted(&self, opcode: u8, queued: Queued) -> Queued {
        if let Queued::Yes { wake } = queued {
            if opcode != encode::PING {
                Traffic::add(&self.shared.events.traffic().messages_out, 1);
            }
            if wake {
                cork::wake(&self.conn, &self.shared.events);
            }
        }
        queued
    }
}

fn add_listener(
    slf: &Bound<'_, Websocket>,
    event: &str,
    listener: Option<&Bound<'_, PyAny>>,
    once: bool,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let Some(listener) = listener else {
        let decorator = ListenerDecorator {
            ws: slf.clone().unbind(),
            event: event.to_owned(),
            once,
        };
        return Ok(Py::new(py, decorator)?.into_any());
    };
    if !listener.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "a listener must be callable, got {}",
            listener.get_type().name()?
        )));
    }
    if !ENGINE_EVENTS.contains(&event) {
        warn_unknown_event(py, event)?;
    }
    slf.get().update(py, |state| {
        state.listeners.add(event, listener.clone().unbind(), once)
    });
    Ok(slf.clone().into_any().unbind())
}

/// The events the engine emits; others come only from the app's own `emit`.
const ENGINE_EVENTS: [&str; 6] = ["message", "close", "drain", "ping", "pong", "dropped"];

/// A listener for an event the engine never emits is most likely a typo ("mesage"): say so, as a
/// `UserWarning` (an app's own events, fired with `emit`, stay allowed; filter the warning for them).
fn warn_unknown_event(py: Python<'_>, event: &str) -> PyResult<()> {
    let message = format!(
        "hyperws never emits {event:?} (its events: {}); if it is your own event, fired with \
         emit(), ignore this warning",
        ENGINE_EVENTS.join(", ")
    );
    let message = std::ffi::CString::new(message).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 2)
}

/// What `ws.on(event)` returns without a listener: registers the function it decorates.
#[pyclass(module = "hyperws._core")]
pub struct ListenerDecorator {
    ws: Py<Websocket>,
    event: String,
    once: bool,
}

#[pymethods]
impl ListenerDecorator {
    fn __call__(&self, py: Python<'_>, listener: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        add_listener(self.ws.bind(py), &self.event, Some(listener), self.once)?;
        Ok(listener.clone().unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.ws)
    }
}
