use std::cell::OnceCell;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};

use super::read_side::{ReadSide, NO_SOCKET};
use super::RouteConfig;
use crate::protocol::deflate::{
    compress_shared, Compressor, DeflateParams, MAX_WINDOW_BITS, MIN_ALONE,
};
use crate::protocol::encode::{self, put_header};
use crate::protocol::{encode_close_payload, CLOSE_POLICY};

mod settle;
mod write_through;

/// Payloads at least this long are queued as their own buffer instead of being copied into the tail.
const SEPARATE_PAYLOAD_AT: usize = 4096;
/// The first allocation of an empty tail.
const TAIL_START: usize = 1024;

/// The half of a connection that the Python side holds: its outbound queue and its close/destroy requests.
/// The connection's task holds the socket and drains this queue with vectored writes.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: u64,
    /// The client's address (named by a trusted proxy, or the socket peer).
    pub peer: SocketAddr,
    /// What few clients have: a proxy that named them, a TLS certificate.
    pub details: Option<Box<ClientDetails>>,
    pub route: Arc<RouteConfig>,
    /// permessage-deflate, when negotiated.
    pub deflate: Option<DeflateParams>,
    out: Mutex<OutState>,
    /// Bytes queued or being written and not yet accepted by the socket. Changed only under `out`'s lock.
    buffered: AtomicUsize,
    /// Signalled when the task counts a write, or stops writing, while a refusal waits (see `settle`).
    written: Condvar,
    /// A send was refused (or `drain()` awaited) above `max_backpressure`: report when back below.
    drain_wanted: AtomicBool,
    /// Bytes of received events not yet consumed by Python (see `bridge::InboundBacklog`).
    pub(crate) inbound: AtomicUsize,
    /// What was read and not yet decoded, and the close handshake: the task's, or the asyncio thread's
    /// for a connection read there.
    read: Mutex<ReadSide>,
}

#[derive(Debug, Default)]
struct OutState {
    /// Small frames, coalesced; logically after `chunks`.
    tail: BytesMut,
    chunks: VecDeque<Bytes>,
    /// The task will not look at the queue again unless woken.
    writer_parked: bool,
    /// A wake-up is due that the task has not seen yet (it may come while the task is busy).
    woken: bool,
    /// Wakes the connection's task (one task waits: a waker costs less per connection than a `Notify`).
    waker: Option<Waker>,
    phase: Phase,
    destroy: bool,
    /// While a fragmented message is streamed: the published frames that must wait for its end (data
    /// frames cannot interleave with its fragments).
    streaming: Option<Box<Held>>,
    /// The connection's own compression context (context takeover), made on its first compressed send.
    compressor: Option<Box<Compressor>>,
    /// The length of the pong frame that ends `tail`, when it answered a ping made over the limit and
    /// nothing was queued after it (see `send_pong`); 0 otherwise. Whatever writes or takes the tail
    /// resets it.
    owed_pong: u8,
    /// The task holds output it took and has not all written yet: only it may write now.
    task_writing: bool,
    /// The task is inside its writes: what the socket took may not be counted in `buffered` yet.
    task_in_write: bool,
    /// A refusal waits for the task's next count (see `settle`).
    refusal_waiting: bool,
    /// The plain socket, while the task owns it, for writes from the queueing thread (see
    /// `write_through`); -1 otherwise (TLS, not started, ended).
    socket: RawFd,
}

