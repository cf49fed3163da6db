//! Scenario 8 of issue 4: a soak. The real binary serves `echoloop-stress`
//! in churn mode (connect, echo, close, again) and in load mode (small
//! pipelined messages on 200 connections, and 64 KiB messages that fill
//! pending buffers on 8 more) at the same time; every byte is verified by
//! the stress client. At the end the server's open descriptors equal those
//! at the start exactly and its RSS is within a small margin of the start;
//! while loaded, its RSS does not creep.
//!
//! CI runs 40 seconds. The long run (30 minutes; release build recommended):
//!
//! ```text
//! ECHOLOOP_SOAK_SECS=1800 cargo test --release --test soak -- --nocapture
//! ```

pub mod support;

#[cfg(target_os = "linux")]
use std::process::{Child, Command, Stdio};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use support::*;

/// Soak length unless `ECHOLOOP_SOAK_SECS` says otherwise.
#[cfg(target_os = "linux")]
const DEFAULT_SECS: f64 = 40.0;

/// Memory the server may keep after a run and legitimately so: its pool of
/// spare output buffers (up to 64 of `--max-pending`, see `SPARE_BUFFERS` in
/// server.rs) plus 2 MiB for the slab, the idle links and the allocator.
#[cfg(target_os = "linux")]
const RSS_MARGIN_KIB: u64 = 64 * 64 + 2048;

/// Most the RSS may grow from the end of the warm-up to the end of the
/// loaded run: steady state allocates nothing per event or per connection.
#[cfg(target_os = "linux")]
const CREEP_KIB: u64 = 1024;

/// The p99 round trip of a stress report, in microseconds.
#[cfg(target_os = "linux")]
fn p99_us(json: &str) -> &str {
    let latency = &json[json.find("\"latency_us\"").expect("latency_us")..];
    json_field(latency, "p99")
}

