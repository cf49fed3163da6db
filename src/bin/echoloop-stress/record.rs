//! What is timed, series by series, and the run's timeline: one set of
//! histograms per `--interval`, gathered from every loop, handed to the
//! interval log and the plot once every loop has moved past it.
//!
//! A loop records into its own [`Recorder`] and, every publish tick and at
//! each interval boundary, adds it into the shared [`Timeline`] under the
//! interval it belongs to (and into the run's total) and starts afresh: so
//! a loop's recorder only ever holds one interval, and no value is
//! recorded twice.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;

use crate::keyed::keyed_array;

/// Latencies are recorded in nanoseconds, from 1 ns up to an hour, to three
/// significant digits (0.1 % resolution): a 13.2 µs loopback round trip and
/// a 3-second stall fit the same histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// A latency series: what it measures, and its tag in the interval log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Round trip of each message, from its scheduled send time in the
    /// open loop (coordinated omission corrected), else from its send.
    Rtt,
    /// Open loop only: round trip from the message's actual send.
    RttUncorrected,
    /// `connect` to established, per connection.
    Connect,
    /// Established to the first echoed byte, per connection (idle mode:
    /// from the end of the hold).
    FirstByte,
}

impl Series {
    /// Every series, in report order.
    pub const ALL: [Series; 4] = [
        Series::Rtt,
        Series::RttUncorrected,
        Series::Connect,
        Series::FirstByte,
    ];

    /// Position in [`Series::ALL`] and in a [`Recorder`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tag in the interval log and the key in the JSON `histograms`.
    pub fn tag(self) -> &'static str {
        match self {
            Series::Rtt => "rtt",
            Series::RttUncorrected => "rtt-uncorrected",
            Series::Connect => "connect",
            Series::FirstByte => "first-byte",
        }
    }
}

keyed_array!(
    /// One value per latency series, by [`Series::index`]; in JSON an
    /// object keyed by [`Series::tag`].
    PerSeries,
    Series,
    tag
);

/// One histogram per series (nanoseconds).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// By [`Series::index`].
    pub hists: PerSeries<Histogram<u64>>,
    /// `--udp`: the sum of the RFC 3550 jitter estimates (ns) of the
    /// arrivals in it, over every socket (`udp/jitter.rs`): with
    /// `jitter_samples`, the interval's combined jitter for the plot.
    pub jitter_sum_ns: u64,
    /// `--udp`: how many arrivals moved a jitter estimate.
    pub jitter_samples: u64,
}

impl Recorder {
    /// Empty histograms.
    pub fn new() -> Self {
        Recorder {
            hists: PerSeries(std::array::from_fn(|_| new_histogram())),
            jitter_sum_ns: 0,
            jitter_samples: 0,
        }
    }

    /// Records `ns` (at least 1) in `series`.
    pub fn record(&mut self, series: Series, ns: u64) {
        self.hists[series.index()].saturating_record(ns.max(1));
    }

    /// The histogram of `series`.
    pub fn get(&self, series: Series) -> &Histogram<u64> {
        &self.hists[series.index()]
    }

    /// Adds `other` into these histograms (same bounds: cannot fail).
    pub fn add(&mut self, other: &Recorder) {
        for (mine, theirs) in self.hists.iter_mut().zip(other.hists.iter()) {
            let _ = mine.add(theirs);
        }
        self.jitter_sum_ns = self.jitter_sum_ns.saturating_add(other.jitter_sum_ns);
        self.jitter_samples += other.jitter_samples;
    }

    /// `--udp`: an arrival moved a socket's jitter estimate to `ns`.
    pub fn jitter(&mut self, ns: u64) {
        self.jitter_sum_ns = self.jitter_sum_ns.saturating_add(ns);
        self.jitter_samples += 1;
    }

    /// `--udp`: the combined jitter (ns) of what was recorded; `None`
    /// without a sample.
    pub fn jitter_ns(&self) -> Option<f64> {
        (self.jitter_samples > 0).then(|| self.jitter_sum_ns as f64 / self.jitter_samples as f64)
    }

