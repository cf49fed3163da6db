//! `--stages`: load that ramps. A run is a list of stages, each a length
//! and a number of connections to reach by its end (`10s:100,30s:1000,10s:0`:
//! from none to 100 in 10 s, on to 1,000 over 30 s, down to none in 10 s);
//! the count moves linearly within a stage, from where the stage before
//! ended (the first from 0).
//!
//! The count is of *active* connections: connection number `i` (over all
//! loops) carries traffic while `i` is below the count, so the load is the
//! first N of them. In the closed loop that is N connections each with its
//! pipeline in flight; in the open loop, N × `--rate` messages per second
//! (the total rate ramps with it). A TCP connection that falls out of the
//! count closes once its last echo is in, and a new one is made when the
//! count comes back up; a `--udp` socket stays open and sends nothing
//! until it is back in, its open-loop schedule then starting afresh. The
//! run's slots are the largest count of any stage.
//!
//! [`parse`] is a pure function of the flag's text (a fuzz target can call
//! it as is); [`Stages`] answers "how many at time t" and "which stage".

use std::time::Duration;

use echoloop::units::{Bounds, MAX_DURATION};

/// Most stages one `--stages` may list: the report has a line for each,
/// and the run keeps a round-trip histogram (about 0.5 MiB) for each.
pub const MAX_STAGES: usize = 32;

/// Most connections a stage may ask for (as `--connections` allows).
const MAX_TARGET: u64 = 10_000_000;

/// A stage's length: from 1 ms to a year, as every duration flag.
const LENGTH: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: MAX_DURATION,
};

/// One stage: how long, and how many connections by its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Its length.
    pub length: Duration,
    /// Active connections at its end.
    pub target: u64,
}

/// The stages of a run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages(pub Vec<Stage>);

/// Parses `LENGTH:CONNECTIONS[,LENGTH:CONNECTIONS…]`, each length in
/// seconds as every duration flag takes it (`10`, `10s`, `250ms`, `0.5`).
/// The error says which stage is wrong and why.
pub fn parse(text: &str) -> Result<Stages, String> {
    let mut stages = Vec::new();
    for (n, part) in text.split(',').enumerate() {
        let part = part.trim();
        let why = |e: String| format!("stage {} `{part}`: {e}", n + 1);
        let (length, target) = part
            .split_once(':')
            .ok_or_else(|| why("expected LENGTH:CONNECTIONS, e.g. 10s:100".into()))?;
        let length = LENGTH
            .parse(length)
            .map_err(|e| why(format!("length: {e}")))?;
        let target = Bounds {
            min: 0,
            max: MAX_TARGET,
        }
        .parse(target)
        .map_err(|e| why(format!("connections: {e}")))?;
        stages.push(Stage { length, target });
        if stages.len() > MAX_STAGES {
            return Err(format!("more than {MAX_STAGES} stages"));
        }
    }
    let stages = Stages(stages);
    if stages.max() == 0 {
        return Err("every stage asks for 0 connections: nothing would run".into());
    }
    stages
        .total()
        .ok_or_else(|| "the stages add up to more than a year".to_string())?;
    Ok(stages)
}

impl Stages {
    /// The largest count any stage reaches: the run's connection slots.
    pub fn max(&self) -> u64 {
        self.0.iter().map(|s| s.target).max().unwrap_or(0)
    }

    /// The run's length: all stages end to end (`None` past a year).
    pub fn total(&self) -> Option<Duration> {
        self.0.iter().try_fold(Duration::ZERO, |sum, s| {
            sum.checked_add(s.length).filter(|t| *t <= MAX_DURATION)
        })
    }

    /// Each stage's (start, end) in ns since the run began, and the
    /// count it starts from.
    pub fn spans(&self) -> impl Iterator<Item = (u64, u64, u64, &Stage)> {
        let mut start = 0u64;
        let mut from = 0u64;
        self.0.iter().map(move |stage| {
            let end = start.saturating_add(nanos(stage.length));
            let span = (start, end, from, stage);
            start = end;
            from = stage.target;
            span
        })
    }

    /// Which stage `at` (ns since the run began) falls in (past the end:
    /// the last).
    pub fn index_at(&self, at: u64) -> usize {
        self.spans()
            .position(|(_, end, _, _)| at < end)
            .unwrap_or(self.0.len().saturating_sub(1))
    }

    /// The active connections at `at` ns since the run began: linear
    /// within each stage, rounded to the nearest; past the end, the last
    /// target.
    pub fn target_at(&self, at: u64) -> u64 {
        for (start, end, from, stage) in self.spans() {
            if at < end {
                let (from, to) = (i128::from(from), i128::from(stage.target));
                let done = i128::from(at - start);
                let length = i128::from((end - start).max(1));
                // Rounded to the nearest (halves up), whichever way the
                // count moves: a stage reaches its count before its end.
                let twice = 2 * (from * length + (to - from) * done) + length;
                return twice.div_euclid(2 * length) as u64;
            }
        }
        self.0.last().map_or(0, |s| s.target)
    }
}

/// A duration in whole nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of `--help` parses to its three stages, and the count
    /// ramps linearly through them: up from 0, on up, down to 0.
    #[test]
    fn stages_ramp_linearly() {
        let stages = parse("10s:100,30s:1000, 10:0").expect("parse");
        assert_eq!(stages.0.len(), 3);
        assert_eq!(stages.max(), 1000);
        assert_eq!(stages.total(), Some(Duration::from_secs(50)));
        let s = 1_000_000_000;
        assert_eq!(stages.target_at(0), 0);
        assert_eq!(stages.target_at(5 * s), 50);
        assert_eq!(stages.target_at(10 * s), 100);
        assert_eq!(stages.target_at(25 * s), 550);
        assert_eq!(stages.target_at(45 * s), 500);
        assert_eq!(
            stages.target_at(45 * s + 1_000_000),
            500,
            "rounded to the nearest"
        );
        assert_eq!(stages.target_at(45 * s + 10_000_000), 499);
        assert_eq!(stages.target_at(s / 20), 1, "0.5 rounds up");
        assert_eq!(stages.target_at(60 * s), 0);
        assert_eq!(stages.index_at(9 * s), 0);
        assert_eq!(stages.index_at(10 * s), 1);
        assert_eq!(stages.index_at(99 * s), 2);
    }

    /// Bad syntax is refused naming the stage and what is wrong.
    #[test]
    fn bad_stages_are_refused() {
        for (text, says) in [
            ("", "stage 1"),
            ("10s", "LENGTH:CONNECTIONS"),
            ("10s:100,x:5", "stage 2 `x:5`: length"),
            ("10s:-1", "connections"),
            ("0s:10", "length"),
            ("1s:0,2s:0", "nothing would run"),
            ("1s:100000000", "at most"),
        ] {
            let why = parse(text).expect_err(text);
            assert!(why.contains(says), "{text}: {why}");
        }
    }
}
