//! The final report: the verdict, and the human-readable text (the JSON form
//! is `json.rs`).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cli::Mode;
use crate::conn::FailReason;
use crate::counts::{Counts, Samples};
use crate::plan::Kind;
use crate::record::{Recorder, Series};
use crate::stages::{Stage, Stages};

/// Bytes in a mebibyte.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Nanoseconds to microseconds.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The failed connects (or sockets) by reason: `refused 3, timeout 0, …`.
pub fn failed_by_reason(c: &Counts) -> String {
    let reasons: Vec<String> = FailReason::ALL
        .iter()
        .map(|r| format!("{} {}", r.name(), group(c.failed[r.index()])))
        .collect();
    reasons.join(", ")
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
    pub rate: Option<f64>,
    /// `--messages`, if given.
    pub messages: Option<u64>,
    /// The run length (or hold time), if timed.
    pub duration: Option<Duration>,
    /// `--max-failures`.
    pub max_failures: u64,
    /// The soft open-file limit after raising it (Unix), else `None`.
    pub fd_limit: Option<u64>,
    /// `--udp`: `--max-loss` in percent (0 unless given); `None` for TCP.
    pub max_loss: Option<f64>,
    /// `--warmup`, if given.
    pub warmup: Option<Duration>,
    /// `--stages`, if given.
    pub stages: Option<Stages>,
}

/// `--stages`: what one stage did.
#[derive(Debug, Clone)]
pub struct StageFigures {
    /// Its length and the count it ramps to.
    pub stage: Stage,
    /// The count it ramps from.
    pub from: u64,
    /// Messages echoed and verified in it.
    pub messages: u64,
    /// Its round trips, in ns.
    pub rtt: Histogram<u64>,
}

impl StageFigures {
    /// Each stage of `stages` with nothing counted yet.
    pub fn empty(stages: &Stages) -> Vec<StageFigures> {
        stages
            .spans()
            .map(|(_, _, from, stage)| StageFigures {
                stage: *stage,
                from,
                messages: 0,
                rtt: crate::record::new_histogram(),
            })
            .collect()
    }

    /// Messages per second over the stage.
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.stage.length.as_secs_f64().max(1e-9)
    }
}

/// `--warmup`: what the warm-up did, shown apart from the measured run
/// (see [`Counts::less_warmup`] for which counts start after it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Warmup {
    /// Messages (`--udp`: datagrams) echoed and verified in it.
    pub messages: u64,
    /// Bytes echoed and verified in it.
    pub bytes: u64,
    /// Its errors ([`Counts::errors`]); they are in the run's counts too.
    pub errors: u64,
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
    /// Every series' histogram over the whole run, in ns.
    pub rec: Recorder,
    /// The percentiles to show (`--percentiles`).
    pub percentiles: Vec<f64>,
    /// Wall time from the first connect to the last loop's end (merged:
    /// from the first run's start to the last one's end).
    pub elapsed: Duration,
    /// When the run began, in seconds since the Unix epoch.
    pub started_unix: f64,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// How many runs this report adds up (1 for a run of its own).
    pub merged_runs: u64,
    /// `--warmup`: what the warm-up did (its time is `setup.warmup`).
    pub warmup: Option<Warmup>,
    /// `--stages`: what each stage did (empty without).
    pub stages: Vec<StageFigures>,
    /// The output files (`--hlog`, `--plot`, `--plot-percentiles`,
    /// `--html`) that could not be written, each `flag path: what failed`:
    /// any makes the exit status [`EXIT_OUTPUT`], whatever the verdict.
    pub output_errors: Vec<String>,
}

/// The exit status when the run ended but an output file could not be
/// written: the same as for one that could not be created at the start
/// (a usage or setup failure), so that a script never takes a run whose
/// files are missing for a complete one.
pub const EXIT_OUTPUT: i32 = crate::usage::EXIT_USAGE as i32;

impl Setup {
    /// The series this run records: the uncorrected round trip only in
    /// the open loop (in the closed loop it is the round trip); with
    /// `--udp`, no connect and no first byte (there are none).
    pub fn series(&self) -> Vec<Series> {
        let udp = self.mode.udp();
        Series::ALL
            .into_iter()
            .filter(|s| *s != Series::RttUncorrected || self.rate.is_some())
            .filter(|s| !udp || matches!(s, Series::Rtt | Series::RttUncorrected))
            .collect()
    }
}

