//! `echoloop-stress merge A.json B.json …`: the one exact result of runs made
//! at the same time by several processes or machines. Counts, bytes and
//! failures are summed; histograms are added (never percentiles averaged),
//! so every percentile of the merged report is that of all the messages;
//! throughput is over the wall-clock window from the first run's start to
//! the last one's end.
//!
//! Only like runs add up: the settings that decide what a count means
//! (mode, message size, pipeline, rate, duration, `--max-loss`) must be the
//! same in every report, and a run may be given only once. Every number
//! read is checked (times in range, sums that fit in 64 bits), so a report
//! edited by hand or by a broken tool is refused, naming the file and the
//! field, never added up wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::MergeArgs;
use crate::counts::{Counts, Samples};
use crate::json::{decode, decode_all, JsonReport};
use crate::record::{Recorder, Series};
use crate::report::{Report, Setup, StageFigures, Warmup};
use crate::run::EXIT_SETUP;
use crate::stages::{Stage, Stages};

/// Runs `merge`; returns the exit status (the merged verdict's, or 2 when
/// a report cannot be read or the runs do not belong together).
pub fn run(args: &MergeArgs) -> i32 {
    match merge(&args.reports, &args.percentiles.0) {
        Ok(report) => {
            let text = if args.json {
                report.json()
            } else {
                report.text()
            };
            if !crate::output::to_stdout("echoloop-stress", format!("{text}\n").as_bytes()) {
                return EXIT_SETUP;
            }
            report.exit_code()
        }
        Err(message) => {
            eprintln!("echoloop-stress: merge: {message}");
            EXIT_SETUP
        }
    }
}

/// One report read back, with its histograms decoded (also what `chart
/// --percentiles` draws).
pub struct Run {
    /// The file it came from.
    pub path: PathBuf,
    /// The report as written.
    pub json: JsonReport,
    /// Its counts.
    counts: Counts,
    /// Its histograms.
    pub rec: Recorder,
}

/// The latest Unix time a report may carry: the year 2500 (as `--start-at`).
const LAST_UNIX_TIME: f64 = 16_725_225_600.0;

/// Reads `path` as an `echoloop-stress --json` report; the error names the
/// file and where it broke.
pub fn read(path: &Path) -> Result<Run, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: read: {e}"))?;
    let json: JsonReport = serde_json::from_str(&text)
        .map_err(|e| format!("{name}: not a complete echoloop-stress --json report: {e}"))?;
    check_values(&json).map_err(|e| format!("{name}: {e}"))?;
    let rec = decode_all(&json.histograms).map_err(|e| format!("{name}: {e}"))?;
    let counts = counts_of(&json);
    counts
        .checked_failures(json.mode.workload)
        .ok_or_else(|| format!("{name}: failures: {TOO_BIG}"))?;
    Ok(Run {
        path: path.to_path_buf(),
        json,
        counts,
        rec,
    })
}

/// What a sum too big for a count is called.
const TOO_BIG: &str = "the sum exceeds 2^64-1, which no run counts to";

/// Refuses the values no run writes: times outside 1970 to 2500 or ending
/// before they begin, durations beyond a year, rates and percentages out
/// of their range. The error names the field.
fn check_values(j: &JsonReport) -> Result<(), String> {
    for (field, t) in [
        ("started_unix", j.started_unix),
        ("ended_unix", j.ended_unix),
    ] {
        if !(0.0..=LAST_UNIX_TIME).contains(&t) {
            return Err(format!(
                "{field} {t}: not a Unix time from 1970 up to the year 2500"
            ));
        }
    }
    if j.ended_unix < j.started_unix {
        return Err(format!(
            "ended_unix {} is before started_unix {}",
            j.ended_unix, j.started_unix
        ));
    }
    if let Some(d) = j.duration_secs {
        if !(0.0..=echoloop::units::MAX_DURATION.as_secs_f64()).contains(&d) {
            return Err(format!("duration_secs {d}: not from 0 up to a year"));
        }
    }
    if let Some(w) = j.warmup_secs {
        if !(0.0..=echoloop::units::MAX_DURATION.as_secs_f64()).contains(&w) {
            return Err(format!("warmup_secs {w}: not from 0 up to a year"));
        }
    }
    for s in j.stages.iter().flatten() {
        if !(0.001..=echoloop::units::MAX_DURATION.as_secs_f64()).contains(&s.secs) {
            return Err(format!(
                "stages: secs {}: not from 1 ms up to a year",
                s.secs
            ));
        }
    }
    if let Some(r) = j.rate_per_connection {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("rate_per_connection {r}: not a rate above 0"));
        }
    }
    if let Some(u) = &j.udp {
        if !(0.0..=100.0).contains(&u.max_loss_percent) {
            return Err(format!(
                "max_loss_percent {}: not a percentage from 0 to 100",
                u.max_loss_percent
            ));
        }
    }
    Ok(())
}

