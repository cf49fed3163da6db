//! What is counted, the live status line, and the final report (text or JSON).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cli::Mode;
use crate::conn::FailReason;

/// Latencies are recorded in nanoseconds, from 1 ns up to an hour, to three
/// significant digits (0.1 % resolution): a 13.2 µs loopback round trip and
/// a 3-second stall fit the same histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// Everything one loop counts; the loops' counts are added up at the end.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// `connect` calls made.
    pub attempted: u64,
    /// Connects that completed the handshake.
    pub established: u64,
    /// Connects that failed, by [`FailReason::index`].
    pub failed: [u64; 5],
    /// Connects still in progress when the run ended or was interrupted:
    /// connections never established, so never tested (failures, except in
    /// churn mode, where connects in flight at the end are the norm).
    pub aborted: u64,
    /// Load and idle mode: connections still waiting for their turn to
    /// connect when the run ended (never attempted, never tested).
    pub never_attempted: u64,
    /// Connections the server closed or reset before we were done with them.
    pub unexpected_closes: u64,
    /// Of those, the ones closed before they echoed a single byte: typically
    /// a server refusing connections over its limit (accept, then close).
    pub closed_before_echo: u64,
    /// Connections that received no echo byte for `--echo-timeout` while
    /// owed one.
    pub stalled: u64,
    /// Connections whose echoes were still arriving when the drain after a
    /// timed run ended: slow, not stalled, and not a failure.
    pub unfinished: u64,
    /// Connections whose echo differed from what was sent (each is closed at
    /// its first wrong byte, since nothing after it can be trusted).
    pub verification_errors: u64,
    /// Messages whose echo arrived complete and verified.
    pub messages: u64,
    /// Echoed bytes received and verified (one direction).
    pub bytes: u64,
    /// Churn mode: connect-echo-close cycles completed.
    pub cycles: u64,
    /// Idle mode: connections still open when the hold ended.
    pub idle_held: u64,
    /// Idle mode: of those, the ones whose final echo verified.
    pub idle_survived: u64,
}

impl Counts {
    /// Adds another loop's counts to these.
    pub fn add(&mut self, other: &Counts) {
        self.attempted += other.attempted;
        self.established += other.established;
        for (mine, theirs) in self.failed.iter_mut().zip(other.failed) {
            *mine += theirs;
        }
        self.aborted += other.aborted;
        self.never_attempted += other.never_attempted;
        self.unfinished += other.unfinished;
        self.unexpected_closes += other.unexpected_closes;
        self.closed_before_echo += other.closed_before_echo;
        self.stalled += other.stalled;
        self.verification_errors += other.verification_errors;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.cycles += other.cycles;
        self.idle_held += other.idle_held;
        self.idle_survived += other.idle_survived;
    }

    /// Failed connects, all reasons.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// Connections the run meant to test and never established: aborted
    /// and never-attempted connects (not counted in churn mode).
    pub fn untested(&self, mode: Mode) -> u64 {
        match mode {
            Mode::Churn => 0,
            Mode::Load | Mode::Idle => self.aborted + self.never_attempted,
        }
    }

    /// What `--max-failures` is compared with: failed connects, unexpected
    /// closes, stalls and connections never established.
    pub fn failures(&self, mode: Mode) -> u64 {
        self.failed_total() + self.unexpected_closes + self.stalled + self.untested(mode)
    }
}

/// The first message of each kind of error: the counts say how many, these
/// say why.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// First failed connect of each reason, by [`FailReason::index`].
    pub failed: [Option<String>; 5],
    /// First unexpected close.
    pub unexpected: Option<String>,
    /// First stalled connection.
    pub stalled: Option<String>,
    /// First connection still echoing when the drain ended.
    pub unfinished: Option<String>,
    /// First wrong byte: connection, stream offset, expected and received.
    pub verification: Option<String>,
}

impl Samples {
    /// Keeps `message` in `slot` unless an earlier one is there.
    pub fn keep(slot: &mut Option<String>, message: impl FnOnce() -> String) {
        if slot.is_none() {
            *slot = Some(message());
        }
    }

