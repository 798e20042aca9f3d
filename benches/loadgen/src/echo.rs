//! `echo`: N connections, each with a closed-loop window of messages in flight; every echo is checked
//! (opcode, length, sequence in order, exact bytes). With `--deflate` every message goes out compressed
//! (permessage-deflate) and each echo is decompressed when the server sent it compressed.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ws::{self, Conn, Expect, Io, Template, OP_BINARY, OP_TEXT, SEQ_LEN};
use crate::{connect_many, run_phases, Args, Outcome, Phase, Report, Usage};
use std::sync::atomic::Ordering;

struct Cfg {
    inflight: u32,
    size: usize,
    binary: bool,
}

/// How a connection queues its next message: a pre-masked template patched with the sequence number, or (with
/// permessage-deflate) the payload patched, then compressed and masked.
enum Sender {
    Plain(Template),
    Deflate { opcode: u8, payload: Vec<u8> },
}

impl Sender {
    fn push(&mut self, c: &mut Conn, seq: u32) {
        match self {
            Sender::Plain(t) => t.push(&mut c.wbuf, seq),
            Sender::Deflate { opcode, payload } => {
                payload[..SEQ_LEN].copy_from_slice(&ws::seq_digits(seq));
                c.push_message(*opcode, payload);
            }
        }
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
    a.finish()?;
    if size < SEQ_LEN {
        return Err(Usage(format!("--size must be at least {SEQ_LEN}")));
    }
    if conns == 0 || inflight == 0 || inflight > u32::MAX as usize {
        return Err(Usage("--conns and --inflight must be positive".into()));
    }

    let mut rep = Report::new("echo");
    rep.str("url", &url_s)
        .int("conns", conns as u64)
        .int("inflight", inflight as u64)
        .int("size", size as u64)
        .boolean("binary", binary)
        .boolean("deflate", deflate);

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
    let opcode = if cfg.binary { OP_BINARY } else { OP_TEXT };
    let expect = Expect {
        opcode,
        payload: ws::make_payload(cfg.size, id, cfg.binary),
    };
    let mut sender = if c.deflate.is_some() {
        Sender::Deflate {
            opcode,
            payload: expect.payload.clone(),
        }
    } else {
        Sender::Plain(Template::new(opcode, &expect.payload, c.mask))
    };
    let (mut sent, mut recvd) = (0u32, 0u32);
    while sent < cfg.inflight {
        sender.push(&mut c, sent);
        sent += 1;
    }
    loop {
        let ph = *phase.borrow_and_update();
        if ph >= Phase::Drain && recvd == sent {
            break;
        }
        if ph == Phase::Stop {
            out.lost += (sent - recvd) as u64;
            out.error(format!(
                "connection {id}: {} message(s) not echoed by the end of the drain period",
                sent - recvd
            ));
            return out;
        }
        let r = match c.io(&mut phase).await {
            Ok(Io::Read) => on_read(&mut c, &mut sender, &expect, &mut sent, &mut recvd, &phase),
            Ok(Io::Wrote) | Ok(Io::Phase) => Ok(0),
            Err(e) => Err(e),
        };
        match r {
            Ok(n) => {
                if *phase.borrow() == Phase::Measure {
                    out.counted += n;
                }
            }
            Err(e) => {
                out.lost += (sent - recvd) as u64;
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

/// Parses every complete frame in the read buffer; each echo releases the next message (unless draining).
fn on_read(
    c: &mut Conn,
    sender: &mut Sender,
    expect: &Expect,
    sent: &mut u32,
    recvd: &mut u32,
    phase: &watch::Receiver<Phase>,
) -> Result<u64, String> {
    let sending = *phase.borrow() < Phase::Drain;
    let mut n = 0;
    while let Some(f) = c.next_frame()? {
        if f.opcode == OP_TEXT || f.opcode == OP_BINARY {
            if *recvd == *sent {
                return Err(format!("unsolicited message (all {sent} echoed already)"));
            }
            expect.check(f.opcode, c.message(f)?, *recvd)?;
            *recvd += 1;
            n += 1;
            if sending {
                sender.push(c, *sent);
                *sent += 1;
            }
        } else {
            c.control(f)?;
        }
    }
    Ok(n)
}
