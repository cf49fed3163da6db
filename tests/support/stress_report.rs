//! `echoloop-stress --json`'s report as the tests read it: a typed mirror
//! of the binary's `JsonReport`, field for field, parsed with serde.
//!
//! The report's field names are a contract (scripts, the benchmark and
//! these tests read them), and a mirror written apart from the binary is
//! what checks that contract from outside: a renamed or retyped field fails
//! to parse here, and [`Report::assert_mirrors`] fails when the binary
//! writes a field this mirror lacks. Add a field here when the binary gains
//! one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The whole report, in the order the binary writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `load`, `idle`, `churn` or `udp`.
    pub mode: String,
    pub addr: String,
    pub connections: u64,
    pub message_size: u64,
    pub pipeline: u64,
    pub threads: u64,
    pub rate_per_connection: Option<f64>,
    pub messages_requested: Option<u64>,
    pub duration_secs: Option<f64>,
    /// `--warmup`, if given.
    pub warmup_secs: Option<f64>,
    pub max_failures: u64,
    pub fd_limit: Option<u64>,
    pub interrupted: bool,
    pub elapsed_secs: Option<f64>,
    /// `--warmup`: the warm-up's figures, apart from the counts.
    pub warmup: Option<Warmup>,
    pub connections_attempted: u64,
    pub connections_established: u64,
    pub connections_failed: u64,
    pub failed_by_reason: ByReason<u64>,
    pub connections_aborted: u64,
    pub connections_never_attempted: u64,
    pub unexpected_closes: u64,
    pub closed_before_echo: u64,
    pub stalled: u64,
    pub unfinished: u64,
    pub verification_errors: u64,
    pub messages: u64,
    pub bytes: u64,
    pub msgs_per_sec: Option<f64>,
    pub mib_per_sec: Option<f64>,
    /// `--udp` runs only: the datagram counts, at the top level.
    #[serde(flatten)]
    pub udp: Option<Udp>,
    /// Round trips (µs; open loop: from each scheduled send).
    pub latency_us: Option<Summary>,
    pub connect_latency_us: Option<Summary>,
    /// Open loop only: round trips from each actual send.
    pub latency_uncorrected_us: Option<Summary>,
    pub first_byte_us: Option<Summary>,
    pub churn_cycles: u64,
    pub connections_per_sec: Option<f64>,
    pub idle_held: u64,
    pub idle_survived: u64,
    pub first_failed_by_reason: ByReason<Option<String>>,
    pub first_unexpected_close: Option<String>,
    pub first_stall: Option<String>,
    pub first_unfinished: Option<String>,
    pub first_verification_error: Option<String>,
    pub failures: u64,
    /// Why the run failed; `None` (JSON `null`) when it passed.
    pub verdict: Option<String>,
    pub exit_code: i32,
    /// The output files that could not be written; empty when all were.
    pub output_errors: Vec<String>,
    pub advice: Option<String>,
    pub started_unix: f64,
    pub ended_unix: f64,
    pub merged_runs: u64,
    pub histograms: Histograms,
    /// `--stages` runs only: what each stage did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Stage>>,
}

/// One stage of a `--stages` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    pub secs: f64,
    pub connections_from: u64,
    pub connections_to: u64,
    pub messages: u64,
    pub msgs_per_sec: Option<f64>,
    pub latency_us: Option<Summary>,
    pub histogram: Option<String>,
}

/// `--warmup`: what the warm-up did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Warmup {
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// One value per connect failure reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ByReason<T> {
    pub refused: T,
    pub timeout: T,
    #[serde(rename = "addr-not-available")]
    pub addr_not_available: T,
    pub reset: T,
    pub other: T,
}

/// The datagram counts and samples of a `--udp` report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Udp {
    pub sent: u64,
    pub echoed: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub foreign: u64,
    pub icmp_errors: u64,
    pub unresolved: u64,
    /// RFC 3550 jitter: the sum of every socket's estimate over its
    /// samples (ns), the samples, and the worst socket's mean (ns).
    pub jitter_sum_ns: u64,
    pub jitter_samples: u64,
    pub jitter_max_socket_ns: u64,
    pub loss_percent: Option<f64>,
    pub max_loss_percent: f64,
    /// `jitter_sum_ns / jitter_samples` in µs, and the worst socket's.
    pub jitter_us: Option<f64>,
    pub jitter_max_socket_us: Option<f64>,
    pub first_lost: Option<String>,
    pub first_duplicated: Option<String>,
    pub first_reordered: Option<String>,
    pub first_corrupted: Option<String>,
    pub first_foreign: Option<String>,
}

/// A histogram's summary in µs: the percentiles asked for (`p50`, `p99_9`,
/// …, by `--percentiles`), then `max`, `mean` and `count`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub percentiles: BTreeMap<String, f64>,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