    /// Fills the kinds this set lacks from another loop's samples.
    pub fn add(&mut self, other: Samples) {
        for (mine, theirs) in self.failed.iter_mut().zip(other.failed) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.unexpected = self.unexpected.take().or(other.unexpected);
        self.stalled = self.stalled.take().or(other.stalled);
        self.unfinished = self.unfinished.take().or(other.unfinished);
        self.verification = self.verification.take().or(other.verification);
    }
}

/// Counters one loop updates as it goes and the status line reads once a
/// second. One per loop, on its own cache lines, so loops never contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Live {
    /// Connections open right now.
    pub up: AtomicU64,
    /// Connects attempted so far.
    pub attempted: AtomicU64,
    /// Messages echoed so far.
    pub messages: AtomicU64,
    /// Echoed bytes so far.
    pub bytes: AtomicU64,
    /// Failed connects, unexpected closes, stalls and verification errors so far.
    pub errors: AtomicU64,
    /// While echoes are owed: when the longest-waiting connection last
    /// received an echo byte (ns since the run's epoch, at least 1); 0 while
    /// nothing is outstanding. The status line shows a stall from it before
    /// `--echo-timeout` ends it.
    pub waiting_since: AtomicU64,
}

/// Sums of all loops' [`Live`] counters at one instant.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveTotals {
    /// Connections open.
    pub up: u64,
    /// Connects attempted.
    pub attempted: u64,
    /// Messages echoed.
    pub messages: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// Errors of every kind.
    pub errors: u64,
    /// The longest-waiting loop's last progress (ns since the epoch), if
    /// any loop is owed echoes.
    pub waiting_since: Option<u64>,
}

impl LiveTotals {
    /// Reads and adds up every loop's counters.
    pub fn read(lives: &[std::sync::Arc<Live>]) -> Self {
        let mut t = LiveTotals::default();
        for live in lives {
            t.up += live.up.load(Ordering::Relaxed);
            t.attempted += live.attempted.load(Ordering::Relaxed);
            t.messages += live.messages.load(Ordering::Relaxed);
            t.bytes += live.bytes.load(Ordering::Relaxed);
            t.errors += live.errors.load(Ordering::Relaxed);
            let since = live.waiting_since.load(Ordering::Relaxed);
            if since > 0 {
                t.waiting_since = Some(t.waiting_since.map_or(since, |t| t.min(since)));
            }
        }
        t
    }
}

/// One status line from two samples `interval` apart.
pub fn status_line(
    elapsed: Duration,
    now: LiveTotals,
    before: LiveTotals,
    interval: Duration,
    p99_ns: Option<u64>,
) -> String {
    let secs = interval.as_secs_f64().max(1e-9);
    let msgs = (now.messages - before.messages) as f64 / secs;
    let mib = (now.bytes - before.bytes) as f64 / secs / MIB;
    let p99 = p99_ns.map_or_else(|| "-".to_string(), |ns| format!("{:.1} us", us(ns)));
    let mut line = format!(
        "[{:>4.0}s] conns up {} (tried {}) | {} msg/s | {:.1} MiB/s | p99 {} | errors {}",
        elapsed.as_secs_f64(),
        group(now.up),
        group(now.attempted),
        group(msgs.round() as u64),
        mib,
        p99,
        group(now.errors),
    );
    // A stall says so, rather than looking like a finished run's 0 msg/s.
    let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    if let Some(since) = now.waiting_since {
        let waited = Duration::from_nanos(elapsed_ns.saturating_sub(since));
        if waited >= Duration::from_secs(1) {
            let _ = write!(line, " | no echo for {:.1} s", waited.as_secs_f64());
        }
    }
    line
}

/// Bytes in a mebibyte.
const MIB: f64 = 1024.0 * 1024.0;

