//! The machine-readable report: one JSON object, written with serde from
//! [`JsonReport`]. Its field names are a contract (scripts, the benchmark
//! and the tests read them): add fields, never rename one.
//!
//! Every histogram is in it in full, as HdrHistogram's V2-deflate encoding
//! in base64 (the payload of an interval log line), so that reports of
//! runs made at the same time can be added up later (`merge`) exactly.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::counts::{Counts, Samples, UdpCounts, UdpSamples};
use crate::plan::Kind;
use crate::record::{new_histogram, PerSeries, Recorder, Series};
use crate::report::{at_percentile, percentile_key, us, Report, StageFigures, Warmup};

/// A histogram's percentiles in microseconds: `{"p50": 12.3, …, "max": …,
/// "mean": …, "count": n}`.
#[derive(Debug, Clone)]
pub struct Summary {
    /// (label, µs) for each quantile shown, in order.
    pub quantiles: Vec<(String, f64)>,
    /// Largest value, µs.
    pub max: f64,
    /// Mean, µs.
    pub mean: f64,
    /// Number of samples.
    pub count: u64,
}

impl Summary {
    /// The `percentiles` of `h`, or `None` (JSON `null`) with no samples.
    pub fn of(h: &Histogram<u64>, percentiles: &[f64]) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        Some(Summary {
            quantiles: percentiles
                .iter()
                .map(|&p| (percentile_key(p), us(at_percentile(h, p))))
                .collect(),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            count: h.len(),
        })
    }
}

impl Serialize for Summary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.quantiles.len() + 3))?;
        for (name, value) in &self.quantiles {
            map.serialize_entry(name, &rounded(*value))?;
        }
        map.serialize_entry("max", &rounded(self.max))?;
        map.serialize_entry("mean", &rounded(self.mean))?;
        map.serialize_entry("count", &self.count)?;
        map.end()
    }
}

/// A float to three decimals, or `None` (JSON `null`: JSON has no NaN or
/// infinity).
fn rounded(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1000.0).round() / 1000.0)
}

/// The report as JSON, field by field in the order it is printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonReport {
    /// What the connections did.
    pub mode: Kind,
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
    pub rate_per_connection: Option<f64>,
    /// `--messages`, if given.
    pub messages_requested: Option<u64>,
    /// The run length (or hold time), if timed (after the warm-up).
    pub duration_secs: Option<f64>,
    /// `--warmup`, if given: seconds before the measurement began.
    #[serde(default)]
    pub warmup_secs: Option<f64>,
    /// `--max-failures`.
    pub max_failures: u64,
    /// The soft open-file limit after raising it (Unix).
    pub fd_limit: Option<u64>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Wall time of the measurement (after the warm-up; `ended_unix −
    /// started_unix` is the whole run's).
    pub elapsed_secs: Option<f64>,
    /// `--warmup`: its messages, bytes and errors, apart from the counts
    /// (which of those start after it: `Counts::less_warmup`).
    #[serde(default)]
    pub warmup: Option<Warmup>,
    /// The counts, each a top-level field (named in `counts.rs`).
    #[serde(flatten)]
    pub counts: Counts,
    /// Connects that failed, all reasons.
    pub connections_failed: u64,
    /// Messages per second of wall time.
    pub msgs_per_sec: Option<f64>,
    /// MiB per second of wall time.
    pub mib_per_sec: Option<f64>,
    /// `--udp`: what became of the datagrams; absent from TCP reports.
    #[serde(flatten)]
    pub udp: Option<UdpJson>,
    /// Round-trip latency percentiles (µs; open loop: from each scheduled
    /// send), `null` with no samples.
    #[serde(skip_deserializing)]
    pub latency_us: Option<Summary>,
    /// Connect time percentiles (µs), `null` with no samples.
    #[serde(skip_deserializing)]
    pub connect_latency_us: Option<Summary>,
    /// Open loop: round trip from each actual send (µs), `null` otherwise.
    #[serde(skip_deserializing)]
    pub latency_uncorrected_us: Option<Summary>,
    /// Established to first echoed byte, per connection (µs).
    #[serde(skip_deserializing)]
    pub first_byte_us: Option<Summary>,
    /// Churn mode: cycles per second.
    pub connections_per_sec: Option<f64>,
    /// The first error of each kind, each a top-level field (named in
    /// `counts.rs`).
    #[serde(flatten)]
    pub samples: Samples,
    /// What `--max-failures` is compared with.
    pub failures: u64,
    /// Why the run failed, or `null`.
    pub verdict: Option<String>,
    /// The exit status.
    pub exit_code: i32,
    /// The output files that could not be written (`--hlog PATH: …`),
    /// which make the exit status 2; empty when all were.
    #[serde(default, skip_deserializing)]
    pub output_errors: Vec<String>,
    /// What a failure means and what to do (ephemeral ports), or `null`.
    #[serde(skip_deserializing)]
    pub advice: Option<String>,
    /// When the run began, seconds since the Unix epoch.
    pub started_unix: f64,
    /// When it ended.
    pub ended_unix: f64,
    /// How many runs this report adds up.
    pub merged_runs: u64,
    /// Every series' histogram in full (base64 of V2-deflate), by tag;
    /// `null` for a series not recorded.
    pub histograms: Histograms,
    /// `--stages`: what each stage did, in order; absent without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageJson>>,
}

