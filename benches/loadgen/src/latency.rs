//! Round-trip latency of the echo mode: each connection remembers when each message in flight was sent (in
//! order: the server answers in order), and every answer received in the measured window records its round trip
//! into one histogram shared by all connections (single-threaded, so no locking).
//!
//! Cheap by construction: one clock read per read syscall, shared by every answer it brought and by the messages
//! sent in reply to them (they are queued right after and written at once); the in-flight queue is allocated
//! once, at its window size; HdrHistogram records into fixed buckets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::Report;

/// Round trips above this are recorded as this (nothing in a valid run comes close).
const HIGHEST_NS: u64 = 60_000_000_000;

/// The round trips recorded over the measured window, in nanoseconds (3 significant digits).
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds"),
        }
    }
}

impl Latency {
    pub fn record(&mut self, round_trip: Duration) {
        let ns = u64::try_from(round_trip.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
    }

    /// Adds `round_trips` (how many were recorded) and, when there are any, `p50_us`, `p90_us`, `p99_us`,
    /// `p999_us`, `max_us` and `mean_us` to the report.
    pub fn report(&self, rep: &mut Report) {
        rep.int("round_trips", self.hist.len());
        if self.hist.is_empty() {
            return;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        for (key, q) in [
            ("p50_us", 0.5),
            ("p90_us", 0.9),
            ("p99_us", 0.99),
            ("p999_us", 0.999),
        ] {
            rep.float(key, us(self.hist.value_at_quantile(q)));
        }
        rep.float("max_us", us(self.hist.max()))
            .float("mean_us", self.hist.mean() / 1000.0);
    }
}

/// When each message still in flight on one connection was sent, oldest first.
pub struct InFlight {
    sent: VecDeque<Instant>,
}

impl InFlight {
    /// Room for the connection's whole window, so sending never allocates.
    pub fn with_window(window: usize) -> InFlight {
        InFlight {
            sent: VecDeque::with_capacity(window),
        }
    }

    pub fn sent(&mut self, at: Instant) {
        self.sent.push_back(at);
    }

    /// The round trip of the oldest message in flight, answered at `at`.
    pub fn answered(&mut self, at: Instant) -> Option<Duration> {
        self.sent
            .pop_front()
            .map(|t| at.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_match_sends_in_order() {
        let t0 = Instant::now();
        let mut f = InFlight::with_window(2);
        f.sent(t0);
        f.sent(t0 + Duration::from_micros(5));
        let at = t0 + Duration::from_micros(20);
        assert_eq!(f.answered(at), Some(Duration::from_micros(20)));
        assert_eq!(f.answered(at), Some(Duration::from_micros(15)));
        assert_eq!(f.answered(at), None);
    }

    #[test]
    fn percentiles_in_microseconds() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        let mut rep = Report::new("echo");
        l.report(&mut rep);
        let (line, _) = rep.finish();
        assert!(line.contains("\"round_trips\":1000"), "{line}");
        // 3 significant digits: 500 µs is recorded as 500.0x µs at worst
        assert!(line.contains("\"p50_us\":500"), "{line}");
        assert!(line.contains("\"p99_us\":990"), "{line}");
        assert!(line.contains("\"p999_us\":999"), "{line}");
    }

    #[test]
    fn empty_reports_only_the_count() {
        let mut rep = Report::new("echo");
        Latency::default().report(&mut rep);
        let (line, _) = rep.finish();
        assert!(
            line.contains("\"round_trips\":0") && !line.contains("p50_us"),
            "{line}"
        );
    }
}
