use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

use super::access::AccessHead;
use super::connection::Connection;
use super::handshake::Outcome;
use super::http::{http_response, Answer, HttpRoutes, Request};
use super::lazy_tcp::LazyTcp;
use super::proxy::Peer;
use super::tls::TlsStream;
use super::transport::Transport;
use super::upgrade::{switching_protocols, Decision};
use super::{front, ByteStream, ClientDetails, ConnHandle, InlineReads, RouteConfig, ServerConfig};
use crate::bridge::{Event, EventQueue};
use crate::protocol::deflate::DeflateParams;
use crate::protocol::CLOSE_ABNORMAL;
use crate::routing::RouteTable;

const LISTEN_BACKLOG: i32 = 4096;

/// A listening server: its own tokio runtime, the accept loop and the registry of live connections.
#[derive(Debug)]
pub struct NetServer {
    runtime: Option<Runtime>,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Receives once the accept loop has dropped the listening socket.
    listener_closed: Mutex<Option<mpsc::Receiver<()>>>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) events: Arc<EventQueue>,
    /// WebSocket routes.
    pub(super) routes: RouteTable<Arc<RouteConfig>>,
    pub(super) http: HttpRoutes,
    pub(super) config: ServerConfig,
    connections: Mutex<HashMap<u64, Arc<ConnHandle>>>,
    next_id: AtomicU64,
    /// Plain connections read on the asyncio thread, when `inline_reads` is on.
    inline: Option<Arc<InlineReads>>,
}

/// Where a server listens, and on how many I/O threads.
#[derive(Debug, Clone, Copy)]
pub struct Bind<'a> {
    pub host: &'a str,
    /// 0 picks a free port.
    pub port: u16,
    /// SO_REUSEPORT: other sockets (worker processes) may bind the same port, and the kernel spreads
    /// new connections over them.
    pub reuse_port: bool,
    pub io_threads: usize,
}

impl Shared {
    /// A connection announced to Python is over: it leaves the registry, then Python gets its 'close'.
    fn ended(&self, id: u64, code: u16, reason: Bytes) {
        self.connections
            .lock()
            .expect("connection registry poisoned")
            .remove(&id);
        self.events.push(Event::Close { id, code, reason });
    }

    /// Hands Python an access-log entry for an answered request, when the access log is on (`head`
    /// is only called then).
    pub(super) fn log_access(
        &self,
        head: impl FnOnce() -> AccessHead,
        route: Option<&Arc<str>>,
        status: u16,
        bytes: usize,
    ) {
        if self.config.access_log {
            let entry = head().answered(route, status, bytes);
            self.events.push(Event::Access(entry));
        }
    }
}