/// One stage of a `--stages` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageJson {
    /// Its length.
    pub secs: f64,
    /// The active connections it ramps from.
    pub connections_from: u64,
    /// The active connections it ramps to.
    pub connections_to: u64,
    /// Messages echoed and verified in it.
    pub messages: u64,
    /// Messages per second over it.
    pub msgs_per_sec: Option<f64>,
    /// Its round-trip percentiles (µs), `null` with no samples.
    #[serde(skip_deserializing)]
    pub latency_us: Option<Summary>,
    /// Its round trips in full (base64 of V2-deflate), for `merge`.
    pub histogram: Option<String>,
}

impl StageJson {
    /// The JSON form of one stage's figures.
    fn of(s: &StageFigures, percentiles: &[f64]) -> Self {
        StageJson {
            secs: s.stage.length.as_secs_f64(),
            connections_from: s.from,
            connections_to: s.stage.target,
            messages: s.messages,
            msgs_per_sec: rounded(s.msgs_per_sec()),
            latency_us: Summary::of(&s.rtt, percentiles),
            histogram: encode(&s.rtt).ok(),
        }
    }
}

/// The datagram counts of a `--udp` report, at the top level of the
/// object (the benchmark reads these names). Every count is of datagrams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UdpJson {
    /// The datagram counts, each a top-level field of the report.
    #[serde(flatten)]
    pub counts: UdpCounts,
    /// `lost` as a percentage of `sent`.
    pub loss_percent: Option<f64>,
    /// `--max-loss`.
    pub max_loss_percent: f64,
    /// RFC 3550 jitter of all sockets together, µs (`jitter_sum_ns /
    /// jitter_samples`; see `udp/jitter.rs`), `null` without a sample.
    #[serde(default, skip_deserializing)]
    pub jitter_us: Option<f64>,
    /// The worst socket's jitter, µs.
    #[serde(default, skip_deserializing)]
    pub jitter_max_socket_us: Option<f64>,
    /// The first datagram of each kind of trouble, each a top-level field.
    #[serde(flatten)]
    pub first: UdpSamples,
}

impl UdpJson {
    /// The UDP part of `report`, or `None` for a TCP run.
    fn of(report: &Report) -> Option<Self> {
        if !report.setup.mode.udp() {
            return None;
        }
        let u = &report.counts.udp;
        Some(UdpJson {
            counts: u.clone(),
            loss_percent: rounded(u.loss_percent()),
            max_loss_percent: report.setup.max_loss.unwrap_or(0.0),
            jitter_us: u.jitter_ns().and_then(|ns| rounded(ns / 1000.0)),
            jitter_max_socket_us: rounded(u.jitter_max_socket_ns.0 as f64 / 1000.0),
            first: report.samples.udp.clone(),
        })
    }
}

/// The encoded histograms, one field per [`Series`] tag; `null` for a
/// series not recorded.
pub type Histograms = PerSeries<Option<String>>;

/// Encodes `rec`; `series` says which ones were recorded.
fn encode_all(rec: &Recorder, series: &[Series]) -> Histograms {
    let mut out = Histograms::default();
    for &s in series {
        out[s.index()] = encode(rec.get(s)).ok();
    }
    out
}

