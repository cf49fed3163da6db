//! The run over time: each complete interval of the timeline becomes one
//! histogram per series in the interval log (`--hlog`) and one point of the
//! plot (`--plot`, and the `--html` page's).

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
    /// Round trip at each of [`LATENCY_LINES`] in µs; `None` with no echo.
    pub latency: Option<[f64; LATENCY_LINES.len()]>,
    /// Open loop: the uncorrected round trip's p99 in µs.
    pub uncorrected_p99: Option<f64>,
    /// `--udp`: the combined RFC 3550 jitter of the arrivals in it, µs
    /// (`udp/jitter.rs`); `None` without a sample.
    pub jitter: Option<f64>,
}

/// Most points a plot keeps (even, so that they join in pairs): more than
/// its 1,000 pixels show, and a bound on the memory of a long run with a
/// short `--interval`.
pub const MAX_POINTS: usize = 10_000;

impl Point {
    /// Makes this point cover `next` (the interval after it) as well: the
    /// messages of both, the worse of each latency (a plot of a long run
    /// must still show its worst moments).
    fn join(&mut self, next: Point) {
        let worse = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.secs = next.start + next.secs - self.start;
        self.messages += next.messages;
        self.latency = match (self.latency, next.latency) {
            (Some(a), Some(b)) => Some(std::array::from_fn(|i| a[i].max(b[i]))),
            (a, b) => a.or(b),
        };
        self.uncorrected_p99 = worse(self.uncorrected_p99, next.uncorrected_p99);
        self.jitter = worse(self.jitter, next.jitter);
    }
}

/// The latency lines of the plot: name, and quantile (`None`: the max).
pub const LATENCY_LINES: [(&str, Option<f64>); 4] = [
    ("p50", Some(0.5)),
    ("p99", Some(0.99)),
    ("p99.9", Some(0.999)),
    ("max", None),
];

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
    /// Every interval so far, for the plot (none without one); at most
    /// [`MAX_POINTS`], each `join` intervals long.
    pub points: Vec<Point>,
    /// Whether to keep points (`--plot`).
    plot: bool,
    /// How many intervals one point holds: doubles each time the points
    /// reach [`MAX_POINTS`].
    join: u64,
    /// How many intervals the last point holds so far.
    filled: u64,
    /// The first interval log write error (logging stops there).
    pub failed: Option<String>,
}

impl Intervals {
    /// Nothing emitted yet; `plot`: keep the points for a plot.
    pub fn new(interval_ns: u64, series: Vec<Series>, plot: bool) -> Self {
        Intervals {
            interval_ns,
            series,
            next: 0,
            empty: Recorder::new(),
            points: Vec::new(),
            plot,
            join: 1,
            filled: 0,
            failed: None,
        }
    }

    /// Keeps `point` for the plot: as a point of its own, or joined into
    /// the last one once the run has outgrown [`MAX_POINTS`] (then every
    /// pair of points becomes one, and points hold twice the intervals).
    fn keep(&mut self, point: Point) {
        if !self.plot {
            return;
        }
        match self.points.last_mut() {
            Some(last) if self.filled < self.join => {
                last.join(point);
                self.filled += 1;
            }
            _ => {
                self.points.push(point);
                self.filled = 1;
            }
        }
        if self.points.len() == MAX_POINTS && self.filled == self.join {
            let pairs = std::mem::take(&mut self.points);
            for pair in pairs.chunks(2) {
                let mut joined = pair[0];
                joined.join(pair[1]);
                self.points.push(joined);
            }
            self.join *= 2;
            self.filled = self.join;
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
        self.keep(Point {
            start: start as f64 / 1e9,
            secs: length as f64 / 1e9,
            messages: rtt.len(),
            latency: (!rtt.is_empty()).then(|| {
                LATENCY_LINES.map(|(_, q)| us(q.map_or(rtt.max(), |q| rtt.value_at_quantile(q))))
            }),
            uncorrected_p99: (!uncorrected.is_empty())
                .then(|| us(uncorrected.value_at_quantile(0.99))),
            jitter: rec.jitter_ns().map(|ns| ns / 1000.0),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One interval's point: one message, `latency` µs at every percentile.
    fn point(number: u64, latency: f64) -> Point {
        Point {
            start: number as f64,
            secs: 1.0,
            messages: 1,
            latency: Some([latency; LATENCY_LINES.len()]),
            uncorrected_p99: None,
            jitter: None,
        }
    }

    /// A run longer than the plot holds keeps at most `MAX_POINTS` points,
    /// covering the whole run without a gap, every message counted, and a
    /// spike in one interval still seen; without a plot, none are kept.
    #[test]
    fn points_stay_bounded_and_keep_the_worst() {
        let intervals = 3 * MAX_POINTS as u64 + 7;
        let mut plot = Intervals::new(1, vec![Series::Rtt], true);
        for n in 0..intervals {
            plot.keep(point(n, if n == 12_345 { 9e6 } else { 10.0 }));
        }
        let points = &plot.points;
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        assert_eq!(points.iter().map(|p| p.messages).sum::<u64>(), intervals);
        for pair in points.windows(2) {
            assert_eq!(pair[0].start + pair[0].secs, pair[1].start);
        }
        let last = points.last().expect("points");
        assert_eq!(last.start + last.secs, intervals as f64);
        let worst = points.iter().filter_map(|p| p.latency).map(|l| l[1]);
        assert_eq!(worst.fold(0.0, f64::max), 9e6);

        let mut none = Intervals::new(1, vec![Series::Rtt], false);
        none.keep(point(0, 1.0));
        assert!(none.points.is_empty());
    }
}
