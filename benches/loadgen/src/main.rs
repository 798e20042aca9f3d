//! loadgen: a single-threaded WebSocket load generator for the hyperws comparison benchmark.
//!
//! ```text
//! loadgen echo    --url ws://127.0.0.1:9001/echo --conns 64 --inflight 16 --size 32 --duration 10 --warmup 2 [--binary]
//! loadgen fanout  --pub-url ws://.../pub --sub-url ws://.../sub --subs 1000 --size 32 --window 32 --duration 10
//!                 [--slow 10]   (subscribers that never read)
//! loadgen connect --url ws://.../echo --duration 5 --concurrency 16
//! loadgen idle    --url ws://.../echo --conns 10000 --hold 5
//! loadgen flood   --url ws://.../slow --total-mib 200 --size 65536
//! ```
//! A `wss://` url connects with TLS (`--ca FILE`, the PEM CA to trust; `--tls-name NAME`, the name sent as SNI and
//! checked against the certificate, default the url's host).
//! Timed modes print `WINDOW start` and `WINDOW end` on stdout around the measured window. Prints one line of
//! JSON on stdout at the end (`"valid": false` on any error or loss); `idle` prints
//! `READY <n>` first, once every connection is open. Exit status: 0 valid, 1 invalid, 2 usage error.

mod connect;
mod deflate;
mod echo;
mod fanout;
mod flood;
mod idle;
mod json;
mod latency;
mod tls;
mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use std::rc::Rc;

/// Where a run is: counting happens only in `Measure`; `Drain` stops new sends and waits for what is in flight;
/// `Stop` ends every connection (anything still missing is lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Warmup,
    Measure,
    Drain,
    Stop,
}

const USAGE: &str = "usage: loadgen MODE [--option value ...]
  echo    --url URL [--conns 64] [--inflight 16] [--size 32] [--duration 10] [--warmup 2] [--drain 5] [--binary]
          [--deflate]   (permessage-deflate, no context takeover either way: every message compressed)
          [--json] [--rooms 16]   (JSON {\"room\": ..., \"text\": <--size chars>} over the rooms in turn; any JSON
          text reply is the answer)   Reports round-trip percentiles (p50_us ... p999_us, max_us, mean_us).
  fanout  --pub-url URL --sub-url URL[,URL...] [--subs 1000] [--slow 0] [--size 32] [--window 32] [--duration 10]
          [--warmup 2] [--drain 5] [--settle-ms 200] [--binary]
  connect --url URL [--concurrency 16] [--size 16] [--duration 5] [--warmup 1]
  idle    --url URL [--conns 10000] [--hold 5] [--connect-concurrency 128]
  flood   --url URL [--total-mib 200] [--size 65536] [--timeout 120]
URLs are ws://host:port/path, or wss://host:port/path with TLS 1.3 (rustls): --ca FILE (the PEM CA to trust,
required) and [--tls-name NAME] (SNI and the name checked, default the url's host); every connection makes a full
handshake (X25519, no resumption). Output: one JSON line on stdout.";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => usage_error(&e),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, async {
        match args.mode.as_str() {
            "echo" => echo::run(&mut args).await,
            "fanout" => fanout::run(&mut args).await,
            "connect" => connect::run(&mut args).await,
            "idle" => idle::run(&mut args).await,
            "flood" => flood::run(&mut args).await,
            m => Err(Usage(format!("unknown mode {m:?}"))),
        }
    });
    match result {
        Ok(report) => {
            let (line, valid) = report.finish();
            println!("{line}");
            std::process::exit(if valid { 0 } else { 1 });
        }
        Err(Usage(e)) => usage_error(&e),
    }
}

fn usage_error(e: &str) -> ! {
    eprintln!("loadgen: {e}\n{USAGE}");
    std::process::exit(2);
}

/// A usage error (bad flag or value): reported on stderr with exit status 2.
pub struct Usage(pub String);

impl From<String> for Usage {
    fn from(s: String) -> Usage {
        Usage(s)
    }
}

/// `MODE --key value --flag ...`; every option must be consumed by the mode (unknown ones are errors).
pub struct Args {
    pub mode: String,
    opts: HashMap<String, String>,
    /// Built from `--ca` and `--tls-name` by the first `wss://` url, shared by the others.
    tls: Option<tls::TlsClient>,
}

