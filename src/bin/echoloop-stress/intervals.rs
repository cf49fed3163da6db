//! The run over time: each complete interval of the timeline becomes one
//! histogram per series in the interval log (`--hlog`) and one point of the
//! plot (`--plot`).

use std::io::Write;
use std::sync::PoisonError;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriter, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::record::{Recorder, Series};
use crate::report::{us, Setup};
use crate::shared::Shared;

/// The interval log writer `--hlog` writes through.
pub type HlogWriter<'a, 'b, W> = IntervalLogWriter<'a, 'b, W, V2DeflateSerializer>;

/// One interval of the plot.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Start, seconds since the run began.
    pub start: f64,
    /// Length in seconds (the last one may be short).
    pub secs: f64,
    /// Messages echoed in it.
    pub messages: u64,
    /// Round trip p50, p99, p99.9 and max in µs; `None` with no echo.
    pub latency: Option<[f64; 4]>,
    /// Open loop: the uncorrected round trip's p99 in µs.
    pub uncorrected_p99: Option<f64>,
}

/// Turns the timeline's complete intervals into log lines and points.
#[derive(Debug)]
pub struct Intervals {
    /// `--interval` in ns.
    interval_ns: u64,
    /// The series this run records.
    series: Vec<Series>,
    /// The next interval number to emit (gaps are emitted empty).
    next: u64,
    /// An empty recorder, for intervals in which nothing happened.
    empty: Recorder,
    /// Every interval so far, for the plot.
    pub points: Vec<Point>,
    /// The first interval log write error (logging stops there).
    pub failed: Option<String>,
}

impl Intervals {
    /// Nothing emitted yet.
    pub fn new(interval_ns: u64, series: Vec<Series>) -> Self {
        Intervals {
            interval_ns,
            series,
            next: 0,
            empty: Recorder::new(),
            points: Vec::new(),
            failed: None,
        }
    }

    /// Emits the intervals every loop has moved past; with `end_ns` (the
    /// run is over, this long after its start), all of them, the last one
    /// cut short at the end.
    pub fn drain<W: Write>(
        &mut self,
        shared: &Shared,
        end_ns: Option<u64>,
        mut log: Option<&mut HlogWriter<'_, '_, W>>,
    ) {
        let complete = shared
            .timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_complete(end_ns.is_some());
        for (number, rec) in complete {
            while self.next < number {
                let empty = std::mem::replace(&mut self.empty, Recorder::new());
                self.emit(self.next, &empty, end_ns, log.as_deref_mut());
                self.empty = empty;
                self.next += 1;
            }
            self.emit(number, &rec, end_ns, log.as_deref_mut());
            self.next = number + 1;
        }
    }

    /// Emits interval `number` with what it recorded.
    fn emit<W: Write>(
        &mut self,
        number: u64,
        rec: &Recorder,
        end_ns: Option<u64>,
        log: Option<&mut HlogWriter<'_, '_, W>>,
    ) {
        let start = number.saturating_mul(self.interval_ns);
        let mut length = self.interval_ns;
        if let Some(end) = end_ns {
            length = length.min(end.saturating_sub(start)).max(1);
        }
        let rtt = rec.get(Series::Rtt);
        let uncorrected = rec.get(Series::RttUncorrected);
        self.points.push(Point {
            start: start as f64 / 1e9,
            secs: length as f64 / 1e9,
            messages: rtt.len(),
            latency: (!rtt.is_empty()).then(|| {
                let at = |q| us(rtt.value_at_quantile(q));
                [at(0.5), at(0.99), at(0.999), us(rtt.max())]
            }),
            uncorrected_p99: (!uncorrected.is_empty())
                .then(|| us(uncorrected.value_at_quantile(0.99))),
        });
        if let (Some(log), None) = (log, &self.failed) {
            for &series in &self.series {
                let written = log.write_histogram(
                    rec.get(series),
                    Duration::from_nanos(start),
                    Duration::from_nanos(length),
                    Tag::new(series.tag()),
                );
                if let Err(e) = written {
                    self.failed = Some(format!("write: {e:?}"));
                    break;
                }
            }
        }
    }
}

/// The comment lines at the head of an interval log: what wrote it and
/// with which settings.
pub fn hlog_comments(s: &Setup) -> Vec<String> {
    vec![
        format!(
            "[Logged with echoloop-stress {}]",
            env!("CARGO_PKG_VERSION")
        ),
        "[Histogram log format version 1.3]".to_string(),
        format!(
            "[{} mode against {}: {} connections, {} B messages, pipeline {}, {}]",
            s.mode.name(),
            s.addr,
            s.connections,
            s.message_size,
            s.pipeline,
            s.rate.map_or_else(
                || "closed loop".to_string(),
                |r| format!("open loop at {r} msg/s per connection")
            )
        ),
        if s.mode.udp() {
            "[Values in ns; tags: rtt (open loop: from the schedule), rtt-uncorrected \
             (open loop: from the actual send)]"
        } else {
            "[Values in ns; tags: rtt (open loop: from the schedule), rtt-uncorrected \
             (open loop: from the actual send), connect, first-byte]"
        }
        .to_string(),
    ]
}
