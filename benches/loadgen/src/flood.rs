//! `flood`: one connection sends `--total-mib` of binary messages as fast as the server takes them, to a route
//! whose handler is slow (`/slow` in the bench app), then a text message asking for the server's tally; the
//! server answers `"<messages> <bytes>"` once it has handled everything before it. Anything missing is lost.
//! The driver reads the server's peak RSS: whether it stays bounded is up to the server's read-side flow control.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::ws::{self, Conn, Io, Template, OP_BINARY, OP_TEXT, SEQ_LEN};
use crate::{timed, Args, Phase, Report, Usage};

/// Frames queued per refill of the write buffer (one write syscall takes what the socket accepts).
const BATCH: usize = 16;

pub async fn run(a: &mut Args) -> Result<Report, Usage> {
    let url_s = a.string("url")?;
    let url = a.url(&url_s)?;
    let total_mib = a.num("total-mib", 200)?;
    let size = a.num("size", 65536)?;
    let timeout = a.secs("timeout", 120.0)?;
    a.finish()?;
    if size < SEQ_LEN || total_mib == 0 {
        return Err(Usage(format!(
            "--size must be at least {SEQ_LEN} and --total-mib positive"
        )));
    }
    let count = ((total_mib << 20).div_ceil(size)) as u64;
    let mut rep = Report::new("flood");
    rep.str("url", &url_s)
        .int("size", size as u64)
        .int("messages", count)
        .int("bytes", count * size as u64);
    let t0 = Instant::now();
    let mut sent_at = None;
    let result = timed(timeout, async {
        let mask = ws::Rng::from_time().mask();
        let mut c = Conn::connect(&url, 64 * 1024, mask).await?;
        let tally = flood(&mut c, size, count, &mut sent_at).await?;
        c.close(Duration::from_secs(5)).await?;
        Ok(tally)
    })
    .await;
    let seconds = t0.elapsed().as_secs_f64();
    let send_seconds = sent_at.map_or(seconds, |t: Instant| (t - t0).as_secs_f64());
    rep.float("send_seconds", send_seconds)
        .float("seconds", seconds);
    match result {
        Ok((messages, bytes)) => {
            rep.int("server_messages", messages)
                .int("server_bytes", bytes)
                .float("rate", messages as f64 / seconds);
            if messages != count || bytes != count * size as u64 {
                rep.lost = count.saturating_sub(messages);
                rep.error(format!(
                    "the server counted {messages} messages ({bytes} bytes), {count} ({} bytes) were sent",
                    count * size as u64
                ));
            }
        }
        Err(e) => {
            rep.lost = count;
            rep.error(e);
        }
    }
    Ok(rep)
}

/// Sends `count` binary messages of `size` bytes, then the tally request; returns the server's tally.
async fn flood(
    c: &mut Conn,
    size: usize,
    count: u64,
    sent_at: &mut Option<Instant>,
) -> Result<(u64, u64), String> {
    let tmpl = Template::new(OP_BINARY, &ws::make_payload(size, 0, true), c.mask);
    let (_tx, mut phase) = watch::channel(Phase::Measure);
    let mut sent = 0u64;
    let mut asked = false;
    loop {
        if !c.has_output() {
            if sent < count {
                for _ in 0..BATCH.min((count - sent) as usize) {
                    tmpl.push(&mut c.wbuf, sent as u32);
                    sent += 1;
                }
            } else if !asked {
                ws::encode_frame(&mut c.wbuf, OP_TEXT, b"tally", c.mask);
                asked = true;
            } else if sent_at.is_none() {
                *sent_at = Some(Instant::now());
            }
        }
        if let Io::Read = c.io(&mut phase).await? {
            while let Some(f) = c.next_frame()? {
                match f.opcode {
                    OP_TEXT if asked => return parse_tally(c.payload(f)),
                    OP_TEXT | OP_BINARY => {
                        return Err(format!(
                            "unexpected message from the server: {:?}",
                            String::from_utf8_lossy(&c.payload(f)[..(f.end - f.start).min(60)])
                        ))
                    }
                    _ => c.control(f)?,
                }
            }
        }
    }
}

/// `"<messages> <bytes>"`.
fn parse_tally(p: &[u8]) -> Result<(u64, u64), String> {
    let s = std::str::from_utf8(p).map_err(|_| "tally: not UTF-8".to_string())?;
    let mut it = s.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(m)), Some(Ok(b)), None) => Ok((m, b)),
        _ => Err(format!("tally: expected \"<messages> <bytes>\", got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally() {
        assert_eq!(parse_tally(b"3200 209715200").unwrap(), (3200, 209715200));
        assert!(parse_tally(b"3200").is_err());
        assert!(parse_tally(b"a b").is_err());
        assert!(parse_tally(b"1 2 3").is_err());
    }
}
