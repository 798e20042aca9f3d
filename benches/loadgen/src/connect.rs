//! `connect`: workers that each loop over connect, handshake, one echoed message, close handshake.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ws::{self, Conn, Expect, Template, OP_TEXT, SEQ_LEN};
use crate::{run_phases, timed, Args, Outcome, Phase, Report, Usage};

/// One cycle must finish within this.
const CYCLE_LIMIT: Duration = Duration::from_secs(5);

pub async fn run(a: &mut Args) -> Result<Report, Usage> {
    let url_s = a.string("url")?;
    let url = Rc::new(a.url(&url_s)?);
    let concurrency = a.num("concurrency", 16)?;
    let size = a.num("size", 16)?;
    let duration = a.secs("duration", 5.0)?;
    let warmup = a.secs("warmup", 1.0)?;
    a.finish()?;
    if size < SEQ_LEN {
        return Err(Usage(format!("--size must be at least {SEQ_LEN}")));
    }
    if concurrency == 0 {
        return Err(Usage("--concurrency must be positive".into()));
    }

    let mut rep = Report::new("connect");
    rep.str("url", &url_s)
        .int("concurrency", concurrency as u64);
    let (tx, rx) = watch::channel(Phase::Warmup);
    let mut set = JoinSet::new();
    for id in 0..concurrency {
        set.spawn_local(worker(id, url.clone(), size, rx.clone()));
    }
    let (outs, win) = run_phases(set, &tx, warmup, duration, CYCLE_LIMIT * 2).await;
    let mut cycles = 0;
    for o in outs {
        cycles += o.counted;
        rep.add(o);
    }
    rep.int("handshakes", cycles)
        .float("seconds", win.seconds)
        .float("rate", cycles as f64 / win.seconds);
    if cycles == 0 {
        rep.valid = false;
    }
    Ok(rep)
}

async fn worker(
    id: usize,
    url: Rc<ws::Url>,
    size: usize,
    phase: watch::Receiver<Phase>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut rng = ws::Rng::from_time();
    for _ in 0..id {
        rng.next_u64();
    }
    let expect = Expect {
        opcode: OP_TEXT,
        payload: ws::make_payload(size, id, false),
    };
    let mut seq = 0u32;
    while *phase.borrow() < Phase::Drain {
        let r = timed(CYCLE_LIMIT, async {
            let mut c = Conn::connect(&url, 1024, rng.mask()).await?;
            let tmpl = Template::new(OP_TEXT, &expect.payload, c.mask);
            c.roundtrip(&tmpl, &expect, seq).await?;
            c.close(CYCLE_LIMIT).await
        })
        .await;
        seq = seq.wrapping_add(1);
        match r {
            Ok(()) => {
                if *phase.borrow() == Phase::Measure {
                    out.counted += 1;
                }
            }
            Err(e) => {
                out.error(format!("worker {id}: {e}"));
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}