impl Report {
    /// Why the run failed, or `None` when it passed.
    pub fn verdict(&self) -> Option<String> {
        let c = &self.counts;
        if self.setup.mode.udp() {
            return self.udp_verdict();
        }
        let mode = self.setup.mode.workload;
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

    /// 0 when the run passed, 1 when it did not; [`EXIT_OUTPUT`] when an
    /// output file could not be written.
    pub fn exit_code(&self) -> i32 {
        if self.output_errors.is_empty() {
            i32::from(self.verdict().is_some())
        } else {
            EXIT_OUTPUT
        }
    }

    /// Echoed messages per second of wall time.
    pub fn msgs_per_sec(&self) -> f64 {
        self.counts.messages as f64 / self.secs()
    }

    /// Echoed MiB per second of wall time.
    pub fn mib_per_sec(&self) -> f64 {
        self.counts.bytes as f64 / MIB / self.secs()
    }

    /// Completed churn cycles per second (churn mode only).
    pub fn connections_per_sec(&self) -> Option<f64> {
        (self.setup.mode.workload == Mode::Churn).then(|| self.counts.cycles as f64 / self.secs())
    }

    /// Elapsed seconds after the warm-up, never zero.
    pub fn secs(&self) -> f64 {
        let warmup = self.setup.warmup.unwrap_or_default();
        self.elapsed.saturating_sub(warmup).as_secs_f64().max(1e-9)
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.text_setup(&mut out);
        if self.setup.mode.udp() {
            self.udp_text(&mut out);
        } else {
            self.text_connections(&mut out);
            self.text_traffic(&mut out);
            self.text_errors(&mut out);
        }
        self.text_warmup(&mut out);
        self.text_stages(&mut out);
        let _ = match self.verdict() {
            None => writeln!(out, "result:       PASS"),
            Some(why) => writeln!(out, "result:       FAIL: {why}"),
        };
        for error in &self.output_errors {
            let _ = writeln!(
                out,
                "output:       NOT WRITTEN: {error} (exit status {EXIT_OUTPUT})"
            );
        }
        out
    }

    /// The first line: what was run against what.
    fn text_setup(&self, out: &mut String) {
        let s = &self.setup;
        let udp = s.mode.udp();
        let (unit, per, what, messages) = if udp {
            ("datagrams", "socket", "sockets", "datagrams")
        } else {
            ("msg", "connection", "connections", "messages")
        };
        let loop_kind = match s.rate {
            Some(r) => format!("open loop at {r} {unit}/s per {per}"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "echoloop-stress: {} mode against {}, {} {what}, {} B {messages}, pipeline {}, {}, {} thread(s){}{}",
            s.mode.name(),
            s.addr,
            group(s.connections),
            group(s.message_size),
            s.pipeline,
            loop_kind,
            s.threads,
            if self.merged_runs > 1 {
                format!(", {} runs merged", self.merged_runs)
            } else {
                String::new()
            },
            if self.interrupted { " (interrupted by Ctrl-C)" } else { "" },
        );
    }

    /// How the connections went: connects, and how they closed.
    fn text_connections(&self, out: &mut String) {
        let c = &self.counts;
        let _ = writeln!(
            out,
            "connections:  {} attempted, {} established, {} failed ({}), {} still connecting \
             when the run ended, {} never attempted",
            group(c.attempted),
            group(c.established),
            group(c.failed_total()),
            failed_by_reason(c),
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
    }

    /// Messages, latencies and what each mode adds.
    fn text_traffic(&self, out: &mut String) {
        let c = &self.counts;
        let _ = writeln!(
            out,
            "messages:     {} in {:.3} s = {} msg/s, {:.2} MiB/s echoed",
            group(c.messages),
            self.secs(),
            group(self.msgs_per_sec().round() as u64),
            self.mib_per_sec(),
        );
        for (label, series) in [
            ("latency:     ", Series::Rtt),
            ("uncorrected: ", Series::RttUncorrected),
            ("connect time:", Series::Connect),
            ("first byte:  ", Series::FirstByte),
        ] {
            if !self.setup.series().contains(&series) {
                continue;
            }
            let h = self.rec.get(series);
            let _ = writeln!(out, "{label} {}", percentiles_text(h, &self.percentiles));
        }
        if let Some(rate) = self.connections_per_sec() {
            let _ = writeln!(
                out,
                "churn:        {} connect-echo-close cycles = {} connections/s",
                group(c.cycles),
                group(rate.round() as u64)
            );
        }
        if self.setup.mode.workload == Mode::Idle {
            let _ = writeln!(
                out,
                "idle:         {} held to the end, {} of them verified by a final echo",
                group(c.idle_held),
                group(c.idle_survived)
            );
        }
    }

    /// `--warmup`: what it did, apart from the figures above.
    fn text_warmup(&self, out: &mut String) {
        let (Some(secs), Some(w)) = (self.setup.warmup, self.warmup) else {
            return;
        };
        let _ = writeln!(
            out,
            "warm-up:      {:.3} s before the figures above: {} {} echoed and verified \
             ({:.2} MiB), {} error(s) (counted above too)",
            secs.as_secs_f64(),
            group(w.messages),
            if self.setup.mode.udp() {
                "datagrams"
            } else {
                "messages"
            },
            w.bytes as f64 / MIB,
            group(w.errors),
        );
    }

    /// `--stages`: a line per stage.
    fn text_stages(&self, out: &mut String) {
        for (n, s) in self.stages.iter().enumerate() {
            let _ = writeln!(
                out,
                "stage {:<7}{:.3} s, {} -> {} connections: {} messages = {} msg/s, latency {}",
                format!("{}:", n + 1),
                s.stage.length.as_secs_f64(),
                group(s.from),
                group(s.stage.target),
                group(s.messages),
                group(s.msgs_per_sec().round() as u64),
                percentiles_text(&s.rtt, &self.percentiles),
            );
        }
    }

    /// What a failure of this run means and what to do, if it says so
    /// plainly enough: connects failing for want of a local port.
    pub fn advice(&self) -> Option<String> {
        let short = self.counts.failed[FailReason::AddrNotAvailable.index()];
        (short > 0 && !self.setup.mode.udp()).then(|| {
            format!(
                "ephemeral ports exhausted (TIME_WAIT): {} connect(s) found no free local \
                 port; spread the connections over more source addresses with --source-addrs \
                 (e.g. 127.0.0.1-127.0.0.32 against a loopback server)",
                group(short)
            )
        })
    }

    /// Verification, and the first error of each kind.
    fn text_errors(&self, out: &mut String) {
        let c = &self.counts;
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
        let failed = FailReason::ALL
            .iter()
            .map(|r| (r.name(), &self.samples.failed[r.index()]));
        let others = [
            ("unexpected close", &self.samples.unexpected),
            ("stalled", &self.samples.stalled),
            ("unfinished", &self.samples.unfinished),
            ("verification", &self.samples.verification),
        ];
        for (name, m) in failed.chain(others) {
            if let Some(m) = m {
                let _ = writeln!(out, "first error:  {name}: {m}");
            }
        }
        if let Some(advice) = self.advice() {
            let _ = writeln!(out, "ports:        {advice}");
        }
    }
}

/// The label of percentile `p`: `p50`, `p99_9`, `p99_99` (JSON keys; the
/// text shows `p99.9`).
pub fn percentile_key(p: f64) -> String {
    format!("p{p}").replace('.', "_")
}

/// The value at percentile `p` (0–100] of `h`.
pub fn at_percentile(h: &Histogram<u64>, p: f64) -> u64 {
    h.value_at_quantile(p / 100.0)
}

/// `p50 12.3 us  p90 …  max …` or `-` with no samples.
pub fn percentiles_text(h: &Histogram<u64>, percentiles: &[f64]) -> String {
    if h.is_empty() {
        return "- (no samples)".to_string();
    }
    let mut out = String::new();
    for &p in percentiles {
        let _ = write!(out, "p{p} {:.1} us  ", us(at_percentile(h, p)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Transport;

    /// A finished run of `mode` with `counts`, one second long.
    fn report(mode: Kind, counts: Counts) -> Report {
        Report {
            setup: Setup {
                mode,
                addr: "127.0.0.1:7".into(),
                connections: 1,
                message_size: 1,
                pipeline: 1,
                threads: 1,
                rate: None,
                messages: None,
                duration: None,
                max_failures: 0,
                fd_limit: None,
                max_loss: mode.udp().then_some(0.0),
                warmup: None,
                stages: None,
            },
            counts,
            samples: Samples::default(),
            rec: Recorder::new(),
            percentiles: vec![50.0],
            elapsed: Duration::from_secs(1),
            started_unix: 0.0,
            interrupted: false,
            merged_runs: 1,
            warmup: None,
            stages: Vec::new(),
            output_errors: Vec::new(),
        }
    }

    /// Every count in the list reaches the text report of some mode (a
    /// count added to the list and forgotten in the text fails here), and
    /// the JSON report under its own name; `bytes` is shown as MiB/s.
    #[test]
    fn every_count_reaches_the_reports() {
        let mut counts = Counts::default();
        let mut next = 1_000_003;
        let mut names = Vec::new();
        counts.each_count(&mut |name, value| {
            *value = next;
            names.push((name, next));
            next += 7_919;
        });
        let kind = |transport, workload| Kind {
            transport,
            workload,
        };
        let modes = [
            kind(Transport::Tcp, Mode::Load),
            kind(Transport::Tcp, Mode::Idle),
            kind(Transport::Tcp, Mode::Churn),
            kind(Transport::Udp, Mode::Load),
        ];
        let reports: Vec<Report> = modes.map(|m| report(m, counts.clone())).into();
        let texts: Vec<String> = reports.iter().map(Report::text).collect();
        let json = reports[3].json();
        for (name, value) in names {
            let shown = texts.iter().any(|t| t.contains(&group(value)));
            // Shown as MiB/s, and the jitter's sum as the mean it makes.
            assert!(
                shown || ["bytes", "jitter_sum_ns", "jitter_max_socket_ns"].contains(&name),
                "{name} ({value}) in no text report"
            );
            assert!(json.contains(&value.to_string()), "{name} not in the JSON");
        }
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_key(50.0), "p50");
        assert_eq!(percentile_key(99.9), "p99_9");
        assert_eq!(percentile_key(99.99), "p99_99");
    }

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