impl NetServer {
    /// Binds and starts accepting.
    pub fn bind(
        bind: Bind<'_>,
        routes: RouteTable<Arc<RouteConfig>>,
        http: HttpRoutes,
        config: ServerConfig,
        events: Arc<EventQueue>,
    ) -> io::Result<Self> {
        let Bind { host, port, .. } = bind;
        let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host {host:?} resolves to no address"),
            )
        })?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if bind.reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        // Accepted connections inherit it (Linux): one call here instead of one per connection.
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        defer_accept(&socket)?;
        let local_addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("the listening socket has no IP address"))?;

        let inline = match config.inline_reads {
            true => Some(Arc::new(InlineReads::new(config.close_timeout)?)),
            false => None,
        };
        let starting = Arc::clone(&events);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(bind.io_threads.max(1))
            .thread_name("hyperws-io")
            .on_thread_start(move || starting.io_thread_starts())
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            // SAFETY: the registration owns the socket, so its descriptor stays open and the same
            // for as long as the registration lives.
            unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
                .map_err(io::Error::from)?
        };
        let shared = Arc::new(Shared {
            events,
            routes,
            http,
            config,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            inline,
        });
        let (stop, stopped) = watch::channel(false);
        let (closed_tx, closed_rx) = mpsc::channel();
        runtime.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            stopped,
            closed_tx,
        ));
        Ok(Self {
            runtime: Some(runtime),
            shared,
            local_addr,
            stop,
            listener_closed: Mutex::new(Some(closed_rx)),
        })
    }

    /// The connections read on the asyncio thread, when `inline_reads` is on.
    pub fn inline_reads(&self) -> Option<&Arc<InlineReads>> {
        self.shared.inline.as_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes the listening socket (the port is free when this returns); live
    /// connections go on.
    pub fn stop_accepting(&self) {
        self.stop.send_replace(true);
        let closed = self
            .listener_closed
            .lock()
            .expect("listener state poisoned")
            .take();
        if let Some(closed) = closed {
            let _ = closed.recv_timeout(Duration::from_secs(5));
        }
    }

    pub fn connection_count(&self) -> usize {
        self.registry().len()
    }

    /// Starts the close handshake on every live connection.
    pub fn close_all(&self, code: u16, reason: &str) {
        for conn in self.registry().values() {
            conn.close(code, reason);
        }
    }

    /// Drops every live connection at once.
    pub fn destroy_all(&self) {
        for conn in self.registry().values() {
            conn.destroy();
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnHandle>>> {
        self.shared
            .connections
            .lock()
            .expect("connection registry poisoned")
    }
}

impl Drop for NetServer {
    fn drop(&mut self) {
        self.stop_accepting();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(
    listener: AsyncFd<Socket>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    closed: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => {
                drop(listener);
                let _ = closed.send(());
                return;
            }
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                // Boxed: the handshake's state (HTTP buffers, header arrays, Python's decision) lives in
                // its own allocation, freed once the connection upgrades, instead of enlarging the task
                // that every connection keeps for as long as it lives.
                let upgrading = Box::pin(upgrade(stream, peer, id, Arc::clone(&shared)));
                tokio::spawn(serve(upgrading, Arc::clone(&shared)));
            }
            // Out of descriptors or memory: back off instead of spinning on the error.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Has the kernel hand over a connection once its first bytes are in (or after about a second without
/// any). Clients here speak first (an HTTP request, a PROXY header, a TLS ClientHello), so the upgrade
/// request is then read at once, with no registration (see `LazyTcp`); and a client that connects and
/// says nothing costs nothing until it is handed over, when `request_timeout` starts.
fn defer_accept(listener: &Socket) -> io::Result<()> {
    let seconds: libc::c_int = 1;
    // SAFETY: a valid socket, and a pointer to an int of the size given.
    let done = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The next connection, not registered with the runtime yet (see `LazyTcp`).
async fn accept(listener: &AsyncFd<Socket>) -> io::Result<(LazyTcp, SocketAddr)> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    let (socket, peer) = listener
        .async_io(Interest::READABLE, |listener| listener.accept4(flags))
        .await?;
    let peer = peer
        .as_socket()
        .ok_or_else(|| io::Error::other("a connection from no IP address"))?;
    Ok((LazyTcp::Unregistered(socket.into()), peer))
}

/// Hands an intercepted upgrade to Python and carries out its decision. Returns true when the
/// connection was upgraded (the 101 is written).
async fn ask_python(
    stream: &mut impl ByteStream,
    id: u64,
    route: &RouteConfig,
    accept_key: &str,
    deflate: Option<&DeflateParams>,
    request: Box<Request>,
    shared: &Shared,
) -> bool {
    let access = shared
        .config
        .access_log
        .then(|| AccessHead::handed_over(&request));
    let log = |status: u16, bytes: usize| {
        if let Some(access) = access {
            shared.log_access(|| access, Some(&route.pattern), status, bytes);
        }
    };
    let (reply, decision) = oneshot::channel();
    shared.events.push(Event::Upgrade {
        id,
        route: route.index,
        request,
        reply,
    });
    let (status, body): (u16, &[u8]) = match tokio::time::timeout(route.upgrade_timeout, decision)
        .await
    {
        Ok(Ok(Decision::Accept { protocol, headers })) => {
            log(101, 0);
            let answer = switching_protocols(accept_key, protocol.as_deref(), deflate, &headers);
            return stream.write_all(&answer).await.is_ok();
        }
        Ok(Ok(Decision::Reject(Answer {
            status,
            headers,
            body,
        }))) => {
            log(status, body.len());
            return reject(stream, &http_response(status, &headers, &body)).await;
        }
        Ok(Err(_dropped)) => (500, b"the upgrade handler failed\n"),
        Err(_elapsed) => (503, b"the upgrade handler did not answer in time\n"),
    };
    log(status, body.len());
    reject(stream, &http_response::<&str, &str>(status, &[], body)).await
}

/// Writes an upgrade's refusal and ends the connection; returns false (not upgraded).
async fn reject(stream: &mut impl ByteStream, response: &[u8]) -> bool {
    if stream.write_all(response).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    false
}

/// A connection's task: the upgrade, then the WebSocket until it ends.
async fn serve(upgrading: Pin<Box<impl Future<Output = Option<Connection>>>>, shared: Arc<Shared>) {
    let Some(mut connection) = upgrading.await else {
        return;
    };
    let id = connection.id();
    let (code, reason) = connection.serve().await;
    shared.ended(id, code, reason);
}

/// Serves the connection until it upgrades, over TLS when configured, then opens it. `None`: the
/// client left, was answered over HTTP, was refused, or failed the TLS handshake.
async fn upgrade(
    mut stream: LazyTcp,
    peer: SocketAddr,
    id: u64,
    shared: Arc<Shared>,
) -> Option<Connection> {
    let shared = &*shared;
    let (peer, read) = front::read_peer(&mut stream, peer, &shared.config).await?;
    let Some(tls) = &shared.config.tls else {
        let opened = open(&mut stream, peer, None, read, id, shared).await?;
        return opened.plain_connection(stream, shared);
    };
    let handshake = TlsStream::accept(stream.into_registered().ok()?, tls.config(), read);
    // Kept alive (with the socket) until the failure is counted: a client that sees its connection end
    // sees it in `stats()`.
    let mut handshake = pin!(timeout(shared.config.request_timeout, handshake));
    let stream = match handshake.as_mut().await {
        Ok(Ok(stream)) => stream,
        failed => {
            tls.count_handshake_failure();
            if shared.config.log_connections {
                let detail = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "no complete handshake within request_timeout".to_owned(),
                };
                let peer = peer.addr.ip();
                shared.events.push(Event::TlsFailed { id, peer, detail });
            }
            return None;
        }
    };
    let mut stream = Box::new(stream);
    let certificate = stream.peer_certificate().map(Bytes::copy_from_slice);
    let opened = open(&mut stream, peer, certificate, BytesMut::new(), id, shared).await?;
    let transport = Transport::Tls(stream);
    Some(opened.connection(transport, shared))
}

/// A connection upgraded, registered and announced to Python, whose task is not running yet.
struct Opened {
    conn: Arc<ConnHandle>,
    /// Frames the client sent right behind its upgrade request.
    early_bytes: BytesMut,
}

impl Opened {
    fn connection(self, transport: Transport, shared: &Shared) -> Connection {
        self.connection_read_by(transport, shared, None)
    }

    /// Read on the asyncio thread when `inline_reads` is on and no compression was negotiated
    /// (inflating stays on the I/O threads), by its task otherwise. `None` if the socket could not be
    /// handed to its reader: the connection has then ended.
    fn plain_connection(self, stream: LazyTcp, shared: &Shared) -> Option<Connection> {
        let inline = shared
            .inline
            .as_ref()
            .filter(|_| self.conn.deflate.is_none());
        let handed = match inline {
            Some(inline) => stream.into_unregistered().map(|tcp| {
                let (transport, socket) = Transport::writes_only(tcp);
                (transport, Some((Arc::clone(inline), socket)))
            }),
            None => stream
                .into_registered()
                .map(|tcp| (Transport::Tcp(tcp), None)),
        };
        match handed {
            Ok((transport, inline)) => Some(self.connection_read_by(transport, shared, inline)),
            // Announced to Python already: it ends as a connection that was reset.
            Err(_) => {
                shared.ended(self.conn.id, CLOSE_ABNORMAL, Bytes::new());
                None
            }
        }
    }

    fn connection_read_by(
        self,
        transport: Transport,
        shared: &Shared,
        inline: Option<(Arc<InlineReads>, RawFd)>,
    ) -> Connection {
        Connection::new(
            transport,
            self.conn,
            self.early_bytes,
            Arc::clone(&shared.events),
            shared.config.close_timeout,
            inline,
        )
    }
}

/// Serves HTTP requests until one upgrades, then registers the connection and announces it to Python.
async fn open(
    stream: &mut impl ByteStream,
    peer: Peer,
    peer_certificate: Option<Bytes>,
    read: BytesMut,
    id: u64,
    shared: &Shared,
) -> Option<Opened> {
    let certificate = peer_certificate.as_ref();
    let (route, deflate, early_bytes, client) =
        match front::serve_requests(stream, id, peer, certificate, read, shared).await? {
            (
                Outcome::Upgraded {
                    route,
                    deflate,
                    early,
                },
                client,
            ) => (route, deflate, early, client),
            (
                Outcome::Intercepted {
                    route,
                    accept_key,
                    deflate,
                    request,
                    early,
                },
                client,
            ) => {
                let decided = ask_python(
                    stream,
                    id,
                    &route,
                    &accept_key,
                    deflate.as_ref(),
                    request,
                    shared,
                )
                .await;
                if !decided {
                    shared.events.push(Event::UpgradeEnded { id });
                    return None;
                }
                (route, deflate, early, client)
            }
        };
    let index = route.index;
    let details = ClientDetails::new(client.proxy_ip, peer_certificate);
    let conn = Arc::new(ConnHandle::new(id, client.addr, route, deflate).with_details(details));
    shared
        .connections
        .lock()
        .expect("connection registry poisoned")
        .insert(id, Arc::clone(&conn));
    shared.events.push(Event::Open {
        conn: Arc::clone(&conn),
        route: index,
    });
    Some(Opened { conn, early_bytes })
}
