//! `idle`: opens N connections, prints `READY <n>` once they are all open, holds them until stdin closes or
//! `--hold` seconds pass, then checks each is still alive (one echoed message) and closes it.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::ws::{self, Expect, Template, OP_TEXT};
use crate::{connect_many, timed, Args, Report, Usage};

/// Raises the soft limit on open files to the hard limit.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        lim.rlim_cur as u64
    }
}

pub async fn run(a: &mut Args) -> Result<Report, Usage> {
    let url_s = a.string("url")?;
    let url = a.url(&url_s)?;
    let conns = a.num("conns", 10_000)?;
    let hold = a.secs("hold", 5.0)?;
    let concurrency = a.num("connect-concurrency", 128)?;
    a.finish()?;
    let nofile = raise_nofile();
    if (nofile as usize) < conns + 64 {
        return Err(Usage(format!(
            "RLIMIT_NOFILE is {nofile}, too low for {conns} connections"
        )));
    }

    let mut rep = Report::new("idle");
    rep.str("url", &url_s).int("conns", conns as u64);
    let mut rng = ws::Rng::from_time();
    let t0 = Instant::now();
    let (opened, errors) = connect_many(&url, conns, 1024, concurrency, &mut rng, false).await;
    let open_secs = t0.elapsed().as_secs_f64();
    for e in errors {
        rep.error(e);
    }
    let open: Vec<ws::Conn> = opened.into_iter().flatten().collect();
    rep.int("open", open.len() as u64)
        .float("open_seconds", open_secs);
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "READY {}", open.len());
        let _ = stdout.flush();
    }

    // Hold: until stdin reaches EOF (the driver is done measuring) or the hold time is over.
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
    });
    let t1 = Instant::now();
    tokio::select! {
        _ = eof_rx => {}
        _ = tokio::time::sleep(hold) => {}
    }
    rep.float("held_seconds", t1.elapsed().as_secs_f64());

    // Every connection must still work after being idle.
    let mut set = JoinSet::new();
    for (id, mut c) in open.into_iter().enumerate() {
        set.spawn_local(async move {
            let expect = Expect {
                opcode: OP_TEXT,
                payload: ws::make_payload(16, id, false),
            };
            let tmpl = Template::new(OP_TEXT, &expect.payload, c.mask);
            timed(Duration::from_secs(20), async {
                c.roundtrip(&tmpl, &expect, 0).await?;
                c.close(Duration::from_secs(10)).await
            })
            .await
            .map_err(|e| format!("connection {id} after idling: {e}"))
        });
    }
    let mut verified = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => verified += 1,
            Ok(Err(e)) => rep.error(e),
            Err(e) => rep.error(format!("task failed: {e}")),
        }
    }
    rep.int("verified", verified);
    if verified != conns as u64 {
        rep.valid = false;
    }
    Ok(rep)
}
