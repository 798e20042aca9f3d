//! `fanout`: S subscribers on /sub, one publisher on /pub. The publisher keeps `window` messages ahead of the
//! tracker (subscriber 0); every subscriber must receive every message, in order, intact.
//!
//! `--sub-url` may list several URLs, comma-separated (the /sub of several servers sharing a broker): the
//! subscribers are spread over them evenly, in order, and the first subscriber of each URL is a tracker; the
//! publisher keeps `window` messages ahead of the slowest tracker.
//!
//! The publisher also stays at most `max-lag` messages (default 512) ahead of the slowest subscriber: when
//! the generator itself falls behind reading some subscribers (its one core is busy), it holds the publisher
//! back instead of letting the server's queue for them pass its per-connection limit, where the server
//! rightly drops and the run would be invalid for the generator's sake. The report counts how often it
//! held (`held_for_laggards`) and the most bytes the laggard then had unread in its receive buffer
//! (`held_unread_bytes`): the whole lag there means the generator, not the server, was behind.
//!
//! `--slow N` adds N more subscribers that connect (after the others) and then never read: they only keep their
//! sockets open until the end, so the server faces consumers that stop reading (backpressure). They are not
//! checked and not counted; the window still keys on the fast tracker, so they cannot stall the run.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::ws::{self, Conn, Expect, Io, Template, OP_BINARY, OP_TEXT, SEQ_LEN};
use crate::{connect_many, run_phases, timed, Args, Outcome, Phase, Report, Usage};

struct Shared {
    /// Messages the publisher has queued; final once the phase is Drain (it stops queueing then).
    sent: Cell<u32>,
    /// Where in `received` the trackers (the first subscriber of each sub URL) are.
    tracker_slots: Vec<usize>,
    tracker_moved: Notify,
    /// Messages each subscriber has received.
    received: Vec<Cell<u32>>,
    /// The least of `received` when the publisher last looked; a subscriber there wakes it on progress.
    floor: Cell<u32>,
    floor_moved: Notify,
    /// Times the publisher waited for a subscriber more than `max_lag` behind.
    held: Cell<u64>,
    /// Each subscriber's socket (plain TCP; -1 over TLS), and the most bytes found unread in the laggard's
    /// receive buffer when the publisher held: near the buffer's size, the generator was slow to read;
    /// near zero, the server was slow to write.
    fds: Vec<Cell<i32>>,
    held_unread: Cell<u64>,
    expect: Expect,
}

/// Clears a subscriber's socket from `Shared::fds` when its task ends (and its `Conn`, so the socket, is
/// dropped), so that no later look reads a descriptor number the system may have given to another.
struct Forget<'a>(&'a Cell<i32>);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.set(-1);
    }
}

/// A subscriber's name in errors, its place in `received`, and whether it is a tracker.
struct Subscriber {
    id: usize,
    slot: usize,
    tracker: bool,
}

struct Limits {
    /// Messages the publisher may be ahead of the slowest tracker.
    window: u32,
    /// ... and of the slowest subscriber.
    max_lag: u32,
}