/// The settings that decide what a run's counts mean, as the flags that
/// set them: runs merge only if these are the same.
fn settings(j: &JsonReport) -> Vec<String> {
    vec![
        if j.mode.udp() {
            "--udp".to_string()
        } else {
            format!("--mode {}", j.mode.name())
        },
        format!("--message-size {}", j.message_size),
        format!("--pipeline {}", j.pipeline),
        j.rate_per_connection.map_or_else(
            || "a closed loop (no --rate)".into(),
            |r| format!("--rate {r}"),
        ),
        j.duration_secs
            .map_or_else(|| "no --duration".into(), |d| format!("--duration {d}")),
        j.warmup_secs
            .map_or_else(|| "no --warmup".into(), |w| format!("--warmup {w}")),
        j.stages.as_ref().map_or_else(
            || "no --stages".into(),
            |list| {
                let each: Vec<String> = list
                    .iter()
                    .map(|s| format!("{}s:{}", s.secs, s.connections_to))
                    .collect();
                format!("--stages {}", each.join(","))
            },
        ),
        j.udp.as_ref().map_or_else(String::new, |u| {
            format!("--max-loss {}", u.max_loss_percent)
        }),
    ]
}

/// Refuses to merge runs that measured different things, naming the
/// difference, and a run given twice.
fn check_alike(first: &Run, other: &Run) -> Result<(), String> {
    let (a, b) = (first.path.display(), other.path.display());
    for (mine, theirs) in settings(&first.json).into_iter().zip(settings(&other.json)) {
        if mine != theirs {
            return Err(format!(
                "{b} ran {theirs}, but {a} ran {mine}: runs that measured different things \
                 cannot be merged"
            ));
        }
    }
    let same_run = first.json.started_unix == other.json.started_unix
        && first.json.ended_unix == other.json.ended_unix
        && first.counts == other.counts
        && first.json.histograms == other.json.histograms;
    if same_run {
        return Err(format!(
            "{b} is the same run as {a} (same start, counts and histograms): a run counted \
             twice would double its figures"
        ));
    }
    Ok(())
}

/// Merges the reports at `paths`.
pub fn merge(paths: &[PathBuf], percentiles: &[f64]) -> Result<Report, String> {
    let runs = paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<Run>, String>>()?;
    for (i, run) in runs.iter().enumerate() {
        for earlier in &runs[..i] {
            check_alike(earlier, run)?;
        }
    }
    let mut counts = Counts::default();
    let mut samples = Samples::default();
    let mut rec = Recorder::new();
    for run in &runs {
        let name = run.path.display();
        counts
            .checked_add(&run.counts)
            .map_err(|field| format!("{name}: {field}: {TOO_BIG}"))?;
        counts
            .checked_failures(run.json.mode.workload)
            .ok_or_else(|| format!("{name}: failures: {TOO_BIG}"))?;
        for series in Series::ALL {
            rec.get(series)
                .len()
                .checked_add(run.rec.get(series).len())
                .ok_or_else(|| format!("{name}: histograms.{}: {TOO_BIG}", series.tag()))?;
        }
        samples.add(&samples_of(&run.json));
        rec.add(&run.rec);
    }
    let started = runs
        .iter()
        .map(|r| r.json.started_unix)
        .fold(f64::MAX, f64::min);
    let ended = runs.iter().map(|r| r.json.ended_unix).fold(0.0, f64::max);
    Ok(Report {
        setup: setup_of(&runs)?,
        counts,
        samples,
        rec,
        percentiles: percentiles.to_vec(),
        // Both times were checked to lie within 1970 to 2500.
        elapsed: Duration::from_secs_f64((ended - started).max(0.0)),
        started_unix: started,
        interrupted: runs.iter().any(|r| r.json.interrupted),
        merged_runs: sum(&runs, "merged_runs", |j| Some(j.merged_runs.max(1)))?.unwrap_or(0),
        warmup: warmup_of(&runs)?,
        stages: stages_of(&runs)?,
        output_errors: Vec::new(),
    })
}

