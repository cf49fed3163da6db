//! A soak. The real binary serves `echoloop-stress` in churn mode (connect,
//! echo, close, again) and in load mode (small pipelined messages on 200
//! connections, and 64 KiB messages that fill pending buffers on 8 more) at
//! the same time; every byte is verified by the stress client. At the end
//! the server's open descriptors equal those at the start exactly and its
//! RSS is within a small margin of the start; while loaded, its RSS does not
//! creep.
//!
//! CI runs 40 seconds. The long run (30 minutes; release build recommended):
//!
//! ```text
//! ECHOLOOP_SOAK_SECS=1800 cargo test --release --test soak -- --nocapture
//! ```
//!
//! Linux only: the facts come from `/proc`.

#![cfg(target_os = "linux")]

pub mod support;

use std::time::{Duration, Instant};

use support::*;

/// Soak length unless `ECHOLOOP_SOAK_SECS` says otherwise.
const DEFAULT_SECS: f64 = 40.0;

/// Memory the server may keep after a run and legitimately so: its pool of
/// spare output buffers (up to 64 of `--max-pending`, see `SPARE_BUFFERS` in
/// server.rs) plus 2 MiB for the slab, the idle links and the allocator.
const RSS_MARGIN_KIB: u64 = 64 * 64 + 2048;

/// Most the RSS may grow from the end of the warm-up to the end of the
/// loaded run: steady state allocates nothing per event or per connection.
const CREEP_KIB: u64 = 1024;

/// The stress runs, all at once: each one's name and its flags (besides
/// `--addr`, `--json` and `--duration`).
const RUNS: [(&str, &str); 3] = [
    (
        "churn",
        "--mode churn --connections 16 --connect-rate 300 --source-addrs 127.0.0.1-127.0.0.4",
    ),
    ("load", "--mode load --connections 200 --pipeline 4"),
    (
        "bulk",
        "--mode load --connections 8 --message-size 65536 --pipeline 4",
    ),
];

/// The soak: churn and load together for `ECHOLOOP_SOAK_SECS` (default 40)
/// seconds. Proves that every stress run verifies every byte with no failed
/// connection, that the server's descriptor count after the run equals the
/// count before it, that its RSS after the run is within [`RSS_MARGIN_KIB`]
/// of the start and did not grow by more than [`CREEP_KIB`] from the end of
/// the warm-up (the first quarter) to the end of the load, and that it
/// exits 0 with `bytes_in == bytes_out`.
#[test]
fn soak_churn_and_load_leave_memory_and_descriptors_as_found() {
    let secs: f64 = std::env::var("ECHOLOOP_SOAK_SECS")
        .map(|v| v.parse().expect("ECHOLOOP_SOAK_SECS: seconds"))
        .unwrap_or(DEFAULT_SECS);
    // The idle timeout never fires here (every connection talks), but the
    // churn keeps reusing slab keys in its queue.
    let mut server = Binary::start(&[
        "--stats-interval",
        "1",
        "--max-pending",
        "65536",
        "--idle-timeout",
        "5",
    ]);
    let pid = server.child.id();
    let start = Facts::of(pid);

    let runs: Vec<(&str, Stress)> = RUNS
        .iter()
        .map(|&(name, flags)| (name, stress(&server, secs, flags)))
        .collect();
    let loaded = sample_under_load(&mut server, secs);
    let runs: Vec<(&str, StressRun)> = runs
        .into_iter()
        .map(|(name, run)| (name, run.finish(Duration::from_secs(60))))
        .collect();
    wait_for_stats(&mut server, "every connection closed", TIMEOUT, |l| {
        stat(l, "active") == 0
    });
    let end = Facts::of(pid);
    let last = server.stop();

    report(secs, &runs, start, &loaded, end, &last);
    check_every_run_verified_every_byte(&runs);
    check_left_as_found(start, &loaded, end);
    check_final_counters(&runs, &last);
}

/// Starts one stress run of `secs` seconds against `server`.
fn stress(server: &Binary, secs: f64, flags: &str) -> Stress {
    StressArgs::to(server.addr)
        .json()
        .secs(secs)
        .args(flags.split_whitespace())
        .spawn()
}

/// The server's descriptors and memory at one moment.
#[derive(Debug, Clone, Copy)]
struct Facts {
    fds: usize,
    rss_kib: u64,
}

impl Facts {
    fn of(pid: u32) -> Facts {
        Facts {
            fds: fd_count(pid),
            rss_kib: rss_kib(pid),
        }
    }
}

/// What the server looked like while the load ran.
#[derive(Debug)]
struct Loaded {
    /// RSS at the end of the warm-up (the first quarter).
    warm_kib: u64,
    /// RSS at the last sample.
    end_kib: u64,
    min_kib: u64,
    max_kib: u64,
    fds_peak: usize,
    active_peak: u64,
}