pub async fn run(a: &mut Args) -> Result<Report, Usage> {
    let pub_s = a.string("pub-url")?;
    let sub_s = a.string("sub-url")?;
    let pub_url = a.url(&pub_s)?;
    let sub_urls = sub_s
        .split(',')
        .map(|u| a.url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let subs = a.num("subs", 1000)?;
    let slow = a.num("slow", 0)?;
    let size = a.num("size", 32)?;
    let window = a.num("window", 32)?;
    let max_lag = a.num("max-lag", 512)?;
    let duration = a.secs("duration", 10.0)?;
    let warmup = a.secs("warmup", 2.0)?;
    let drain = a.secs("drain", 5.0)?;
    let settle = Duration::from_millis(a.num("settle-ms", 200)? as u64);
    let binary = a.flag("binary")?;
    a.finish()?;
    if size < SEQ_LEN {
        return Err(Usage(format!("--size must be at least {SEQ_LEN}")));
    }
    if subs < sub_urls.len() || window == 0 || max_lag < window || max_lag > u32::MAX as usize {
        return Err(Usage(
            "--subs must be at least one per sub URL, --window positive and --max-lag at least --window"
                .into(),
        ));
    }
    crate::idle::raise_nofile();

    let mut rep = Report::new("fanout");
    rep.str("pub_url", &pub_s)
        .str("sub_url", &sub_s)
        .int("subs", subs as u64)
        .int("slow", slow as u64)
        .int("window", window as u64)
        .int("max_lag", max_lag as u64)
        .int("size", size as u64)
        .boolean("binary", binary);

    let mut rng = ws::Rng::from_time();
    let mut opened = Vec::with_capacity(subs);
    let mut trackers = Vec::with_capacity(sub_urls.len());
    for (i, url) in sub_urls.iter().enumerate() {
        let n = subs / sub_urls.len() + usize::from(i < subs % sub_urls.len());
        trackers.push(opened.len());
        let (conns, errors) = connect_many(url, n, 64 * 1024, 64, &mut rng, false).await;
        for e in errors {
            rep.error(format!("subscriber {e}"));
        }
        opened.extend(conns);
    }
    let connected = opened.iter().filter(|c| c.is_some()).count();
    rep.int("subscribed", connected as u64);
    if trackers.iter().any(|&t| opened[t].is_none()) {
        rep.valid = false;
        return Ok(rep);
    }
    // The slow subscribers: a small read buffer, never read from; held (unread) until the report is made.
    let (slow_conns, errors) = connect_many(&sub_urls[0], slow, 4096, 64, &mut rng, false).await;
    for e in errors {
        rep.error(format!("slow subscriber {e}"));
    }
    let slow_connected = slow_conns.iter().filter(|c| c.is_some()).count();
    rep.int("slow_subscribed", slow_connected as u64);
    // Let the server finish its side of every subscribe before the first publish.
    tokio::time::sleep(settle).await;
    let publisher = match timed(
        Duration::from_secs(10),
        Conn::connect(&pub_url, 16 * 1024, rng.mask()),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            rep.error(format!("publisher: {e}"));
            return Ok(rep);
        }
    };

    let opcode = if binary { OP_BINARY } else { OP_TEXT };
    let shared = Rc::new(Shared {
        sent: Cell::new(0),
        // A subscriber's slot counts the connected ones before it (every tracker is connected).
        tracker_slots: trackers
            .iter()
            .map(|&t| opened[..t].iter().filter(|c| c.is_some()).count())
            .collect(),
        tracker_moved: Notify::new(),
        received: (0..connected).map(|_| Cell::new(0)).collect(),
        floor: Cell::new(0),
        floor_moved: Notify::new(),
        held: Cell::new(0),
        fds: (0..connected).map(|_| Cell::new(-1)).collect(),
        held_unread: Cell::new(0),
        expect: Expect {
            opcode,
            payload: ws::make_payload(size, 0, binary),
        },
    });
    let (tx, rx) = watch::channel(Phase::Warmup);
    let mut set = JoinSet::new();
    let mut slot = 0;
    for (id, c) in opened.into_iter().enumerate() {
        if let Some(c) = c {
            let tracker = trackers.contains(&id);
            let who = Subscriber { id, slot, tracker };
            if let ws::Stream::Plain(tcp) = &c.stream {
                shared.fds[slot].set(std::os::fd::AsRawFd::as_raw_fd(tcp));
            }
            set.spawn_local(subscriber(c, who, shared.clone(), rx.clone()));
            slot += 1;
        }
    }
    let limits = Limits {
        window: window as u32,
        max_lag: max_lag as u32,
    };
    set.spawn_local(publisher_loop(
        publisher,
        limits,
        shared.clone(),
        rx.clone(),
    ));
    let (outs, win) = run_phases(set, &tx, warmup, duration, drain).await;
    let mut deliveries = 0;
    for o in outs {
        deliveries += o.counted;
        rep.add(o);
    }
    rep.int("published", shared.sent.get() as u64)
        .int("deliveries", deliveries)
        .int("held_for_laggards", shared.held.get())
        .int("held_unread_bytes", shared.held_unread.get())
        .float("seconds", win.seconds)
        .float("rate", deliveries as f64 / win.seconds)
        .int("reads", win.reads)
        .int("writes", win.writes);
    if deliveries == 0 || connected != subs || slow_connected != slow {
        rep.valid = false;
    }
    drop(slow_conns);
    Ok(rep)
}

