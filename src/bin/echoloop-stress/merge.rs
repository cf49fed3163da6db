//! `echoloop-stress merge A.json B.json …`: the one exact result of runs made
//! at the same time by several processes or machines. Counts, bytes and
//! failures are summed; histograms are added (never percentiles averaged),
//! so every percentile of the merged report is that of all the messages;
//! throughput is over the wall-clock window from the first run's start to
//! the last one's end.

use std::path::Path;
use std::time::Duration;

use crate::cli::MergeArgs;
use crate::counts::{Counts, Samples, UdpCounts, UdpSamples};
use crate::json::{ByReason, JsonReport};
use crate::record::Recorder;
use crate::report::{Report, Setup};
use crate::run::EXIT_SETUP;

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

/// One report read back, with its histograms decoded.
struct Run {
    /// The report as written.
    json: JsonReport,
    /// Its histograms.
    rec: Recorder,
}

/// Reads `path` as an `echoloop-stress --json` report; the error names the
/// file and where it broke.
fn read(path: &Path) -> Result<Run, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: read: {e}"))?;
    let json: JsonReport = serde_json::from_str(&text)
        .map_err(|e| format!("{name}: not a complete echoloop-stress --json report: {e}"))?;
    let rec = json
        .histograms
        .decode()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Run { json, rec })
}

/// Refuses to merge runs that measured different things, naming the
/// difference.
fn check_alike(first: (&Path, &JsonReport), other: (&Path, &JsonReport)) -> Result<(), String> {
    let ((a, x), (b, y)) = (first, other);
    let differ = |what: String, mine: String, theirs: String| {
        Err(format!(
            "{} ran {what} {theirs}, but {} ran {what} {mine}: runs that measured different \
             things cannot be merged",
            b.display(),
            a.display()
        ))
    };
    if x.mode != y.mode {
        return differ("--mode".into(), x.mode.name().into(), y.mode.name().into());
    }
    if x.message_size != y.message_size {
        return differ(
            "--message-size".into(),
            x.message_size.to_string(),
            y.message_size.to_string(),
        );
    }
    if x.rate_per_connection.is_some() != y.rate_per_connection.is_some() {
        let how = |r: Option<f64>| r.map_or("closed loop".into(), |r| format!("--rate {r}"));
        return differ(
            "in".into(),
            how(x.rate_per_connection),
            how(y.rate_per_connection),
        );
    }
    Ok(())
}

/// Merges the reports at `paths`.
pub fn merge(paths: &[std::path::PathBuf], percentiles: &[f64]) -> Result<Report, String> {
    let runs = paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<Run>, String>>()?;
    for (path, run) in paths.iter().zip(&runs).skip(1) {
        check_alike((&paths[0], &runs[0].json), (path, &run.json))?;
    }
    let mut counts = Counts::default();
    let mut samples = Samples::default();
    let mut rec = Recorder::new();
    for run in &runs {
        counts.add(&counts_of(&run.json));
        samples.add(samples_of(&run.json));
        rec.add(&run.rec);
    }
    let started = runs
        .iter()
        .map(|r| r.json.started_unix)
        .fold(f64::MAX, f64::min);
    let ended = runs
        .iter()
        .map(|r| r.json.ended_unix)
        .fold(f64::MIN, f64::max);
    Ok(Report {
        setup: setup_of(&runs),
        counts,
        samples,
        rec,
        percentiles: percentiles.to_vec(),
        elapsed: Duration::from_secs_f64((ended - started).max(0.0)),
        started_unix: started,
        interrupted: runs.iter().any(|r| r.json.interrupted),
        merged_runs: runs.iter().map(|r| r.json.merged_runs.max(1)).sum(),
    })
}

/// The merged settings: sums where the runs add up (connections, loops,
/// messages asked for, failures tolerated), the first run's otherwise.
fn setup_of(runs: &[Run]) -> Setup {
    let first = &runs[0].json;
    let mut addrs: Vec<&str> = Vec::new();
    for r in runs {
        if !addrs.contains(&r.json.addr.as_str()) {
            addrs.push(&r.json.addr);
        }
    }
    let sum = |f: fn(&JsonReport) -> u64| runs.iter().map(|r| f(&r.json)).sum::<u64>();
    Setup {
        mode: first.mode,
        addr: addrs.join(", "),
        connections: sum(|j| j.connections),
        message_size: first.message_size,
        pipeline: first.pipeline,
        threads: sum(|j| j.threads),
        rate: first.rate_per_connection,
        messages: runs
            .iter()
            .map(|r| r.json.messages_requested)
            .sum::<Option<u64>>(),
        duration: first.duration_secs.map(Duration::from_secs_f64),
        max_failures: sum(|j| j.max_failures),
        fd_limit: runs.iter().filter_map(|r| r.json.fd_limit).min(),
        max_loss: first.udp.as_ref().map(|u| u.max_loss_percent),
    }
}

/// The counts a report carries.
fn counts_of(j: &JsonReport) -> Counts {
    let r = &j.failed_by_reason;
    Counts {
        attempted: j.connections_attempted,
        established: j.connections_established,
        failed: [r.refused, r.timeout, r.addr_not_available, r.reset, r.other],
        aborted: j.connections_aborted,
        never_attempted: j.connections_never_attempted,
        unexpected_closes: j.unexpected_closes,
        closed_before_echo: j.closed_before_echo,
        stalled: j.stalled,
        unfinished: j.unfinished,
        verification_errors: j.verification_errors,
        messages: j.messages,
        bytes: j.bytes,
        cycles: j.churn_cycles,
        idle_held: j.idle_held,
        idle_survived: j.idle_survived,
        udp: j.udp.as_ref().map_or_else(UdpCounts::default, |u| u.counts),
    }
}

/// The first errors a report carries.
fn samples_of(j: &JsonReport) -> Samples {
    let ByReason {
        refused,
        timeout,
        addr_not_available,
        reset,
        other,
    } = j.first_failed_by_reason.clone();
    Samples {
        failed: [refused, timeout, addr_not_available, reset, other],
        unexpected: j.first_unexpected_close.clone(),
        stalled: j.first_stall.clone(),
        unfinished: j.first_unfinished.clone(),
        verification: j.first_verification_error.clone(),
        udp: j
            .udp
            .as_ref()
            .map_or_else(UdpSamples::default, |u| UdpSamples {
                lost: u.first_lost.clone(),
                duplicated: u.first_duplicated.clone(),
                reordered: u.first_reordered.clone(),
                corrupted: u.first_corrupted.clone(),
                foreign: u.first_foreign.clone(),
            }),
    }
}
