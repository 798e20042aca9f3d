//! `echo`: N connections, each with a closed-loop window of messages in flight; every echo is checked
//! (opcode, length, sequence in order, exact bytes) and its round trip recorded (`latency`). With `--deflate`
//! every message goes out compressed (permessage-deflate) and each echo is decompressed when the server sent it
//! compressed. With `--json` the messages are the JSON app's (`json`) and any JSON text reply is the answer.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::json::{self, RoomMessages};
use crate::latency::{InFlight, Latency};
use crate::ws::{self, Conn, Expect, Io, Template, OP_BINARY, OP_TEXT, SEQ_LEN};
use crate::{connect_many, run_phases, Args, Outcome, Phase, Report, Usage};
use std::sync::atomic::Ordering;

struct Cfg {
    inflight: u32,
    size: usize,
    binary: bool,
    /// `--json`: how many rooms the messages go to.
    json_rooms: Option<usize>,
    /// Every connection's round trips over the measured window.
    latency: RefCell<Latency>,
}

/// How a connection queues its next message: a pre-masked template patched with the sequence number, (with
/// permessage-deflate) the payload patched, then compressed and masked, or (`--json`) the next room's message.
enum Sender {
    Plain(Template),
    Deflate { opcode: u8, payload: Vec<u8> },
    Json(RoomMessages),
}

impl Sender {
    fn push(&mut self, c: &mut Conn, seq: u32) {
        match self {
            Sender::Plain(t) => t.push(&mut c.wbuf, seq),
            Sender::Deflate { opcode, payload } => {
                payload[..SEQ_LEN].copy_from_slice(&ws::seq_digits(seq));
                c.push_message(*opcode, payload);
            }
            Sender::Json(m) => m.push(&mut c.wbuf, seq),
        }
    }
}

/// What the answer to a message must be: its exact echo, or (`--json`) any JSON text.
enum Answer {
    Echo(Expect),
    Json,
}

impl Answer {
    fn check(&self, opcode: u8, data: &[u8], seq: u32) -> Result<(), String> {
        match self {
            Answer::Echo(e) => e.check(opcode, data, seq),
            Answer::Json => json::check_reply(opcode, data, seq),
        }
    }
}

/// One connection's side of the closed loop: what it sends, what it expects back, and when each message still
/// unanswered was sent.
struct Flow {
    sender: Sender,
    answer: Answer,
    sent: u32,
    recvd: u32,
    times: InFlight,
}

impl Flow {
    fn send(&mut self, c: &mut Conn, at: Instant) {
        self.sender.push(c, self.sent);
        self.times.sent(at);
        self.sent += 1;
    }

    /// Parses every complete frame in the read buffer; each answer releases the next message (unless
    /// draining) and, in the measured window, records its round trip. Returns how many answers it took.
    fn on_read(
        &mut self,
        c: &mut Conn,
        phase: Phase,
        latency: &RefCell<Latency>,
    ) -> Result<u64, String> {
        // One clock read for the whole read: when its answers arrived, and when the replies to them (queued
        // below, written right after) were sent.
        let at = Instant::now();
        let sending = phase < Phase::Drain;
        let mut recording = (phase == Phase::Measure).then(|| latency.borrow_mut());
        let mut n = 0;
        while let Some(f) = c.next_frame()? {
            if f.opcode == OP_TEXT || f.opcode == OP_BINARY {
                if self.recvd == self.sent {
                    return Err(format!(
                        "unsolicited message (all {} answered already)",
                        self.sent
                    ));
                }
                self.answer.check(f.opcode, c.message(f)?, self.recvd)?;
                let round_trip = self
                    .times
                    .answered(at)
                    .expect("a send time per message in flight");
                if let Some(l) = recording.as_mut() {
                    l.record(round_trip);
                }
                self.recvd += 1;
                n += 1;
                if sending {
                    self.send(c, at);
                }
            } else {
                c.control(f)?;
            }
        }
        Ok(n)
    }
}