    /// Whether nothing was recorded in any series.
    pub fn is_empty(&self) -> bool {
        self.hists.iter().all(Histogram::is_empty) && self.jitter_samples == 0
    }

    /// Empties every series.
    pub fn reset(&mut self) {
        for h in self.hists.iter_mut() {
            h.reset();
        }
        self.jitter_sum_ns = 0;
        self.jitter_samples = 0;
    }
}

/// Every loop's recordings, by interval, until each interval is complete.
#[derive(Debug)]
pub struct Timeline {
    /// The whole run so far: the status line's p99 and the final report.
    pub total: Recorder,
    /// Intervals some loop may still add to, by number (time / interval);
    /// kept only when [`Timeline::keep_intervals`] asks (an interval log or
    /// a plot): each costs a set of histograms until it is taken.
    pending: BTreeMap<u64, Recorder>,
    /// Whether the run wants its intervals (`--hlog`, `--plot`, `--html`).
    keep_intervals: bool,
    /// Per loop: the interval it records into now; `u64::MAX` once it ended.
    progress: Vec<u64>,
    /// `--stages`: the round trips of each stage (empty without).
    pub stages: Vec<Histogram<u64>>,
}

impl Timeline {
    /// Nothing recorded, for `loops` loops.
    pub fn new(loops: usize) -> Self {
        Timeline {
            total: Recorder::new(),
            pending: BTreeMap::new(),
            keep_intervals: true,
            progress: vec![0; loops],
            stages: Vec::new(),
        }
    }

    /// `--stages`: keeps the round trips of each of `count` stages apart.
    pub fn keep_stages(&mut self, count: usize) {
        self.stages = (0..count).map(|_| new_histogram()).collect();
    }

    /// Whether to keep each interval for [`Timeline::take_complete`]
    /// (`true` at first); without, only the total is kept.
    pub fn keep_intervals(&mut self, keep: bool) {
        self.keep_intervals = keep;
    }

    /// Adds loop `id`'s recordings of interval `interval` and stage
    /// `stage` (and empties them); the loop now records into interval
    /// `next` (`u64::MAX`: it ended).
    pub fn publish(&mut self, id: usize, at: (u64, usize), rec: &mut Recorder, next: u64) {
        let (interval, stage) = at;
        if !rec.is_empty() {
            self.total.add(rec);
            if let Some(h) = self.stages.get_mut(stage) {
                let _ = h.add(rec.get(Series::Rtt));
            }
            if self.keep_intervals {
                self.pending
                    .entry(interval)
                    .or_insert_with(Recorder::new)
                    .add(rec);
            }
            rec.reset();
        }
        self.progress[id] = next;
    }

    /// Removes and returns the intervals no loop can add to any more, in
    /// order; with `all`, every interval (the run is over).
    pub fn take_complete(&mut self, all: bool) -> Vec<(u64, Recorder)> {
        let done_below = if all {
            u64::MAX
        } else {
            self.progress.iter().copied().min().unwrap_or(u64::MAX)
        };
        let keep = self.pending.split_off(&done_below);
        std::mem::replace(&mut self.pending, keep)
            .into_iter()
            .collect()
    }
}

/// One loop's side of the timeline: what it timed since it last published,
/// the interval that is, and when it publishes for the status line next.
/// Both kinds of loop (TCP and UDP) keep one.
#[derive(Debug)]
pub struct LoopRecording {
    /// This loop's number in the [`Timeline`].
    id: usize,
    /// `--interval`, in ns.
    interval_ns: u64,
    /// When the measurement starts (`--warmup`; 0 without), in ns since
    /// the epoch: intervals are numbered from it, and what is timed before
    /// it is thrown away.
    origin: u64,
    /// Whether the warm-up is still on (nothing is published meanwhile).
    warming: bool,
    /// The interval ((time − origin) / `--interval`) being recorded into.
    interval: u64,
    /// When the status line's figures are next published (ns since the
    /// epoch): every `publish_every` ns.
    next_publish: u64,
    /// How often to publish for the status line.
    publish_every: u64,
    /// What was timed since the last publish, all in `interval`.
    rec: Recorder,
    /// `--stages`: the stage being recorded into (0 without).
    stage: usize,
}