/// Every series' histogram, base64 of V2-deflate, `None` if not recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histograms {
    pub rtt: Option<String>,
    #[serde(rename = "rtt-uncorrected")]
    pub rtt_uncorrected: Option<String>,
    pub connect: Option<String>,
    #[serde(rename = "first-byte")]
    pub first_byte: Option<String>,
}

impl Summary {
    /// The percentile named `key` (`"p50"`, `"p99_9"`), failing the test
    /// if the report has no such column.
    #[track_caller]
    pub fn p(&self, key: &str) -> f64 {
        *self
            .percentiles
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.percentiles))
    }

    /// `p50`.
    #[track_caller]
    pub fn p50(&self) -> f64 {
        self.p("p50")
    }

    /// `p99`.
    #[track_caller]
    pub fn p99(&self) -> f64 {
        self.p("p99")
    }
}

impl Report {
    /// Parses `text`, failing the test with it if it is not a report.
    #[track_caller]
    pub fn parse(text: &str) -> Report {
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("not an echoloop-stress report ({e}):\n{text}"))
    }

    /// The round-trip summary, failing the test if the run recorded none.
    #[track_caller]
    pub fn latency(&self) -> &Summary {
        self.latency_us
            .as_ref()
            .unwrap_or_else(|| panic!("no round trips recorded: {self:?}"))
    }

    /// The uncorrected round-trip summary (open loop only).
    #[track_caller]
    pub fn latency_uncorrected(&self) -> &Summary {
        self.latency_uncorrected_us
            .as_ref()
            .unwrap_or_else(|| panic!("no uncorrected round trips: {self:?}"))
    }

    /// The connect-time summary.
    #[track_caller]
    pub fn connect_latency(&self) -> &Summary {
        self.connect_latency_us
            .as_ref()
            .unwrap_or_else(|| panic!("no connect times recorded: {self:?}"))
    }

    /// The datagram counts, failing the test on a TCP report.
    #[track_caller]
    pub fn udp(&self) -> &Udp {
        self.udp
            .as_ref()
            .unwrap_or_else(|| panic!("not a --udp report: {self:?}"))
    }

    /// Asserts an open-loop run kept its schedule, `count` being what it
    /// sent (messages, or datagrams): never more than the schedule allows
    /// (`--rate` × `--connections` × `--duration`, plus 1/16 for the last
    /// tick), and any shortfall of more than 1/8 shown as lateness — the
    /// open loop measures each message from when it was due, so a client
    /// that fell behind (a slow or loaded machine, Wine's timers) reports
    /// its last messages at least that far behind. What no machine can
    /// excuse is a shortfall the latency does not show: a schedule that
    /// runs slow.
    #[track_caller]
    pub fn assert_on_schedule(&self, count: u64) {
        let rate = self.rate_per_connection.expect("an open-loop report");
        let secs = self.duration_secs.expect("a timed run");
        let due = rate * self.connections as f64 * secs;
        let count = count as f64;
        assert!(
            count <= due * 17.0 / 16.0,
            "{count} sent, more than the {due} the schedule allows"
        );
        if count < due * 7.0 / 8.0 {
            // Behind by this much per connection at the end, at the least.
            let behind_us = (due - count) / self.connections as f64 / rate * 1e6;
            let late_us = self.latency().max;
            assert!(
                late_us >= behind_us / 2.0,
                "{count} sent of {due} due, yet no message was later than {late_us} µs: \
                 the schedule itself ran slow ({behind_us} µs behind)"
            );
        }
    }

    /// Asserts this mirror holds the whole of `text`, the report it was
    /// parsed from: written back, it is the same JSON, so no field of the
    /// binary's is missing here (or read as another kind of value).
    #[track_caller]
    pub fn assert_mirrors(text: &str) {
        let written: Json = serde_json::from_str(text).expect("the report is JSON");
        let mirrored = serde_json::to_value(Report::parse(text)).expect("the mirror serializes");
        let mut differences = Vec::new();
        diff("", &written, &mirrored, &mut differences);
        assert!(
            differences.is_empty(),
            "tests/support/stress_report.rs does not mirror the report: {}\n{text}",
            differences.join("; ")
        );
    }
}

/// Where `mirrored` differs from `written`, as paths, into `out`.
fn diff(path: &str, written: &Json, mirrored: &Json, out: &mut Vec<String>) {
    match (written, mirrored) {
        (Json::Object(w), Json::Object(m)) => {
            for (key, value) in w {
                let at = format!("{path}/{key}");
                match m.get(key) {
                    Some(other) => diff(&at, value, other, out),
                    None => out.push(format!("{at} is not in the mirror")),
                }
            }
            for key in m.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}/{key} is not in the report"));
            }
        }
        (w, m) if w != m => out.push(format!("{path}: written {w}, mirrored {m}")),
        _ => {}
    }
}