async fn subscriber(
    mut c: Conn,
    who: Subscriber,
    shared: Rc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> Outcome {
    let _socket_closes = Forget(&shared.fds[who.slot]);
    let mut out = Outcome::default();
    let mut recvd = 0u32;
    loop {
        let ph = *phase.borrow_and_update();
        if ph >= Phase::Drain && recvd == shared.sent.get() {
            break;
        }
        if ph == Phase::Stop {
            let missing = shared.sent.get() - recvd;
            out.lost += missing as u64;
            out.error(format!(
                "subscriber {}: {missing} message(s) not delivered by the end of the drain period",
                who.id
            ));
            return out;
        }
        let r = match c.io(&mut phase).await {
            Ok(Io::Read) => on_read(&mut c, &shared, &mut recvd),
            Ok(_) => Ok(0),
            Err(e) => Err(e),
        };
        match r {
            Ok(n) => {
                if *phase.borrow() == Phase::Measure {
                    out.counted += n;
                }
                if n > 0 {
                    let before = shared.received[who.slot].replace(recvd);
                    if before == shared.floor.get() {
                        shared.floor_moved.notify_one();
                    }
                    if who.tracker {
                        shared.tracker_moved.notify_one();
                    }
                }
            }
            Err(e) => {
                out.lost += (shared.sent.get().saturating_sub(recvd)) as u64;
                out.error(format!("subscriber {}: {e}", who.id));
                return out;
            }
        }
    }
    if let Err(e) = c.close(Duration::from_secs(3)).await {
        out.error(format!("subscriber {}: {e}", who.id));
    }
    out
}

fn on_read(c: &mut Conn, shared: &Shared, recvd: &mut u32) -> Result<u64, String> {
    let mut n = 0;
    while let Some(f) = c.next_frame()? {
        if f.opcode == OP_TEXT || f.opcode == OP_BINARY {
            if *recvd >= shared.sent.get() {
                return Err(format!(
                    "unsolicited message (only {} published)",
                    shared.sent.get()
                ));
            }
            shared.expect.check(f.opcode, c.payload(f), *recvd)?;
            *recvd += 1;
            n += 1;
        } else {
            c.control(f)?;
        }
    }
    Ok(n)
}

async fn publisher_loop(
    mut c: Conn,
    limits: Limits,
    shared: Rc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> Outcome {
    let mut out = Outcome::default();
    let tmpl = Template::new(shared.expect.opcode, &shared.expect.payload, c.mask);
    loop {
        let ph = *phase.borrow_and_update();
        if ph < Phase::Drain {
            let mut sent = shared.sent.get();
            let slowest = (shared.tracker_slots.iter())
                .map(|&slot| shared.received[slot].get())
                .min()
                .unwrap_or(0);
            let mut until = slowest + limits.window;
            if until > shared.floor.get() + limits.max_lag {
                // Only now worth the look at every subscriber.
                shared
                    .floor
                    .set(shared.received.iter().map(Cell::get).min().unwrap_or(0));
                until = until.min(shared.floor.get() + limits.max_lag);
                if sent >= until {
                    shared.held.set(shared.held.get() + 1);
                    note_laggard_unread(&shared);
                }
            }
            while sent < until {
                tmpl.push(&mut c.wbuf, sent);
                sent += 1;
            }
            shared.sent.set(sent);
        } else if !c.has_output() {
            break;
        }
        if ph == Phase::Stop {
            out.error("publisher: output not written by the end of the drain period".into());
            return out;
        }
        let r = tokio::select! {
            r = c.io(&mut phase) => match r {
                Ok(Io::Read) => drain_input(&mut c),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            _ = shared.tracker_moved.notified() => Ok(()),
            _ = shared.floor_moved.notified() => Ok(()),
        };
        if let Err(e) = r {
            out.error(format!("publisher: {e}"));
            return out;
        }
    }
    if let Err(e) = c.close(Duration::from_secs(3)).await {
        out.error(format!("publisher: {e}"));
    }
    out
}

/// The publisher receives nothing but control frames.
fn drain_input(c: &mut Conn) -> Result<(), String> {
    while let Some(f) = c.next_frame()? {
        c.control(f)?;
    }
    Ok(())
}

/// Records how many bytes wait unread in the slowest subscriber's receive buffer (see `held_unread`).
fn note_laggard_unread(shared: &Shared) {
    let floor = shared.floor.get();
    let Some(slot) = shared.received.iter().position(|r| r.get() == floor) else {
        return;
    };
    let fd = shared.fds[slot].get();
    if fd < 0 {
        return;
    }
    let mut unread: libc::c_int = 0;
    // SAFETY: `fd` is the subscriber's open socket (`Forget` clears it before the socket is closed);
    // FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) } == 0 {
        let unread = unread.max(0) as u64;
        shared.held_unread.set(shared.held_unread.get().max(unread));
    }
}