/// Nanoseconds to microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `1234567` → `1,234,567`: big counts must be readable at a glance.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The run's settings that the report repeats, so a saved report stands alone.
#[derive(Debug, Clone)]
pub struct Setup {
    /// What the connections did.
    pub mode: Mode,
    /// The server's address.
    pub addr: String,
    /// `--connections`.
    pub connections: u64,
    /// `--message-size`.
    pub message_size: u64,
    /// `--pipeline`.
    pub pipeline: u64,
    /// `--threads` (after clamping to the connection count).
    pub threads: u64,
    /// `--rate`, if open loop.
    pub rate: Option<f64>,
    /// `--messages`, if given.
    pub messages: Option<u64>,
    /// The run length (or hold time), if timed.
    pub duration: Option<Duration>,
    /// `--max-failures`.
    pub max_failures: u64,
    /// The soft open-file limit after raising it (Unix), else `None`.
    pub fd_limit: Option<u64>,
}

/// The final report: setup, what was counted, and the histograms.
#[derive(Debug)]
pub struct Report {
    /// The settings of the run.
    pub setup: Setup,
    /// The loops' counts, added up.
    pub counts: Counts,
    /// The first error of each kind.
    pub samples: Samples,
    /// Round-trip latency of every echoed message, in ns.
    pub latency: Histogram<u64>,
    /// Time from `connect` to established, per connection, in ns.
    pub connect_latency: Histogram<u64>,
    /// Wall time from the first connect to the last loop's end.
    pub elapsed: Duration,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
}

impl Report {
    /// Why the run failed, or `None` when it passed.
    pub fn verdict(&self) -> Option<String> {
        let c = &self.counts;
        let mode = self.setup.mode;
        if c.verification_errors > 0 {
            return Some(format!(
                "{} connection(s) echoed bytes that differ from those sent",
                c.verification_errors
            ));
        }
        let nothing = match mode {
            Mode::Load => (c.messages == 0).then_some("no message was echoed and verified"),
            Mode::Idle => (c.idle_survived == 0).then_some("no connection was held and verified"),
            Mode::Churn => (c.cycles == 0).then_some("no connect-echo-close cycle completed"),
        };
        if let Some(nothing) = nothing {
            return Some(format!("{nothing}: nothing was tested"));
        }
        if c.failures(mode) > self.setup.max_failures {
            return Some(format!(
                "{} failure(s) (failed connects + unexpected closes + stalls + connections \
                 never established) > --max-failures {}",
                c.failures(mode),
                self.setup.max_failures
            ));
        }
        None
    }