const FLAGS: &[&str] = &["binary", "deflate", "json"];

impl Args {
    fn parse(argv: &[String]) -> Result<Args, String> {
        let mode = argv.first().ok_or("no mode given")?.clone();
        if mode == "-h" || mode == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut opts = HashMap::new();
        let mut it = argv[1..].iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {k:?}"))?;
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None if FLAGS.contains(&key) => (key.to_string(), "true".to_string()),
                None => (
                    key.to_string(),
                    it.next()
                        .ok_or_else(|| format!("--{key} needs a value"))?
                        .clone(),
                ),
            };
            if opts.insert(key.clone(), value).is_some() {
                return Err(format!("--{key} given twice"));
            }
        }
        Ok(Args {
            mode,
            opts,
            tls: None,
        })
    }

    pub fn string(&mut self, key: &str) -> Result<String, Usage> {
        self.opts
            .remove(key)
            .ok_or_else(|| Usage(format!("--{key} is required")))
    }

    pub fn num(&mut self, key: &str, default: usize) -> Result<usize, Usage> {
        match self.opts.remove(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Usage(format!("--{key}: not a whole number: {v:?}"))),
        }
    }

    pub fn secs(&mut self, key: &str, default: f64) -> Result<Duration, Usage> {
        let v = match self.opts.remove(key) {
            None => default,
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e6)
                .ok_or_else(|| Usage(format!("--{key}: not a number of seconds: {v:?}")))?,
        };
        Ok(Duration::from_secs_f64(v))
    }

    pub fn flag(&mut self, key: &str) -> Result<bool, Usage> {
        match self.opts.remove(key).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(Usage(format!("--{key}: expected true or false, got {v:?}"))),
        }
    }

    /// Parses a url; a `wss://` one gets the run's TLS client (from `--ca` and `--tls-name`).
    pub fn url(&mut self, s: &str) -> Result<ws::Url, Usage> {
        let mut url = ws::Url::parse(s)?;
        if url.secure {
            url.tls = Some(self.tls_client(&url.host)?);
        }
        Ok(url)
    }

    fn tls_client(&mut self, host: &str) -> Result<tls::TlsClient, Usage> {
        if let Some(client) = &self.tls {
            return Ok(client.clone());
        }
        let ca = self
            .opts
            .remove("ca")
            .ok_or_else(|| Usage("a wss:// url needs --ca FILE (the CA to trust)".into()))?;
        let name = self
            .opts
            .remove("tls-name")
            .unwrap_or_else(|| host.to_string());
        let client = tls::TlsClient::new(&ca, &name)?;
        self.tls = Some(client.clone());
        Ok(client)
    }

    /// Errors on options the mode did not read.
    pub fn finish(&self) -> Result<(), Usage> {
        match self.opts.keys().next() {
            Some(k) => Err(Usage(format!(
                "unknown option --{k} for mode {}",
                self.mode
            ))),
            None => Ok(()),
        }
    }
}

/// What one connection (or worker) ends with.
#[derive(Default)]
pub struct Outcome {
    /// Messages (echo, fan-out deliveries) or cycles (connect) completed during the measured window.
    pub counted: u64,
    /// Messages sent (or due) but never received.
    pub lost: u64,
    pub errors: u64,
    pub samples: Vec<String>,
}

impl Outcome {
    pub fn error(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < 3 {
            self.samples.push(e);
        }
    }
}

/// The final JSON line. Fields keep insertion order.
pub struct Report {
    fields: Vec<(String, String)>,
    pub errors: u64,
    pub lost: u64,
    pub samples: Vec<String>,
    pub valid: bool,
}