/// The frames published while a message is streamed, held until it ends, and their bytes (counted in
/// `buffered`, but not writable before the stream ends).
#[derive(Debug, Default)]
struct Held {
    frames: Vec<Bytes>,
    bytes: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Phase {
    #[default]
    Open,
    /// A close frame is queued: nothing more may be sent. Holds what was sent (boxed rather than `Bytes`:
    /// every connection carries this enum, few ever close with a reason).
    Closing { code: u16, reason: Box<[u8]> },
    /// The socket is gone.
    Ended,
}

/// What few clients have, kept out of line: every connection holds a pointer, not the fields.
#[derive(Debug)]
pub struct ClientDetails {
    /// The proxy that named the client.
    pub proxy_ip: Option<IpAddr>,
    /// The client's TLS certificate (DER).
    pub certificate: Option<Bytes>,
}

impl ClientDetails {
    /// None when there is nothing to keep.
    pub fn new(proxy_ip: Option<IpAddr>, certificate: Option<Bytes>) -> Option<Box<Self>> {
        (proxy_ip.is_some() || certificate.is_some()).then(|| {
            Box::new(Self {
                proxy_ip,
                certificate,
            })
        })
    }
}

/// The outcome of queueing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued; `wake` says the task is parked and must be woken (now, or at the end of a cork).
    Yes { wake: bool },
    /// Refused: more than `max_backpressure` bytes are waiting. The message was not queued (and with
    /// `close_on_backpressure_limit`, the connection is now closing with 1008).
    Full,
    /// The connection is closing or closed: nothing was queued.
    Closed,
}

/// What an open connection took of a run of published messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunQueued {
    /// The leading messages queued.
    pub accepted: usize,
    /// The messages after them refused over `max_backpressure`, to be reported as dropped.
    pub refused: usize,
    /// The task is parked and must be woken.
    pub wake: bool,
}

/// One published message, encoded once for every receiver that takes it as it is.
pub struct Publication<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
    plain: Bytes,
    shared: OnceCell<Bytes>,
}

impl<'a> Publication<'a> {
    pub fn new(opcode: u8, payload: &'a [u8]) -> Self {
        Self {
            opcode,
            payload,
            plain: encode::frame_bytes(opcode, payload),
            shared: OnceCell::new(),
        }
    }

    /// The uncompressed frame.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The frame compressed on its own with a full window: valid for every receiver that keeps no server
    /// context at that window. Compressed on first use, once.
    pub fn shared(&self) -> &Bytes {
        self.shared.get_or_init(|| {
            let mut compressed = Vec::new();
            compress_shared(MAX_WINDOW_BITS, self.payload, &mut compressed);
            encode::frame_bytes(self.opcode | encode::RSV1, &compressed)
        })
    }
}

/// Where a fragment sits in a streamed message.
#[derive(Debug, Clone, Copy)]
pub struct Fragment {
    pub first: bool,
    pub last: bool,
    pub binary: bool,
    /// Refuse it over `max_backpressure` (false: queue it anyway, as a stream writer's `write` does).
    pub limited: bool,
}

/// What the task found when it took the queued output.
#[derive(Debug, Default)]
pub(super) struct Taken {
    pub destroy: bool,
    /// A close frame was queued (it is in the output taken, or was earlier): code and reason sent.
    pub closing: Option<(u16, Bytes)>,
}

impl ConnHandle {
    pub fn new(
        id: u64,
        peer: SocketAddr,
        route: Arc<RouteConfig>,
        deflate: Option<DeflateParams>,
    ) -> Self {
        Self {
            id,
            peer,
            details: None,
            deflate,
            out: Mutex::new(OutState {
                writer_parked: true,
                socket: NO_SOCKET,
                ..OutState::default()
            }),
            buffered: AtomicUsize::new(0),
            written: Condvar::new(),
            drain_wanted: AtomicBool::new(false),
            inbound: AtomicUsize::new(0),
            read: Mutex::new(ReadSide::new(route.max_payload_length, deflate)),
            route,
        }
    }