/// The sum of `field` over the runs (`None` if any run has none); the
/// error names the file whose value made it too big.
fn sum(
    runs: &[Run],
    field: &str,
    value: impl Fn(&JsonReport) -> Option<u64>,
) -> Result<Option<u64>, String> {
    let mut total = Some(0u64);
    for run in runs {
        total = match (total, value(&run.json)) {
            (Some(t), Some(v)) => Some(
                t.checked_add(v)
                    .ok_or_else(|| format!("{}: {field}: {TOO_BIG}", run.path.display()))?,
            ),
            _ => None,
        };
    }
    Ok(total)
}

/// The merged settings: sums where the runs add up (connections, loops,
/// messages asked for, failures tolerated), the common value otherwise
/// (the runs were checked alike).
fn setup_of(runs: &[Run]) -> Result<Setup, String> {
    let first = &runs[0].json;
    let mut addrs: Vec<&str> = Vec::new();
    for r in runs {
        if !addrs.contains(&r.json.addr.as_str()) {
            addrs.push(&r.json.addr);
        }
    }
    let total = |field: &str, f: fn(&JsonReport) -> u64| {
        sum(runs, field, |j| Some(f(j))).map(|s| s.unwrap_or(0))
    };
    Ok(Setup {
        mode: first.mode,
        addr: addrs.join(", "),
        connections: total("connections", |j| j.connections)?,
        message_size: first.message_size,
        pipeline: first.pipeline,
        threads: total("threads", |j| j.threads)?,
        rate: first.rate_per_connection,
        messages: sum(runs, "messages_requested", |j| j.messages_requested)?,
        // Checked to lie within a year.
        duration: first.duration_secs.map(Duration::from_secs_f64),
        max_failures: total("max_failures", |j| j.max_failures)?,
        fd_limit: runs.iter().filter_map(|r| r.json.fd_limit).min(),
        max_loss: first.udp.as_ref().map(|u| u.max_loss_percent),
        // Checked alike; bounded like duration_secs.
        warmup: first.warmup_secs.map(Duration::from_secs_f64),
        stages: first.stages.as_ref().map(|list| {
            Stages(
                list.iter()
                    .map(|s| Stage {
                        length: Duration::from_secs_f64(s.secs),
                        target: s.connections_to,
                    })
                    .collect(),
            )
        }),
    })
}

/// The counts a report carries, the datagram counts of a UDP one included.
fn counts_of(j: &JsonReport) -> Counts {
    let mut counts = j.counts.clone();
    counts.udp = j.udp.as_ref().map(|u| u.counts.clone()).unwrap_or_default();
    counts
}

/// The first errors a report carries.
fn samples_of(j: &JsonReport) -> Samples {
    let mut samples = j.samples.clone();
    samples.udp = j.udp.as_ref().map(|u| u.first.clone()).unwrap_or_default();
    samples
}

/// `--warmup`: the runs' warm-ups added up (the same length: checked
/// alike), or `None` without one.
fn warmup_of(runs: &[Run]) -> Result<Option<Warmup>, String> {
    if runs[0].json.warmup.is_none() {
        return Ok(None);
    }
    let field = |name: &str, f: fn(&Warmup) -> u64| {
        sum(runs, name, |j| Some(j.warmup.as_ref().map_or(0, f))).map(|s| s.unwrap_or(0))
    };
    Ok(Some(Warmup {
        messages: field("warmup.messages", |w| w.messages)?,
        bytes: field("warmup.bytes", |w| w.bytes)?,
        errors: field("warmup.errors", |w| w.errors)?,
    }))
}

/// `--stages`: each stage's messages and round trips added up over the
/// runs (which ran the same stages: checked alike).
fn stages_of(runs: &[Run]) -> Result<Vec<StageFigures>, String> {
    let Some(first) = &runs[0].json.stages else {
        return Ok(Vec::new());
    };
    let mut figures = Vec::new();
    for (n, stage) in first.iter().enumerate() {
        let mut total = StageFigures {
            stage: Stage {
                length: Duration::from_secs_f64(stage.secs),
                target: stage.connections_to,
            },
            from: stage.connections_from,
            messages: 0,
            rtt: crate::record::new_histogram(),
        };
        for run in runs {
            let name = run.path.display();
            let theirs = &run.json.stages.as_ref().expect("checked alike")[n];
            total.messages = total
                .messages
                .checked_add(theirs.messages)
                .ok_or_else(|| format!("{name}: stages.messages: {TOO_BIG}"))?;
            if let Some(text) = &theirs.histogram {
                let h = decode(text).map_err(|e| format!("{name}: stages.histogram: {e}"))?;
                total
                    .rtt
                    .add(&h)
                    .map_err(|e| format!("{name}: stages.histogram: {e:?}"))?;
            }
        }
        figures.push(total);
    }
    Ok(figures)
}