impl Report {
    pub fn new(mode: &str) -> Report {
        let mut r = Report {
            fields: Vec::new(),
            errors: 0,
            lost: 0,
            samples: Vec::new(),
            valid: true,
        };
        r.str("mode", mode);
        r
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Report {
        self.fields.push((k.into(), json_str(v)));
        self
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Report {
        self.fields.push((k.into(), v.to_string()));
        self
    }

    pub fn float(&mut self, k: &str, v: f64) -> &mut Report {
        let s = if v.is_finite() {
            format!("{v:.6}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            "null".into()
        };
        self.fields.push((k.into(), s));
        self
    }

    pub fn boolean(&mut self, k: &str, v: bool) -> &mut Report {
        self.fields.push((k.into(), v.to_string()));
        self
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < 10 {
            self.samples.push(e);
        }
    }

    pub fn add(&mut self, o: Outcome) {
        self.errors += o.errors;
        self.lost += o.lost;
        for s in o.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }

    /// The JSON line and the verdict.
    fn finish(mut self) -> (String, bool) {
        if self.errors > 0 || self.lost > 0 {
            self.valid = false;
        }
        if let Some(tls) = tls::negotiated() {
            self.str("tls", tls);
        }
        let samples: Vec<String> = self.samples.iter().map(|s| json_str(s)).collect();
        let mut out = String::from("{");
        for (k, v) in &self.fields {
            out.push_str(&format!("{}:{v},", json_str(k)));
        }
        out.push_str(&format!(
            "\"errors\":{},\"lost\":{},\"error_samples\":[{}],\"valid\":{}}}",
            self.errors,
            self.lost,
            samples.join(","),
            self.valid
        ));
        (out, self.valid)
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The measured window of a timed run.
pub struct Window {
    pub seconds: f64,
    pub reads: u64,
    pub writes: u64,
}

/// Drives the phases of a timed run over already-spawned tasks: warm-up, measure, then drain (up to `drain` for
/// the tasks to finish on their own), then stop. Returns every task's outcome and the measured window.
pub async fn run_phases(
    mut set: JoinSet<Outcome>,
    tx: &watch::Sender<Phase>,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
) -> (Vec<Outcome>, Window) {
    tokio::time::sleep(warmup).await;
    // Markers for the driver, which samples the server's counters at both ends of the window.
    println!("WINDOW start");
    let (r0, w0) = ws::syscalls();
    let t0 = Instant::now();
    tx.send_replace(Phase::Measure);
    tokio::time::sleep(duration).await;
    tx.send_replace(Phase::Drain);
    let seconds = t0.elapsed().as_secs_f64();
    println!("WINDOW end");
    let (r1, w1) = ws::syscalls();
    let mut outs = Vec::new();
    let drained = tokio::time::timeout(drain, async {
        while let Some(r) = set.join_next().await {
            outs.push(joined(r));
        }
    })
    .await;
    if drained.is_err() {
        tx.send_replace(Phase::Stop);
        while let Some(r) = set.join_next().await {
            outs.push(joined(r));
        }
    }
    (
        outs,
        Window {
            seconds,
            reads: r1 - r0,
            writes: w1 - w0,
        },
    )
}

fn joined(r: Result<Outcome, tokio::task::JoinError>) -> Outcome {
    r.unwrap_or_else(|e| {
        let mut o = Outcome::default();
        o.error(format!("task failed: {e}"));
        o
    })
}

/// Opens `n` connections with at most `concurrency` handshakes at a time. Returns them in order (`None` for
/// the ones that failed) and the errors.
pub async fn connect_many(
    url: &ws::Url,
    n: usize,
    rbuf_size: usize,
    concurrency: usize,
    rng: &mut ws::Rng,
    deflate: bool,
) -> (Vec<Option<ws::Conn>>, Vec<String>) {
    let sem = Rc::new(Semaphore::new(concurrency.max(1)));
    let url = Rc::new(url.clone());
    let mut set = JoinSet::new();
    for i in 0..n {
        let (sem, url, mask) = (sem.clone(), url.clone(), rng.mask());
        set.spawn_local(async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let r = timed(
                Duration::from_secs(30),
                ws::Conn::connect_ext(&url, rbuf_size, mask, deflate),
            )
            .await;
            (i, r)
        });
    }
    let mut conns: Vec<Option<ws::Conn>> = (0..n).map(|_| None).collect();
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok(c))) => conns[i] = Some(c),
            Ok((i, Err(e))) => errors.push(format!("connection {i}: {e}")),
            Err(e) => errors.push(format!("connect task failed: {e}")),
        }
    }
    (conns, errors)
}

/// `fut` with a deadline; a timeout becomes an error message.
pub async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}