/// Decodes every series present into a recorder; the error names the
/// series and what is wrong with it.
pub fn decode_all(histograms: &Histograms) -> Result<Recorder, String> {
    let mut rec = Recorder::new();
    for (series, text) in histograms.keyed() {
        if let Some(text) = text {
            let h = decode(text).map_err(|e| format!("histograms.{}: {e}", series.tag()))?;
            rec.hists[series.index()]
                .add(&h)
                .map_err(|e| format!("histograms.{}: {e:?}", series.tag()))?;
        }
    }
    Ok(rec)
}

/// `h` as base64 of its V2-deflate encoding (`HISTF…`).
pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("encode a histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The histogram `text` encodes (base64 of V2 or V2-deflate).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram encoding: {e:?}"))?;
    let mut ours = new_histogram();
    ours.add(&h)
        .map_err(|e| format!("values out of range: {e:?}"))?;
    Ok(ours)
}

impl JsonReport {
    /// The JSON form of `report`.
    pub fn of(report: &Report) -> Self {
        let s = &report.setup;
        let c = &report.counts;
        let pcts = &report.percentiles;
        JsonReport {
            mode: s.mode,
            addr: s.addr.clone(),
            connections: s.connections,
            message_size: s.message_size,
            pipeline: s.pipeline,
            threads: s.threads,
            rate_per_connection: s.rate.and_then(rounded),
            messages_requested: s.messages,
            duration_secs: s.duration.and_then(|d| rounded(d.as_secs_f64())),
            warmup_secs: s.warmup.and_then(|d| rounded(d.as_secs_f64())),
            max_failures: s.max_failures,
            fd_limit: s.fd_limit,
            interrupted: report.interrupted,
            elapsed_secs: rounded(report.secs()),
            warmup: report.warmup,
            counts: c.clone(),
            connections_failed: c.failed_total(),
            msgs_per_sec: rounded(report.msgs_per_sec()),
            mib_per_sec: rounded(report.mib_per_sec()),
            udp: UdpJson::of(report),
            latency_us: Summary::of(report.rec.get(Series::Rtt), pcts),
            connect_latency_us: Summary::of(report.rec.get(Series::Connect), pcts),
            latency_uncorrected_us: s
                .rate
                .and_then(|_| Summary::of(report.rec.get(Series::RttUncorrected), pcts)),
            first_byte_us: Summary::of(report.rec.get(Series::FirstByte), pcts),
            connections_per_sec: report.connections_per_sec().and_then(rounded),
            samples: report.samples.clone(),
            failures: c.failures(s.mode.workload),
            verdict: report.verdict(),
            exit_code: report.exit_code(),
            output_errors: report.output_errors.clone(),
            advice: report.advice(),
            started_unix: report.started_unix,
            ended_unix: report.started_unix + report.elapsed.as_secs_f64(),
            merged_runs: report.merged_runs,
            histograms: encode_all(&report.rec, &report.setup.series()),
            stages: (!report.stages.is_empty()).then(|| {
                report
                    .stages
                    .iter()
                    .map(|s| StageJson::of(s, pcts))
                    .collect()
            }),
        }
    }
}

impl Report {
    /// The machine-readable report: one JSON object, pretty-printed (one
    /// `"key": value` per line at the top level).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&JsonReport::of(self))
            .unwrap_or_else(|e| format!("{{\"error\": \"serialize the report: {e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings are escaped by serde; floats keep three decimals; a float
    /// JSON cannot hold becomes null.
    #[test]
    fn histograms_round_trip() {
        let mut h = new_histogram();
        for v in [1, 13_200, 3_000_000_000] {
            h.record(v).expect("in range");
        }
        let text = encode(&h).expect("encode");
        assert!(text.starts_with("HISTF"), "{text}");
        assert_eq!(decode(&text).expect("decode"), h);
        assert!(decode(&text[..text.len() / 2]).is_err());
        assert!(decode("not base64!").is_err());
    }

    #[test]
    fn values_are_valid_json() {
        assert_eq!(rounded(1.23456), Some(1.235));
        assert_eq!(rounded(f64::NAN), None);
        let mut first = crate::counts::PerReason::<Option<String>>::default();
        first[0] = Some("a\"b\\c\nd\u{1}".to_string());
        let text = serde_json::to_string(&first).expect("serialize");
        assert_eq!(
            text,
            "{\"refused\":\"a\\\"b\\\\c\\nd\\u0001\",\"timeout\":null,\
             \"addr-not-available\":null,\"reset\":null,\"other\":null}"
        );
    }
}