/// Samples the server at each of its stats lines (one a second) until
/// `secs` are over: the lines are the pacing.
fn sample_under_load(server: &mut Binary, secs: f64) -> Loaded {
    let pid = server.child.id();
    let started = Instant::now();
    let warm_at = started + Duration::from_secs_f64(secs / 4.0);
    let run_end = started + Duration::from_secs_f64(secs);
    let mut warm_kib = None;
    let mut rss = Vec::new();
    let (mut fds_peak, mut active_peak) = (0, 0);
    while Instant::now() < run_end {
        let line = server.stderr.wait_for("stats:");
        let kib = rss_kib(pid);
        rss.push(kib);
        fds_peak = fds_peak.max(fd_count(pid));
        active_peak = active_peak.max(stat(&line, "active"));
        if warm_kib.is_none() && Instant::now() >= warm_at {
            warm_kib = Some(kib);
        }
    }
    let end_kib = *rss.last().expect("samples");
    Loaded {
        warm_kib: warm_kib.unwrap_or(end_kib),
        end_kib,
        min_kib: *rss.iter().min().expect("samples"),
        max_kib: *rss.iter().max().expect("samples"),
        fds_peak,
        active_peak,
    }
}

/// The figures, for `docs/hostile.md`.
fn report(
    secs: f64,
    runs: &[(&str, StressRun)],
    start: Facts,
    loaded: &Loaded,
    end: Facts,
    last: &str,
) {
    for (name, run) in runs {
        let r = run.report();
        eprintln!(
            "soak: {name}: exit {:?}, {} messages, {} bytes verified, {} connections, \
             {} churn cycles, {:?} msg/s, latency p99 {} us, failures {}, aborted at the end {}",
            run.status.code(),
            r.messages,
            r.bytes,
            r.connections_established,
            r.churn_cycles,
            r.msgs_per_sec,
            r.latency().p99(),
            r.failures,
            r.connections_aborted,
        );
    }
    eprintln!(
        "soak: {secs} s; server fds {} at start, {} at peak, {} at end; RSS {:.1} MiB at start, \
         {:.1} after warm-up, {:.1} at end of load (min {:.1}, max {:.1}), {:.1} after; peak \
         active {}; {last}",
        start.fds,
        loaded.fds_peak,
        end.fds,
        mib(start.rss_kib),
        mib(loaded.warm_kib),
        mib(loaded.end_kib),
        mib(loaded.min_kib),
        mib(loaded.max_kib),
        mib(end.rss_kib),
        loaded.active_peak,
    );
}

/// Every stress run passed: every byte verified, no connection failed, and
/// each one moved messages (the churn run, churn cycles).
fn check_every_run_verified_every_byte(runs: &[(&str, StressRun)]) {
    for (name, run) in runs {
        let report = run.describe();
        assert_eq!(
            run.status.code(),
            Some(0),
            "{name} stress run failed:\n{report}"
        );
        assert_eq!(run.report().verification_errors, 0, "{name}:\n{report}");
        assert_eq!(run.report().failures, 0, "{name}:\n{report}");
        assert!(run.report().messages > 0, "{name}:\n{report}");
    }
    assert!(runs[0].1.report().churn_cycles > 0);
}

/// The server's descriptors after the load are exactly those before it, its
/// RSS is back within [`RSS_MARGIN_KIB`] of the start, and it did not creep
/// by more than [`CREEP_KIB`] under load.
fn check_left_as_found(start: Facts, loaded: &Loaded, end: Facts) {
    assert_eq!(end.fds, start.fds, "descriptors at the end vs the start");
    assert!(
        end.rss_kib <= start.rss_kib + RSS_MARGIN_KIB,
        "RSS {} KiB at the end vs {} KiB at the start",
        end.rss_kib,
        start.rss_kib
    );
    assert!(
        loaded.end_kib <= loaded.warm_kib + CREEP_KIB,
        "RSS crept from {} KiB after warm-up to {} KiB",
        loaded.warm_kib,
        loaded.end_kib
    );
}

/// The final counters: every byte read was echoed, nothing is pending, and
/// every accepted connection was closed by its peer or errored — errored
/// only for the connections the stress clients cut at the end of their run.
fn check_final_counters(runs: &[(&str, StressRun)], last: &str) {
    let aborted: u64 = runs
        .iter()
        .map(|(_, r)| r.report().connections_aborted)
        .sum();
    assert_eq!(stat(last, "bytes_in"), stat(last, "bytes_out"), "{last}");
    assert_eq!(stat(last, "pending_bytes"), 0, "{last}");
    assert!(stat(last, "errored") <= aborted, "{last}");
    assert_eq!(
        stat(last, "accepted"),
        stat(last, "closed_by_peer") + stat(last, "errored"),
        "{last}"
    );
}