    /// 0 when the run passed, 1 when it did not.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.verdict().is_some())
    }

    /// Echoed messages per second of wall time.
    fn msgs_per_sec(&self) -> f64 {
        self.counts.messages as f64 / self.secs()
    }

    /// Echoed MiB per second of wall time.
    fn mib_per_sec(&self) -> f64 {
        self.counts.bytes as f64 / MIB / self.secs()
    }

    /// Completed churn cycles per second (churn mode only).
    fn connections_per_sec(&self) -> Option<f64> {
        (self.setup.mode == Mode::Churn).then(|| self.counts.cycles as f64 / self.secs())
    }

    /// Elapsed seconds, never zero.
    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let s = &self.setup;
        let c = &self.counts;
        let mut out = String::new();
        let loop_kind = match s.rate {
            Some(r) => format!("open loop at {r} msg/s per connection"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "echoloop-stress: {} mode against {}, {} connections, {} B messages, pipeline {}, {}, {} thread(s){}",
            s.mode.name(),
            s.addr,
            group(s.connections),
            group(s.message_size),
            s.pipeline,
            loop_kind,
            s.threads,
            if self.interrupted { " (interrupted by Ctrl-C)" } else { "" },
        );
        let reasons: Vec<String> = FailReason::ALL
            .iter()
            .map(|r| format!("{} {}", r.name(), group(c.failed[r.index()])))
            .collect();
        let _ = writeln!(
            out,
            "connections:  {} attempted, {} established, {} failed ({}), {} still connecting \
             when the run ended, {} never attempted",
            group(c.attempted),
            group(c.established),
            group(c.failed_total()),
            reasons.join(", "),
            group(c.aborted),
            group(c.never_attempted),
        );
        let _ = writeln!(
            out,
            "closes:       {} unexpected ({} before any echo), {} stalled, {} still echoing \
             when the drain ended",
            group(c.unexpected_closes),
            group(c.closed_before_echo),
            group(c.stalled),
            group(c.unfinished),
        );
        let _ = writeln!(
            out,
            "messages:     {} in {:.3} s = {} msg/s, {:.2} MiB/s echoed",
            group(c.messages),
            self.secs(),
            group(self.msgs_per_sec().round() as u64),
            self.mib_per_sec(),
        );
        let _ = writeln!(out, "latency:      {}", percentiles_text(&self.latency));
        let _ = writeln!(
            out,
            "connect time: {}",
            percentiles_text(&self.connect_latency)
        );
        if let Some(rate) = self.connections_per_sec() {
            let _ = writeln!(
                out,
                "churn:        {} connect-echo-close cycles = {} connections/s",
                group(c.cycles),
                group(rate.round() as u64)
            );
        }
        if s.mode == Mode::Idle {
            let _ = writeln!(
                out,
                "idle:         {} held to the end, {} of them verified by a final echo",
                group(c.idle_held),
                group(c.idle_survived)
            );
        }
        let _ = writeln!(
            out,
            "verification: {} error(s){}",
            group(c.verification_errors),
            if c.verification_errors == 0 && c.messages > 0 {
                " - every echoed byte matched"
            } else {
                ""
            }
        );
        let mut first = Vec::new();
        for r in FailReason::ALL {
            if let Some(m) = &self.samples.failed[r.index()] {
                first.push(format!("{}: {m}", r.name()));
            }
        }
        for (name, m) in [
            ("unexpected close", &self.samples.unexpected),
            ("stalled", &self.samples.stalled),
            ("unfinished", &self.samples.unfinished),
            ("verification", &self.samples.verification),
        ] {
            if let Some(m) = m {
                first.push(format!("{name}: {m}"));
            }
        }
        for line in first {
            let _ = writeln!(out, "first error:  {line}");
        }
        let _ = match self.verdict() {
            None => writeln!(out, "result:       PASS"),
            Some(why) => writeln!(out, "result:       FAIL: {why}"),
        };
        out
    }

    /// The machine-readable report: one JSON object.
    pub fn json(&self) -> String {
        let s = &self.setup;
        let c = &self.counts;
        let failed: Vec<String> = FailReason::ALL
            .iter()
            .map(|r| format!("\"{}\": {}", r.name(), c.failed[r.index()]))
            .collect();
        let first_failed: Vec<String> = FailReason::ALL
            .iter()
            .map(|r| {
                format!(
                    "\"{}\": {}",
                    r.name(),
                    json_opt_str(&self.samples.failed[r.index()])
                )
            })
            .collect();
        let mut out = String::from("{\n");
        let mut field = |name: &str, value: String| {
            let _ = writeln!(out, "  \"{name}\": {value},");
        };
        field("mode", json_str(s.mode.name()));
        field("addr", json_str(&s.addr));
        field("connections", s.connections.to_string());
        field("message_size", s.message_size.to_string());
        field("pipeline", s.pipeline.to_string());
        field("threads", s.threads.to_string());
        field(
            "rate_per_connection",
            s.rate.map_or("null".into(), json_f64),
        );
        field(
            "messages_requested",
            s.messages.map_or("null".into(), |m| m.to_string()),
        );
        field(
            "duration_secs",
            s.duration
                .map_or("null".into(), |d| json_f64(d.as_secs_f64())),
        );
        field("max_failures", s.max_failures.to_string());
        field(
            "fd_limit",
            s.fd_limit.map_or("null".into(), |l| l.to_string()),
        );
        field("interrupted", self.interrupted.to_string());
        field("elapsed_secs", json_f64(self.secs()));
        field("connections_attempted", c.attempted.to_string());
        field("connections_established", c.established.to_string());
        field("connections_failed", c.failed_total().to_string());
        field("failed_by_reason", format!("{{{}}}", failed.join(", ")));
        field("connections_aborted", c.aborted.to_string());
        field("connections_never_attempted", c.never_attempted.to_string());
        field("unexpected_closes", c.unexpected_closes.to_string());
        field("closed_before_echo", c.closed_before_echo.to_string());
        field("stalled", c.stalled.to_string());
        field("unfinished", c.unfinished.to_string());
        field("verification_errors", c.verification_errors.to_string());
        field("messages", c.messages.to_string());
        field("bytes", c.bytes.to_string());
        field("msgs_per_sec", json_f64(self.msgs_per_sec()));
        field("mib_per_sec", json_f64(self.mib_per_sec()));
        field("latency_us", percentiles_json(&self.latency));
        field(
            "connect_latency_us",
            percentiles_json(&self.connect_latency),
        );
        field("churn_cycles", c.cycles.to_string());
        field(
            "connections_per_sec",
            self.connections_per_sec().map_or("null".into(), json_f64),
        );
        field("idle_held", c.idle_held.to_string());
        field("idle_survived", c.idle_survived.to_string());
        field(
            "first_failed_by_reason",
            format!("{{{}}}", first_failed.join(", ")),
        );
        field(
            "first_unexpected_close",
            json_opt_str(&self.samples.unexpected),
        );
        field("first_stall", json_opt_str(&self.samples.stalled));
        field("first_unfinished", json_opt_str(&self.samples.unfinished));
        field(
            "first_verification_error",
            json_opt_str(&self.samples.verification),
        );
        field("failures", c.failures(s.mode).to_string());
        field("verdict", json_opt_str(&self.verdict()));
        let _ = writeln!(out, "  \"exit_code\": {}", self.exit_code());
        out.push('}');
        out
    }
}