impl LoopRecording {
    /// Nothing recorded yet, for loop `id`, measuring from `origin`.
    pub fn new(id: usize, interval_ns: u64, publish_every: u64, origin: u64) -> Self {
        LoopRecording {
            id,
            interval_ns: interval_ns.max(1),
            origin,
            warming: origin > 0,
            interval: 0,
            next_publish: publish_every,
            publish_every,
            rec: Recorder::new(),
            stage: 0,
        }
    }

    /// Records `ns` in `series`.
    pub fn record(&mut self, series: Series, ns: u64) {
        self.rec.record(series, ns);
    }

    /// `--udp`: an arrival moved a socket's jitter estimate to `ns`.
    pub fn jitter(&mut self, ns: u64) {
        self.rec.jitter(ns);
    }

    /// Publishes what is due at `now`: the past interval at an interval
    /// boundary, and the interval so far at the publish tick. During the
    /// warm-up nothing; at its end, what was timed in it is thrown away:
    /// returns `true` then (once).
    pub fn tick(&mut self, now: u64, timeline: &Mutex<Timeline>) -> bool {
        if self.warming {
            if now < self.origin {
                return false;
            }
            self.warming = false;
            self.rec.reset();
            self.next_publish = now + self.publish_every;
            return true;
        }
        let current = (now - self.origin) / self.interval_ns;
        if current != self.interval {
            self.publish(timeline, current);
            self.interval = current;
        }
        if now >= self.next_publish {
            self.publish(timeline, self.interval);
            self.next_publish = now + self.publish_every;
        }
        false
    }

    /// `--stages`: publishes what belongs to the stage that ended; what
    /// is timed from now on belongs to `stage`.
    pub fn begin_stage(&mut self, stage: usize, timeline: &Mutex<Timeline>) {
        self.publish(timeline, self.interval);
        self.stage = stage;
    }

    /// Publishes the rest (nothing if the warm-up is still on): this loop
    /// records no more.
    pub fn finish(&mut self, timeline: &Mutex<Timeline>) {
        if self.warming {
            self.rec.reset();
        }
        self.publish(timeline, u64::MAX);
    }

    /// When [`LoopRecording::tick`] next has something to do.
    pub fn next_due(&self) -> u64 {
        if self.warming {
            return self.origin;
        }
        let next_interval = self.interval.saturating_add(1);
        self.next_publish.min(
            next_interval
                .saturating_mul(self.interval_ns)
                .saturating_add(self.origin),
        )
    }

    /// Adds what was recorded since the last call to the timeline, under
    /// the current interval; from now on records go into interval `next`.
    fn publish(&mut self, timeline: &Mutex<Timeline>, next: u64) {
        let mut timeline = timeline.lock().unwrap_or_else(PoisonError::into_inner);
        timeline.publish(self.id, (self.interval, self.stage), &mut self.rec, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without an interval log or a plot the timeline keeps the total
    /// only: no interval's histograms wait to be taken.
    #[test]
    fn intervals_are_kept_only_when_asked() {
        for keep in [true, false] {
            let mut timeline = Timeline::new(1);
            timeline.keep_intervals(keep);
            let mut rec = Recorder::new();
            for interval in 0..3 {
                rec.record(Series::Rtt, 1_000);
                timeline.publish(0, (interval, 0), &mut rec, interval + 1);
            }
            assert_eq!(timeline.total.get(Series::Rtt).len(), 3);
            assert_eq!(timeline.take_complete(true).len(), if keep { 3 } else { 0 });
        }
    }
}