#[cfg(target_os = "linux")]
fn stress(addr: std::net::SocketAddr, secs: f64, args: &[&str]) -> Child {
    Command::new(STRESS)
        .arg("--addr")
        .arg(addr.to_string())
        .args(["--json", "--duration", &format!("{secs}")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null()) // its once-a-second status line
        .spawn()
        .expect("spawn echoloop-stress")
}

/// The soak: churn and load together for `ECHOLOOP_SOAK_SECS` (default 40)
/// seconds. Proves that every stress run verifies every byte with no failed
/// connection, that the server's descriptor count after the run equals the
/// count before it, that its RSS after the run is within [`RSS_MARGIN_KIB`]
/// of the start and did not grow by more than [`CREEP_KIB`] from the end of
/// the warm-up (the first quarter) to the end of the load, and that it
/// exits 0 with `bytes_in == bytes_out`.
#[cfg(target_os = "linux")]
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
    let fds_start = fd_count(pid);
    let rss_start = rss_kib(pid);

    let started = Instant::now();
    let runs = [
        (
            "churn",
            stress(
                server.addr,
                secs,
                &[
                    "--mode",
                    "churn",
                    "--connections",
                    "16",
                    "--connect-rate",
                    "300",
                    "--source-addrs",
                    "127.0.0.1-127.0.0.4",
                ],
            ),
        ),
        (
            "load",
            stress(
                server.addr,
                secs,
                &["--mode", "load", "--connections", "200", "--pipeline", "4"],
            ),
        ),
        (
            "bulk",
            stress(
                server.addr,
                secs,
                &[
                    "--mode",
                    "load",
                    "--connections",
                    "8",
                    "--message-size",
                    "65536",
                    "--pipeline",
                    "4",
                ],
            ),
        ),
    ];

    // Sample the server once a second while the load runs (pacing).
    let warm_at = started + Duration::from_secs_f64(secs / 4.0);
    let mut rss_warm = None;
    let mut samples = Vec::new();
    let mut fds_peak = 0;
    let run_end = started + Duration::from_secs_f64(secs);
    while Instant::now() < run_end {
        let line = server.wait_for_line("stats:");
        let rss = rss_kib(pid);
        fds_peak = fds_peak.max(fd_count(pid));
        samples.push((started.elapsed(), rss, stat(&line, "active")));
        if rss_warm.is_none() && Instant::now() >= warm_at {
            rss_warm = Some(rss);
        }
    }
    let rss_loaded = samples.last().expect("samples").1;
    let rss_warm = rss_warm.unwrap_or(rss_loaded);

    let mut reports = Vec::new();
    for (name, mut child) in runs {
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "{name} stress run did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("stress output");
        let json = String::from_utf8(out.stdout).expect("utf-8 report");
        reports.push((name, out.status.code(), json));
    }
    wait_for_stats(&mut server, "every connection closed", TIMEOUT, |l| {
        stat(l, "active") == 0
    });
    let fds_end = fd_count(pid);
    let rss_end = rss_kib(pid);
    server.signal(libc::SIGTERM);
    let last = server.wait_for_line("stopped:");
    assert_eq!(server.wait_exit(), Some(0));

    let rss_min = samples.iter().map(|s| s.1).min().unwrap();
    let rss_max = samples.iter().map(|s| s.1).max().unwrap();
    let active_max = samples.iter().map(|s| s.2).max().unwrap();
    let mut aborted = 0;
    for (name, code, json) in &reports {
        eprintln!(
            "soak: {name}: exit {code:?}, {} messages, {} bytes verified, {} connections, \
             {} churn cycles, {} msg/s, latency p99 {} us, failures {}, aborted at the end {}",
            json_field(json, "messages"),
            json_field(json, "bytes"),
            json_field(json, "connections_established"),
            json_field(json, "churn_cycles"),
            json_field(json, "msgs_per_sec"),
            p99_us(json),
            json_field(json, "failures"),
            json_field(json, "connections_aborted"),
        );
        aborted += json_u64(json, "connections_aborted");
    }
    eprintln!(
        "soak: {secs} s; server fds {fds_start} at start, {fds_peak} at peak, {fds_end} at end; \
         RSS {:.1} MiB at start, {:.1} after warm-up, {:.1} at end of load (min {:.1}, max {:.1}), \
         {:.1} after; peak active {active_max}; {last}",
        mib(rss_start),
        mib(rss_warm),
        mib(rss_loaded),
        mib(rss_min),
        mib(rss_max),
        mib(rss_end),
    );

    for (name, code, json) in &reports {
        assert_eq!(*code, Some(0), "{name} stress run failed:\n{json}");
        assert_eq!(json_u64(json, "verification_errors"), 0, "{name}:\n{json}");
        assert_eq!(json_u64(json, "failures"), 0, "{name}:\n{json}");
        assert!(json_u64(json, "messages") > 0, "{name}:\n{json}");
    }
    assert!(json_u64(&reports[0].2, "churn_cycles") > 0);
    assert_eq!(fds_end, fds_start, "descriptors at the end vs the start");
    assert!(
        rss_end <= rss_start + RSS_MARGIN_KIB,
        "RSS {rss_end} KiB at the end vs {rss_start} KiB at the start"
    );
    assert!(
        rss_loaded <= rss_warm + CREEP_KIB,
        "RSS crept from {rss_warm} KiB after warm-up to {rss_loaded} KiB"
    );
    assert_eq!(stat(&last, "bytes_in"), stat(&last, "bytes_out"), "{last}");
    assert_eq!(stat(&last, "pending_bytes"), 0, "{last}");
    // Connections the stress clients cut at the end of their run may reset;
    // nothing else may.
    assert!(stat(&last, "errored") <= aborted, "{last}");
    assert_eq!(
        stat(&last, "accepted"),
        stat(&last, "closed_by_peer") + stat(&last, "errored"),
        "{last}"
    );
}