/// The quantiles every latency line shows, with their labels.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)];

/// `p50 12.3 us  p90 …  max …` or `-` with no samples.
fn percentiles_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "- (no samples)".to_string();
    }
    let mut out = String::new();
    for (name, q) in QUANTILES {
        let _ = write!(
            out,
            "{} {:.1} us  ",
            name.replace('_', "."),
            us(h.value_at_quantile(q))
        );
    }
    let _ = write!(
        out,
        "max {:.1} us  (mean {:.1} us, {} samples)",
        us(h.max()),
        h.mean() / 1000.0,
        group(h.len())
    );
    out
}

/// `{"p50": 12.3, …, "max": …, "mean": …, "count": n}`, or `null` with no samples.
fn percentiles_json(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "null".to_string();
    }
    let mut parts: Vec<String> = QUANTILES
        .iter()
        .map(|(name, q)| format!("\"{name}\": {}", json_f64(us(h.value_at_quantile(*q)))))
        .collect();
    parts.push(format!("\"max\": {}", json_f64(us(h.max()))));
    parts.push(format!("\"mean\": {}", json_f64(h.mean() / 1000.0)));
    parts.push(format!("\"count\": {}", h.len()));
    format!("{{{}}}", parts.join(", "))
}

/// A finite float as JSON (JSON has no NaN or infinity).
fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_string()
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON string, or `null`.
fn json_opt_str(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".to_string(), json_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    /// The status line names a stall of a second or more, and only then.
    #[test]
    fn status_line_shows_a_stall() {
        let second = Duration::from_secs(1);
        let waiting = |since: Option<u64>| LiveTotals {
            up: 1,
            waiting_since: since,
            ..LiveTotals::default()
        };
        let line = |since| status_line(second * 5, waiting(since), waiting(None), second, None);
        assert!(line(Some(1_500_000_000)).ends_with(" | no echo for 3.5 s"));
        assert!(!line(Some(4_500_000_000)).contains("no echo"));
        assert!(!line(None).contains("no echo"));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