    /// The reading half: held by whichever thread reads or looks at the close handshake.
    pub(super) fn reading(&self) -> MutexGuard<'_, ReadSide> {
        self.read.lock().expect("read side poisoned")
    }

    pub fn with_details(mut self, details: Option<Box<ClientDetails>>) -> Self {
        self.details = details;
        self
    }

    /// The proxy that named the client, if one did.
    pub fn proxy_ip(&self) -> Option<IpAddr> {
        self.details.as_ref()?.proxy_ip
    }

    /// The TLS certificate the client presented (DER), if it did.
    pub fn peer_certificate(&self) -> Option<&Bytes> {
        self.details.as_ref()?.certificate.as_ref()
    }

    fn state(&self) -> MutexGuard<'_, OutState> {
        self.out.lock().expect("outbound queue poisoned")
    }

    /// Queues one whole data or ping frame, unless `max_backpressure` bytes are already waiting.
    pub fn send(&self, opcode: u8, payload: &[u8]) -> Queued {
        if self.still_over_limit() {
            return self.refuse();
        }
        self.send_unlimited(opcode, payload)
    }

    /// Queues a frame whatever is waiting (the engine's own pings).
    pub fn send_unlimited(&self, opcode: u8, payload: &[u8]) -> Queued {
        self.queue_frame(true, opcode, payload)
    }

    /// Answers a ping. While more than `max_backpressure` bytes wait (the client does not read what it
    /// is sent) only the most recent ping is answered, as RFC 6455 §5.5.3 allows: a pong that still ends
    /// the queue, unsent, is replaced by the new one. A ping flood from a client that never reads then
    /// costs one pong, not one per ping.
    pub fn send_pong(&self, payload: &[u8]) -> Queued {
        let mut state = self.state();
        if state.phase != Phase::Open {
            return Queued::Closed;
        }
        let over_limit = self.over_limit();
        if over_limit && state.owed_pong > 0 {
            let keep = state.tail.len() - usize::from(state.owed_pong);
            state.tail.truncate(keep);
            let now = self.buffered.load(Ordering::Relaxed);
            self.buffered
                .store(now - usize::from(state.owed_pong), Ordering::Relaxed);
        }
        let queued = self.push_locked(&mut state, true, encode::PONG, payload, None);
        if over_limit {
            // At most 2 + 125 bytes: a control frame's payload is at most 125 (the decoder checks).
            state.owed_pong = (encode::header_len(payload.len()) + payload.len()) as u8;
        }
        queued
    }

    /// Queues one whole data frame compressed as negotiated (plain when it was not), unless
    /// `max_backpressure` bytes are already waiting.
    pub fn send_compressed(&self, opcode: u8, payload: &[u8]) -> Queued {
        match self.compressing(payload) {
            Some(deflate) => self.queue_compressed(deflate, opcode, payload),
            None => self.send(opcode, payload),
        }
    }

    /// Queues a message published with compression: compressed when this connection negotiated it (the
    /// frame compressed once for all, when this connection can take it; otherwise compressed here, with its
    /// own context), plain otherwise. Held while a message is streamed.
    pub fn send_published(&self, publication: &Publication<'_>) -> Queued {
        match self.compressing(publication.payload) {
            Some(deflate) if deflate.takes_shared_frames() => {
                self.send_encoded(publication.shared())
            }
            Some(deflate) => {
                self.queue_compressed(deflate, publication.opcode, publication.payload)
            }
            None => self.send_encoded(publication.plain()),
        }
    }

    /// The negotiated compression, unless `payload` is too short to be worth compressing on its own.
    fn compressing(&self, payload: &[u8]) -> Option<DeflateParams> {
        self.deflate
            .filter(|d| !(d.server_no_context_takeover && payload.len() < MIN_ALONE))
    }

    fn queue_compressed(&self, deflate: DeflateParams, opcode: u8, payload: &[u8]) -> Queued {
        if self.still_over_limit() {
            return self.refuse();
        }
        let bits = deflate.server_max_window_bits;
        let alone = deflate.server_no_context_takeover;
        let mut compressed = Vec::new();
        if alone {
            // Compressed on its own, a message has no order to keep: the writer need not wait for it.
            compress_shared(bits, payload, &mut compressed);
        }
        let mut state = self.state();
        if state.phase != Phase::Open {
            return Queued::Closed;
        }
        if !alone {
            // A kept context must see messages in the order they go out, and only those that do:
            // compress under the queue's lock, once the message is sure to be queued.
            state
                .compressor
                .get_or_insert_with(|| Box::new(Compressor::new(bits, false)))
                .compress(payload, &mut compressed);
        }
        let frame = encode::frame_bytes(opcode | encode::RSV1, &compressed);
        self.queue_encoded_locked(&mut state, &frame, frame.len())
    }

    /// Queues one frame (FIN as given) if the connection is open.
    fn queue_frame(&self, fin: bool, opcode: u8, payload: &[u8]) -> Queued {
        let separate =
            (payload.len() >= SEPARATE_PAYLOAD_AT).then(|| Bytes::copy_from_slice(payload));
        let mut state = self.state();
        if state.phase != Phase::Open {
            return Queued::Closed;
        }
        self.push_locked(&mut state, fin, opcode, payload, separate)
    }

    fn push_locked(
        &self,
        state: &mut OutState,
        fin: bool,
        opcode: u8,
        payload: &[u8],
        separate: Option<Bytes>,
    ) -> Queued {
        push_frame(state, fin, opcode, payload, separate);
        self.count_queued(state, encode::header_len(payload.len()) + payload.len());
        Queued::Yes {
            wake: std::mem::take(&mut state.writer_parked),
        }
    }

    /// Queues a frame encoded once for many receivers (a publish): small frames are copied into the tail,
    /// larger ones are shared.
    pub fn send_encoded(&self, frame: &Bytes) -> Queued {
        if self.still_over_limit() {
            return self.refuse();
        }
        let mut state = self.state();
        if state.phase != Phase::Open {
            return Queued::Closed;
        }
        self.queue_encoded_locked(&mut state, frame, frame.len())
    }

    /// Queues the leading messages of a run of frames encoded back to back (`ends`: where each ends, at
    /// least one) that sending them one by one would have queued: a message is refused, with every one
    /// after it, once more than `max_backpressure` bytes wait before it. None when the connection is
    /// closing or closed.
    pub fn send_run(&self, frames: &Bytes, ends: &[usize]) -> Option<RunQueued> {
        let accepted_now = || match self.route.max_backpressure.checked_sub(self.buffered()) {
            Some(room) => 1 + ends[..ends.len() - 1].partition_point(|&end| end <= room),
            None => 0,
        };
        let (mut state, _) = self.refusing(self.state(), |_| accepted_now() < ends.len());
        if state.phase != Phase::Open {
            return None;
        }
        let accepted = accepted_now();
        let wake = accepted > 0
            && matches!(
                self.queue_encoded_locked(&mut state, frames, ends[accepted - 1]),
                Queued::Yes { wake: true }
            );
        drop(state);
        let refused = if accepted == ends.len() {
            0
        } else {
            match self.refuse() {
                // Refusing the first closed the connection: the rest meet a closed one, as one by one.
                Queued::Full if self.route.close_on_backpressure_limit => 1,
                Queued::Full => ends.len() - accepted,
                _ => 0,
            }
        };
        Some(RunQueued {
            accepted,
            refused,
            wake,
        })
    }

    /// Queues the first `len` bytes of `frames` (whole encoded frames), or holds them while a message is
    /// streamed (data frames cannot interleave with its fragments).
    fn queue_encoded_locked(&self, state: &mut OutState, frames: &Bytes, len: usize) -> Queued {
        if let Some(held) = state.streaming.as_mut() {
            held.frames.push(frames.slice(..len));
            held.bytes += len;
            self.count_queued(state, len);
            return Queued::Yes { wake: false };
        }
        push_encoded(state, frames, len);
        self.count_queued(state, len);
        Queued::Yes {
            wake: std::mem::take(&mut state.writer_parked),
        }
    }

    /// Starts streaming one fragmented message. Fails when one is already being streamed or the
    /// connection is not open.
    pub fn begin_stream(&self) -> Result<(), &'static str> {
        let mut state = self.state();
        if state.phase != Phase::Open {
            return Err("the connection is closed");
        }
        if state.streaming.is_some() {
            return Err("a message is already being streamed on this connection");
        }
        state.streaming = Some(Box::default());
        Ok(())
    }

    /// Queues one fragment of the streamed message: the first carries the message type, the last has
    /// FIN. Refused (not queued) while more than `max_backpressure` bytes wait: the streamer waits for
    /// 'drain' and tries again.
    pub fn send_fragment(&self, fragment: Fragment, payload: &[u8]) -> Queued {
        let Fragment {
            first,
            last,
            binary,
            limited,
        } = fragment;
        if limited {
            let (state, over) = self.refusing(self.state(), |state| {
                self.writable(state) > self.route.max_backpressure
            });
            if state.phase != Phase::Open {
                return Queued::Closed;
            }
            if over {
                self.drain_wanted.store(true, Ordering::SeqCst);
                return Queued::Full;
            }
        }
        let opcode = match (first, binary) {
            (false, _) => encode::CONTINUATION,
            (true, true) => encode::BINARY,
            (true, false) => encode::TEXT,
        };
        self.queue_frame(last, opcode, payload)
    }

    /// Ends streaming: the frames published meanwhile follow the message. Returns whether the writer
    /// must be woken.
    pub fn end_stream(&self) -> bool {
        let mut state = self.state();
        let Some(held) = state.streaming.take() else {
            return false;
        };
        if held.frames.is_empty() || state.phase != Phase::Open {
            return false;
        }
        for frame in &held.frames {
            push_encoded(&mut state, frame, frame.len());
        }
        std::mem::take(&mut state.writer_parked)
    }

    /// Whether at most `max_backpressure` bytes wait to be written, publishes held behind a streamed
    /// message aside (the streamer's view: it waits for what it can make the socket take).
    pub fn under_limit(&self) -> bool {
        self.writable(&self.state()) <= self.route.max_backpressure
    }

    /// The bytes waiting that the socket may take now: all that is buffered but the held publishes.
    fn writable(&self, state: &OutState) -> usize {
        let held = state.streaming.as_ref().map_or(0, |held| held.bytes);
        // Saturating: a connection that ended counts nothing buffered, whatever was held.
        self.buffered().saturating_sub(held)
    }

    fn over_limit(&self) -> bool {
        self.buffered() > self.route.max_backpressure
    }

    fn refuse(&self) -> Queued {
        if !self.is_open() {
            return Queued::Closed;
        }
        self.drain_wanted.store(true, Ordering::SeqCst);
        if self.route.close_on_backpressure_limit {
            self.close(CLOSE_POLICY, "backpressure limit");
        }
        Queued::Full
    }

    /// For `await ws.drain()`: returns true when the caller must wait for a drain event (more than
    /// `max_backpressure` bytes wait), false when it need not.
    pub fn want_drain(&self) -> bool {
        // Under the lock: the writer counts what it wrote under it too, so it sees the flag set here.
        let (state, over) = self.refusing(self.state(), |state| {
            self.writable(state) > self.route.max_backpressure
        });
        if state.phase != Phase::Open || !over {
            return false;
        }
        self.drain_wanted.store(true, Ordering::SeqCst);
        true
    }

    /// Queues a close frame and refuses everything after it. Returns false if the connection was not open.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        let payload = encode_close_payload(code, reason);
        let mut state = self.state();
        if state.phase != Phase::Open {
            return false;
        }
        push_frame(&mut state, true, encode::CLOSE, &payload, None);
        self.count_queued(&mut state, 2 + payload.len());
        state.phase = Phase::Closing {
            code,
            reason: payload[2..].into(),
        };
        state.writer_parked = false;
        drop(state);
        self.wake();
        true
    }

    /// Drops the socket without a close frame and discards the queue. Returns false if it had already ended.
    pub fn destroy(&self) -> bool {
        let mut state = self.state();
        if state.phase == Phase::Ended {
            return false;
        }
        state.destroy = true;
        state.phase = Phase::Ended;
        state.chunks.clear();
        state.tail = BytesMut::new();
        state.owed_pong = 0;
        self.buffered.store(0, Ordering::Relaxed);
        drop(state);
        self.wake();
        true
    }

    /// Wakes the task so it writes what is queued.
    pub fn wake(&self) {
        let waker = {
            let mut state = self.state();
            state.woken = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Counts `n` more bytes queued. `buffered` changes only under the queue's lock (the `OutState`
    /// borrow proves it is held), so a load and a store serve: the locked add it replaces was most of
    /// the queueing's share of a fan-out profile. Readers outside the lock see a value that was current.
    fn count_queued(&self, _locked: &mut OutState, n: usize) {
        let now = self.buffered.load(Ordering::Relaxed);
        self.buffered.store(now + n, Ordering::Relaxed);
    }

    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Whether messages can still be queued.
    pub fn is_open(&self) -> bool {
        self.state().phase == Phase::Open
    }

    /// Task side: ready once `wake` was called since the last time this was ready.
    pub(super) fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if std::mem::take(&mut state.woken) {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Task side: moves everything queued to `into`; parks the writer when there was nothing.
    pub(super) fn take(&self, into: &mut VecDeque<Bytes>) -> Taken {
        let mut state = self.state();
        into.append(&mut state.chunks);
        // While the socket still holds back earlier output, a tail that ends with an owed pong stays
        // queued, so that the next ping's pong can still replace it.
        let keep_owed_pong = state.owed_pong > 0 && !into.is_empty();
        if !state.tail.is_empty() && !keep_owed_pong {
            into.push_back(std::mem::take(&mut state.tail).freeze());
            state.owed_pong = 0;
        }
        state.task_writing = !into.is_empty();
        state.task_in_write = state.task_writing && !state.destroy;
        if into.is_empty() {
            state.writer_parked = true;
        }
        let closing = match &state.phase {
            Phase::Closing { code, reason } => Some((*code, Bytes::copy_from_slice(reason))),
            _ => None,
        };
        Taken {
            destroy: state.destroy,
            closing,
        }
    }

    /// Task side: the socket accepted `n` more bytes; `more`: the task writes again at once. Returns true
    /// when this brought the queue back below `max_backpressure` after a refusal (publishes held behind a
    /// streamed message aside: the streamer waits for the rest): the 'drain' event is due.
    pub(super) fn wrote(&self, n: usize, more: bool) -> bool {
        let mut state = self.state();
        let drained = self.count_written(&state, n);
        state.task_in_write = more;
        self.wake_refusals(&mut state);
        drained
    }

    /// Counts `n` bytes the socket accepted, under the queue's lock; true when the 'drain' event is due.
    fn count_written(&self, state: &OutState, n: usize) -> bool {
        let after = self.buffered.load(Ordering::Relaxed).saturating_sub(n);
        self.buffered.store(after, Ordering::SeqCst);
        self.writable(state) <= self.route.max_backpressure
            && self.drain_wanted.swap(false, Ordering::SeqCst)
    }

    /// Task side: the socket is gone; later sends are refused.
    pub(super) fn end(&self) {
        let mut state = self.state();
        state.phase = Phase::Ended;
        state.chunks.clear();
        state.tail = BytesMut::new();
        state.owed_pong = 0;
        state.compressor = None;
        state.waker = None;
        state.socket = NO_SOCKET;
        self.buffered.store(0, Ordering::Relaxed);
        state.task_in_write = false;
        self.wake_refusals(&mut state);
    }
}

/// Drops the first `written` bytes of `queue`; returns how many of them were past its end.
pub(super) fn advance_queue(queue: &mut VecDeque<Bytes>, mut written: usize) -> usize {
    while let Some(front) = queue.front_mut() {
        if written < front.len() {
            front.advance(written);
            return 0;
        }
        written -= front.len();
        queue.pop_front();
    }
    written
}

/// Queues the first `len` bytes of `frames`: copied into the tail when short, shared otherwise.
fn push_encoded(state: &mut OutState, frames: &Bytes, len: usize) {
    state.owed_pong = 0;
    if len < SEPARATE_PAYLOAD_AT {
        reserve_tail(&mut state.tail, len);
        state.tail.extend_from_slice(&frames[..len]);
    } else {
        if !state.tail.is_empty() {
            let head = std::mem::take(&mut state.tail).freeze();
            state.chunks.push_back(head);
        }
        state.chunks.push_back(frames.slice(..len));
    }
}

fn push_frame(
    state: &mut OutState,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    separate: Option<Bytes>,
) {
    state.owed_pong = 0;
    match separate {
        Some(bytes) => {
            put_header(&mut state.tail, fin, opcode, payload.len());
            let head = std::mem::take(&mut state.tail).freeze();
            state.chunks.push_back(head);
            state.chunks.push_back(bytes);
        }
        None => {
            reserve_tail(&mut state.tail, encode::MAX_HEADER_LEN + payload.len());
            put_header(&mut state.tail, fin, opcode, payload.len());
            state.tail.extend_from_slice(payload);
        }
    }
}

/// Makes room for `needed` more bytes in the tail. The writer takes the tail whole, so an empty one
/// starts with room for a batch of small frames rather than growing by doubling from the first one's size.
fn reserve_tail(tail: &mut BytesMut, needed: usize) {
    let start = if tail.capacity() == 0 { TAIL_START } else { 0 };
    tail.reserve(needed.max(start));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(max_backpressure: usize, close_on_backpressure_limit: bool) -> ConnHandle {
        let route = RouteConfig {
            max_backpressure,
            close_on_backpressure_limit,
            ..RouteConfig::for_tests()
        };
        let addr = "127.0.0.1:1".parse().expect("address");
        ConnHandle::new(1, addr, Arc::new(route), None)
    }

    /// Five 100-byte frames back to back.
    fn run_of_five() -> (Bytes, Vec<usize>) {
        (Bytes::from(vec![0u8; 500]), vec![100, 200, 300, 400, 500])
    }

    #[test]
    fn a_run_is_taken_while_at_most_the_limit_waits_before_each_message() {
        let conn = handle(250, false);
        let (frames, ends) = run_of_five();
        // before the messages: 0, 100, 200 (taken), 300 (over 250: refused with the rest)
        let queued = conn.send_run(&frames, &ends).expect("open");
        assert_eq!(
            queued,
            RunQueued {
                accepted: 3,
                refused: 2,
                wake: true
            }
        );
        assert_eq!(conn.buffered(), 300);
        let queued = conn.send_run(&frames, &ends).expect("open");
        assert_eq!(
            (queued.accepted, queued.refused),
            (0, 5),
            "300 already wait"
        );
    }

    #[test]
    fn a_run_over_a_strict_limit_reports_one_refusal_and_closes() {
        let conn = handle(250, true);
        let (frames, ends) = run_of_five();
        let queued = conn.send_run(&frames, &ends).expect("open");
        assert_eq!((queued.accepted, queued.refused), (3, 1));
        assert!(!conn.is_open());
        assert_eq!(conn.send_run(&frames, &ends), None, "closing");
    }

    #[test]
    fn a_run_published_while_a_message_is_streamed_waits_for_its_end() {
        let conn = handle(1 << 20, false);
        let (frames, ends) = run_of_five();
        conn.begin_stream().expect("open");
        let queued = conn.send_run(&frames, &ends).expect("open");
        assert_eq!((queued.accepted, queued.wake), (5, false));
        let mut taken = VecDeque::new();
        conn.take(&mut taken);
        assert!(taken.is_empty(), "held while streaming");
        assert!(conn.end_stream(), "the writer is woken for it");
        conn.take(&mut taken);
        assert_eq!(taken.iter().map(Bytes::len).sum::<usize>(), 500);
    }

    #[test]
    fn over_the_limit_only_the_latest_ping_is_answered() {
        let conn = handle(100, false);
        assert!(matches!(conn.send_pong(b"a"), Queued::Yes { .. }));
        assert!(matches!(
            conn.send(encode::BINARY, &[0; 200]),
            Queued::Yes { .. }
        ));
        let before = conn.buffered();
        for payload in [&b"first"[..], b"second", b"third!"] {
            assert!(matches!(conn.send_pong(payload), Queued::Yes { .. }));
        }
        assert_eq!(conn.buffered(), before + 2 + 6, "one pong owed, the latest");
        conn.send_unlimited(encode::PING, b"");
        conn.send_pong(b"fourth");
        assert_eq!(
            conn.buffered(),
            before + 8 + 2 + 8,
            "a frame after a pong keeps it"
        );
        let mut taken = VecDeque::new();
        conn.take(&mut taken);
        let bytes: Vec<u8> = taken
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect();
        assert_eq!(bytes.len(), conn.buffered());
        assert!(bytes.ends_with(b"\x8a\x06third!\x89\x00\x8a\x06fourth"));
        conn.send_pong(b"fifth");
        assert_eq!(
            conn.buffered(),
            bytes.len() + 7,
            "a pong after a take is queued"
        );
        conn.take(&mut taken);
        assert_eq!(
            taken.len(),
            1,
            "the owed pong stays while output is still in flight"
        );
        conn.send_pong(b"sixth!");
        assert_eq!(conn.buffered(), bytes.len() + 8, "and is replaced");
    }

    /// A connection with `limit` whose task took a 204-byte frame to write, and `send` run on another
    /// thread, which waits for that write to be counted: returns what `send` returned once `task` ran.
    fn during_the_tasks_write<T: Send + 'static>(
        limit: usize,
        send: impl FnOnce(&ConnHandle) -> T + Send + 'static,
        task: impl FnOnce(&ConnHandle),
    ) -> T {
        let conn = Arc::new(handle(limit, false));
        conn.send(encode::BINARY, &[0; 200]);
        conn.take(&mut VecDeque::new());
        let sender = {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || send(&conn))
        };
        while !conn.state().refusal_waiting && !sender.is_finished() {
            std::thread::yield_now();
        }
        task(&conn);
        sender.join().expect("sender")
    }

    fn send_next(conn: &ConnHandle) -> Queued {
        conn.send(encode::BINARY, b"next")
    }

    #[test]
    fn a_send_waits_for_the_write_that_took_everything_to_be_counted() {
        // The client may have read the whole frame before the task counts its write.
        let queued = during_the_tasks_write(100, send_next, |conn| {
            conn.wrote(conn.buffered(), false);
        });
        assert!(matches!(queued, Queued::Yes { .. }));
    }

    #[test]
    fn a_send_is_refused_when_the_counted_write_leaves_too_much() {
        let queued = during_the_tasks_write(100, send_next, |conn| {
            conn.wrote(50, true);
            conn.write_stopped();
        });
        assert_eq!(queued, Queued::Full);
    }

    #[test]
    fn a_run_waits_for_the_write_in_progress_before_refusing_its_tail() {
        let (frames, ends) = run_of_five();
        // Under the limit (204 of 250 wait), but with room for the first message only until the write
        // is counted.
        let queued = during_the_tasks_write(
            250,
            move |conn| conn.send_run(&frames, &ends),
            |conn| {
                conn.wrote(conn.buffered(), false);
            },
        );
        // once it is: 0, 100 and 200 wait before the first three
        let queued = queued.expect("open");
        assert_eq!((queued.accepted, queued.refused), (3, 2));
    }

    #[test]
    fn a_connection_handle_fits_a_448_byte_allocation() {
        // Every connection holds one in an `Arc` (two counters more) for as long as it lives. It holds
        // the read side too (moved out of the connection's task, whose state shrank by as much), so
        // that the asyncio thread can read the connection.
        let size = std::mem::size_of::<ConnHandle>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 448, "ConnHandle in its Arc takes {size} bytes");
    }
}