pub async fn run(a: &mut Args) -> Result<Report, Usage> {
    let url_s = a.string("url")?;
    let url = a.url(&url_s)?;
    let conns = a.num("conns", 64)?;
    let inflight = a.num("inflight", 16)?;
    let size = a.num("size", 32)?;
    let duration = a.secs("duration", 10.0)?;
    let warmup = a.secs("warmup", 2.0)?;
    let drain = a.secs("drain", 5.0)?;
    let binary = a.flag("binary")?;
    let deflate = a.flag("deflate")?;
    let json = a.flag("json")?;
    let rooms = a.num("rooms", 16)?;
    a.finish()?;
    if size < SEQ_LEN {
        return Err(Usage(format!("--size must be at least {SEQ_LEN}")));
    }
    if conns == 0 || inflight == 0 || inflight > u32::MAX as usize {
        return Err(Usage("--conns and --inflight must be positive".into()));
    }
    if json && (binary || deflate) {
        return Err(Usage(
            "--json sends text without compression: not with --binary or --deflate".into(),
        ));
    }
    if rooms == 0 {
        return Err(Usage("--rooms must be positive".into()));
    }

    let mut rep = Report::new("echo");
    rep.str("url", &url_s)
        .int("conns", conns as u64)
        .int("inflight", inflight as u64)
        .int("size", size as u64)
        .boolean("binary", binary)
        .boolean("deflate", deflate)
        .boolean("json", json);
    if json {
        rep.int("rooms", rooms as u64);
    }

    // Room for a whole window of echoes, so one read can take everything the server has written.
    let rbuf = ((size + 14) * inflight * 2).clamp(64 * 1024, 4 << 20);
    let mut rng = ws::Rng::from_time();
    let (opened, errors) = connect_many(&url, conns, rbuf, 64, &mut rng, deflate).await;
    for e in errors {
        rep.error(e);
    }
    let (tx, rx) = watch::channel(Phase::Warmup);
    let cfg = Rc::new(Cfg {
        inflight: inflight as u32,
        size,
        binary,
        json_rooms: json.then_some(rooms),
        latency: RefCell::default(),
    });
    let mut set = JoinSet::new();
    let mut connected = 0;
    for (id, c) in opened.into_iter().enumerate() {
        if let Some(c) = c {
            connected += 1;
            set.spawn_local(conn_loop(c, id, cfg.clone(), rx.clone()));
        }
    }
    rep.int("connected", connected);
    if connected == 0 {
        rep.valid = false;
        return Ok(rep);
    }
    let (outs, win) = run_phases(set, &tx, warmup, duration, drain).await;
    cfg.latency.borrow().report(&mut rep);
    let mut messages = 0;
    for o in outs {
        messages += o.counted;
        rep.add(o);
    }
    let per = |n: u64| {
        if n == 0 {
            0.0
        } else {
            messages as f64 / n as f64
        }
    };
    rep.int("messages", messages)
        .float("seconds", win.seconds)
        .float("rate", messages as f64 / win.seconds)
        .int("reads", win.reads)
        .int("writes", win.writes)
        .float("msgs_per_read", per(win.reads))
        .float("msgs_per_write", per(win.writes));
    if deflate {
        // Servers may send small messages uncompressed: say how many echoes came compressed (whole run).
        rep.int("compressed_in", ws::COMPRESSED_IN.load(Ordering::Relaxed));
    }
    if messages == 0 {
        rep.valid = false;
    }
    Ok(rep)
}

async fn conn_loop(
    mut c: Conn,
    id: usize,
    cfg: Rc<Cfg>,
    mut phase: watch::Receiver<Phase>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut flow = new_flow(&c, id, &cfg);
    let now = Instant::now();
    while flow.sent < cfg.inflight {
        flow.send(&mut c, now);
    }
    loop {
        let ph = *phase.borrow_and_update();
        if ph >= Phase::Drain && flow.recvd == flow.sent {
            break;
        }
        if ph == Phase::Stop {
            let missing = flow.sent - flow.recvd;
            out.lost += missing as u64;
            out.error(format!(
                "connection {id}: {missing} message(s) not answered by the end of the drain period"
            ));
            return out;
        }
        let r = match c.io(&mut phase).await {
            Ok(Io::Read) => {
                let ph = *phase.borrow();
                flow.on_read(&mut c, ph, &cfg.latency)
                    .map(|n| if ph == Phase::Measure { n } else { 0 })
            }
            Ok(Io::Wrote) | Ok(Io::Phase) => Ok(0),
            Err(e) => Err(e),
        };
        match r {
            Ok(n) => out.counted += n,
            Err(e) => {
                out.lost += (flow.sent - flow.recvd) as u64;
                out.error(format!("connection {id}: {e}"));
                return out;
            }
        }
    }
    if let Err(e) = c.close(Duration::from_secs(3)).await {
        out.error(format!("connection {id}: {e}"));
    }
    out
}

fn new_flow(c: &Conn, id: usize, cfg: &Cfg) -> Flow {
    let (sender, answer) = if let Some(rooms) = cfg.json_rooms {
        (
            Sender::Json(RoomMessages::new(rooms, cfg.size, id, c.mask)),
            Answer::Json,
        )
    } else {
        let opcode = if cfg.binary { OP_BINARY } else { OP_TEXT };
        let expect = Expect {
            opcode,
            payload: ws::make_payload(cfg.size, id, cfg.binary),
        };
        let sender = if c.deflate.is_some() {
            Sender::Deflate {
                opcode,
                payload: expect.payload.clone(),
            }
        } else {
            Sender::Plain(Template::new(opcode, &expect.payload, c.mask))
        };
        (sender, Answer::Echo(expect))
    };
    Flow {
        sender,
        answer,
        sent: 0,
        recvd: 0,
        times: InFlight::with_window(cfg.inflight as usize),
    }
}
