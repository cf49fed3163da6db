//! End-to-end tests of what `echoloop-stress` offers beyond a plain echo
//! run: the warm-up (`--warmup`), stages of load (`--stages`), servers
//! that answer without echoing (`--send`, `--expect`, `--expect-bytes`)
//! and UDP jitter.
//!
//! Each test runs the real binary against a small server written here,
//! thread per connection, on 127.0.0.1 port 0; every run is bounded and
//! every wait on the child has a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

pub mod support;

use support::StressArgs;

/// Longest any run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

use support::thread_per_connection as tcp_server;

/// RFC 862: every byte back, until the client closes.
fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Echoes, but flips one bit of stream byte 100 of each connection.
fn echo_flipping_byte_100(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    let mut at = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        if (at..at + n as u64).contains(&100) {
            buf[(100 - at) as usize] ^= 0x10;
        }
        at += n as u64;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Proves the warm-up runs and verifies traffic but keeps it out of the
/// figures: its messages are reported apart, the measured messages are
/// exactly the round trips in the latency histogram (none of the
/// warm-up's), the throughput's time is the measured window only, and
/// the run as a whole lasted warm-up plus duration.
#[test]
fn warmup_is_verified_but_not_counted() {
    let addr = tcp_server(echo);
    let run = StressArgs::to(addr)
        .json()
        .conns(4)
        .size(64)
        .flag("--warmup", 0.6)
        .secs(0.6)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let report = run.report();
    let warmup = report.warmup.as_ref().expect("a warm-up section");
    assert!(warmup.messages > 0, "{}", run.describe());
    assert_eq!(warmup.errors, 0);
    assert_eq!(warmup.bytes, warmup.messages * 64);
    assert_eq!(report.warmup_secs, Some(0.6));
    assert!(report.messages > 0);
    assert_eq!(report.bytes, report.messages * 64);
    assert_eq!(
        report.latency().count,
        report.messages,
        "{}",
        run.describe()
    );
    let measured = report.elapsed_secs.expect("elapsed");
    let whole = report.ended_unix - report.started_unix;
    assert!(whole >= 1.2 - 0.01, "the run lasted {whole} s");
    assert!(
        (whole - measured - 0.6).abs() < 0.05,
        "measured {measured} s of {whole} s"
    );
}

/// Proves an error during the warm-up still fails the run: a server that
/// corrupts byte 100 of every connection is caught within the warm-up,
/// the run fails (exit 1) with the verification errors, the warm-up
/// section counts them, and the text report shows the warm-up line.
#[test]
fn error_during_warmup_fails_the_run() {
    let addr = tcp_server(echo_flipping_byte_100);
    let base = StressArgs::to(addr)
        .conns(2)
        .size(64)
        .flag("--warmup", 5)
        .secs(0.5);
    let run = base.clone().json().run(RUN_LIMIT);
    run.assert_exit(1);
    let report = run.report();
    assert_eq!(report.verification_errors, 2, "{}", run.describe());
    assert_eq!(report.warmup.as_ref().expect("warm-up").errors, 2);
    let text = base.run(RUN_LIMIT);
    text.assert_exit(1);
    assert!(
        text.stdout.contains("warm-up:") && text.stdout.contains("2 error(s)"),
        "{}",
        text.describe()
    );
}

/// Proves `--warmup` is refused, in one line with exit status 2, where it
/// has no meaning: before a run counted by `--messages` or an idle hold.
#[test]
fn warmup_refused_where_it_does_not_apply() {
    for extra in [["--messages", "10"], ["--mode", "idle"]] {
        let run = StressArgs::new()
            .flag("--warmup", 1)
            .args(extra)
            .run(RUN_LIMIT);
        run.assert_exit(2);
        let err = run.stderr_text();
        assert!(
            err.contains("--warmup") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}

/// Connections the counting echo server holds open now, and the most it
/// ever held at once (one test uses it).
static OPEN_NOW: AtomicUsize = AtomicUsize::new(0);
static OPEN_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Echoes, keeping [`OPEN_NOW`] and [`OPEN_PEAK`].
fn echo_counting(stream: TcpStream) {
    let now = OPEN_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    OPEN_PEAK.fetch_max(now, Ordering::SeqCst);
    echo(stream);
    OPEN_NOW.fetch_sub(1, Ordering::SeqCst);
}

/// Proves `--stages` ramps the connections and reports each stage: up
/// from none to 4, on to 8, down to none, the server never sees more than
/// the largest count (8) at once and sees it reached, no connection is
/// made twice on a ramp that never comes back up, and the JSON has one
/// entry per stage whose messages and round trips add up to the run's.
#[test]
fn stages_ramp_connections_and_report_each() {
    let addr = tcp_server(echo_counting);
    let run = StressArgs::to(addr)
        .json()
        .size(64)
        .flag("--stages", "0.4s:4,0.4s:8,0.4s:0")
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let report = run.report();
    assert_eq!(report.connections, 8);
    assert_eq!(report.connections_attempted, 8, "{}", run.describe());
    assert_eq!(OPEN_PEAK.load(Ordering::SeqCst), 8);
    let stages = report.stages.as_ref().expect("stages");
    let ramps: Vec<(u64, u64)> = stages
        .iter()
        .map(|s| (s.connections_from, s.connections_to))
        .collect();
    assert_eq!(ramps, [(0, 4), (4, 8), (8, 0)]);
    assert!(stages.iter().all(|s| s.messages > 0 && s.secs == 0.4));
    let sum: u64 = stages.iter().map(|s| s.messages).sum();
    assert_eq!(sum, report.messages);
    let timed: u64 = stages
        .iter()
        .map(|s| s.latency_us.as_ref().map_or(0, |l| l.count))
        .sum();
    assert_eq!(timed, report.latency().count);
}

/// Proves a connection that falls out of the stages' count is closed and
/// a new one made when the count comes back: 6 connections, down to
/// none, up to 6 again, is 12 connects, none a failure (one begun as
/// the run ends is cut, neither established nor failed).
#[test]
fn stages_reopen_connections_after_a_ramp_down() {
    let addr = tcp_server(echo);
    let run = StressArgs::to(addr)
        .json()
        .size(64)
        .flag("--stages", "0.3s:6,0.3s:0,0.3s:6")
        .run(RUN_LIMIT);
    run.assert_exit(0);
    let report = run.report();
    assert_eq!(report.connections_attempted, 12, "{}", run.describe());
    assert!(report.connections_established >= 11);
    assert_eq!(report.failures, 0);
    assert_eq!(report.connections_never_attempted, 0);
}

/// Proves `--stages` with `--duration`, and a stage of bad syntax, are
/// each one line and exit status 2.
#[test]
fn stages_refused_with_duration_or_bad_syntax() {
    for (args, says) in [
        (
            ["--stages", "1s:10", "--duration", "5"].as_slice(),
            "--duration",
        ),
        (["--stages", "1s:10,2s"].as_slice(), "stage 2"),
        (
            ["--stages", "1s:10", "--connections", "5"].as_slice(),
            "--connections",
        ),
    ] {
        let run = StressArgs::new().args(args).run(RUN_LIMIT);
        run.assert_exit(2);
        let err = run.stderr_text();
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

/// A Redis-like line server: `PING` → `+PONG`; `SEQ k` → `+OK` if `k` is
/// the line's number on this connection (0, 1, …), else `-ERR`; anything
/// else `-ERR`. Lines end in CRLF; pipelined lines are answered in order.
fn redis_like(mut stream: TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let mut line_no = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = pending.drain(..end + 2).take(end).collect();
            let reply: &[u8] = match line.as_slice() {
                b"PING" => b"+PONG\r\n",
                l if l == format!("SEQ {line_no}").as_bytes() => b"+OK\r\n",
                _ => b"-ERR\r\n",
            };
            out.extend_from_slice(reply);
            line_no += 1;
        }
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// An HTTP/1.1 keep-alive server: every request (up to its blank line)
/// gets `200 OK` with the body `ok`; pipelined requests in order.
fn http_keep_alive(mut stream: TcpStream) {
    const RESPONSE: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            out.extend_from_slice(RESPONSE);
        }
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// Proves the client measures request → response against a server that
/// does not echo: `PING` → `+PONG` over 4 connections with 8 in flight
/// each, exactly the messages asked for, each response matched and timed,
/// the bytes counted those of the responses.
#[test]
fn redis_like_ping_pong_pipelined() {
    let addr = tcp_server(redis_like);
    let run = StressArgs::to(addr)
        .json()
        .conns(4)
        .pipeline(8)
        .messages(4_000)
        .args(["--send", "PING\\r\\n", "--expect", "\\+PONG\\r\\n"])
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let report = run.report();
    assert_eq!(report.messages, 4_000);
    assert_eq!(report.bytes, 4_000 * 7);
    assert_eq!(report.latency().count, 4_000);
    assert_eq!(report.message_size, 6);
    assert_eq!(report.verification_errors, 0);
}

/// Proves `{seq}` is each message's number on its connection: the server
/// answers `+OK` only when `SEQ k` carries the line's own number, and a
/// pipelined run of 1,000 verifies every one. A server's `-ERR` is a
/// verification error (exit 1) at its first byte, well before the echo
/// timeout, and the report shows the bytes.
#[test]
fn counter_placeholder_numbers_each_message() {
    let addr = tcp_server(redis_like);
    let run = StressArgs::to(addr)
        .json()
        .conns(2)
        .pipeline(4)
        .messages(1_000)
        .args(["--send", "SEQ {seq}\\r\\n", "--expect", "\\+OK\\r\\n"])
        .run(RUN_LIMIT);
    run.assert_exit(0);
    assert_eq!(run.report().messages, 1_000, "{}", run.describe());
    let wrong = StressArgs::to(addr)
        .json()
        .conns(2)
        .messages(10)
        .args(["--send", "SEQ 0\\r\\n", "--expect", "\\+OK\\r\\n"])
        .echo_timeout(60.0)
        .run(RUN_LIMIT);
    wrong.assert_exit(1);
    let report = wrong.report();
    assert_eq!(report.verification_errors, 2, "{}", wrong.describe());
    let first = report.first_verification_error.expect("first error");
    assert!(first.contains("-ERR"), "{first}");
}

/// Proves an HTTP/1.1 keep-alive server can be measured, pipelined and in
/// the open loop: `GET` requests on 4 connections at 200/s each for 0.5 s,
/// each response (headers and a 2-byte body) matched; with
/// `--expect-bytes` the same responses are taken by their length.
#[test]
fn http_keep_alive_open_loop() {
    let addr = tcp_server(http_keep_alive);
    let request = "GET /{seq} HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n";
    for expect in [
        ["--expect", "(?s)HTTP/1\\.1 200 .*?\\r\\n\\r\\nok"],
        ["--expect-bytes", "64"],
    ] {
        let run = StressArgs::to(addr)
            .json()
            .conns(4)
            .pipeline(2)
            .rate(200.0)
            .secs(0.5)
            .args(["--send", request])
            .args(expect)
            .run(RUN_LIMIT);
        run.assert_exit(0);
        let report = run.report();
        assert!(report.messages > 0, "{}", run.describe());
        assert_eq!(report.bytes, report.messages * 64, "{expect:?}");
        report.assert_on_schedule(400);
    }
}

/// Proves the any-server flags are checked: `--send` without a response
/// rule, `--expect` without `--send`, a bad escape and a bad regex are
/// each one line and exit status 2.
#[test]
fn any_server_flags_are_checked() {
    for (args, says) in [
        (["--send", "PING"].as_slice(), "--expect"),
        (["--expect", "x"].as_slice(), "--send"),
        (["--send", "\\q", "--expect", "x"].as_slice(), "escape"),
        (["--send", "x", "--expect", "("].as_slice(), "--expect"),
        (
            ["--send", "x", "--expect-bytes", "1", "--udp"].as_slice(),
            "--udp",
        ),
    ] {
        let run = StressArgs::new().args(args).run(RUN_LIMIT);
        run.assert_exit(2);
        let err = run.stderr_text();
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// How much longer a delaying UDP echo holds every second datagram.
const DELAY: Duration = Duration::from_millis(20);

/// A UDP echo that holds every second datagram of each sender (its 2nd,
/// 4th, …) for [`DELAY`] before echoing it, on a thread of its own so
/// no other datagram waits behind it: round trips alternate short and
/// short + [`DELAY`], a known jitter.
fn udp_echo_alternately_delayed() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("local_addr");
    thread::spawn(move || {
        let mut seen = std::collections::HashMap::<SocketAddr, u64>::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let count = seen.entry(from).or_default();
            *count += 1;
            if *count % 2 == 1 {
                let _ = socket.send_to(&buf[..n], from);
                continue;
            }
            let (late, data) = (socket.try_clone().expect("clone"), buf[..n].to_vec());
            thread::spawn(move || {
                thread::sleep(DELAY);
                let _ = late.send_to(&data, from);
            });
        }
    });
    addr
}

/// The mean of RFC 3550's running estimate over `samples` arrivals whose
/// transit times differ by `d` each time: J(k) = d × (1 − (15/16)^k).
fn expected_mean_jitter(d: f64, samples: u64) -> f64 {
    let sum: f64 = (1..=samples as i32)
        .map(|k| d * (1.0 - (15f64 / 16.0).powi(k)))
        .sum();
    sum / samples as f64
}

/// Proves the UDP jitter is RFC 3550's, per socket and combined: against
/// an echo that delays every second datagram by 20 ms, 2 sockets × 30
/// datagrams give 29 samples each, and the combined jitter (the sockets'
/// estimates over all their samples) is at least what |D| = 20 ms makes
/// (a sleep only ever lasts longer) and not far above it; the worst
/// socket's is of the same size; the text report shows it; and `merge`
/// of two such runs adds the sums and samples, so its figure is the
/// samples' mean, not a mean of the two runs' figures.
#[test]
fn udp_jitter_against_a_delaying_echo() {
    let addr = udp_echo_alternately_delayed();
    let args = StressArgs::to(addr).udp().conns(2).messages(60);
    let run = args.clone().json().run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let report = run.report();
    let udp = report.udp();
    assert_eq!(udp.echoed, 60, "{}", run.describe());
    assert_eq!(udp.jitter_samples, 58);
    let want_us = expected_mean_jitter(DELAY.as_micros() as f64, 29);
    let jitter = udp.jitter_us.expect("jitter");
    assert!(
        jitter >= want_us * 0.9 && jitter <= want_us * 3.0,
        "jitter {jitter} us, expected about {want_us} us"
    );
    let worst = udp.jitter_max_socket_us.expect("worst socket");
    assert!(worst >= jitter && worst <= want_us * 3.0, "{worst}");
    let text = args.clone().run(RUN_LIMIT);
    assert!(text.stdout.contains("jitter:"), "{}", text.describe());

    let dir = std::env::temp_dir().join(format!("echoloop-jitter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&a, &run.stdout).expect("write a");
    let second = StressArgs::to(addr)
        .udp()
        .conns(1)
        .messages(11)
        .json()
        .run(RUN_LIMIT);
    second.assert_exit(0);
    std::fs::write(&b, &second.stdout).expect("write b");
    let merged = StressArgs::new()
        .args(["merge", "--json"])
        .args([a.to_str().expect("path"), b.to_str().expect("path")])
        .run(RUN_LIMIT);
    std::fs::remove_dir_all(&dir).ok();
    merged.assert_exit(0);
    let (m, s) = (merged.report(), second.report());
    let (mu, su) = (m.udp(), s.udp());
    assert_eq!(mu.jitter_samples, 58 + 10);
    assert_eq!(mu.jitter_sum_ns, udp.jitter_sum_ns + su.jitter_sum_ns);
    let mean = mu.jitter_sum_ns as f64 / mu.jitter_samples as f64 / 1000.0;
    assert!((mu.jitter_us.expect("merged jitter") - mean).abs() < 0.01);
    assert_eq!(
        mu.jitter_max_socket_ns,
        udp.jitter_max_socket_ns.max(su.jitter_max_socket_ns)
    );
}

/// A plain UDP echo (RFC 862 section 2) on its own thread.
fn udp_echo() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("local_addr");
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

/// Proves `--stages` drives UDP sockets too, in the open loop: 4 sockets
/// at 100 datagrams/s each, down to none, none for a stage, up again; the
/// stage of none sends nothing, the sockets that come back send on a
/// schedule from their return (not a burst of everything missed
/// meanwhile: nothing lost, nothing late), and the stages add up to the
/// run.
#[test]
fn stages_ramp_udp_sockets() {
    let addr = udp_echo();
    let run = StressArgs::to(addr)
        .udp()
        .json()
        .size(64)
        .rate(100.0)
        .flag("--stages", "0.3s:4,0.3s:0,0.3s:0,0.3s:4")
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let report = run.report();
    let stages = report.stages.as_ref().expect("stages");
    let messages: Vec<u64> = stages.iter().map(|s| s.messages).collect();
    assert!(
        messages[0] > 0 && messages[1] > 0 && messages[3] > 0,
        "{messages:?}"
    );
    assert_eq!(messages[2], 0, "{messages:?}");
    assert_eq!(messages.iter().sum::<u64>(), report.udp().echoed);
    assert_eq!(report.udp().lost, 0);
    // At most what the ramps allow: on average 2 sockets × 100/s over
    // 0.9 s of ramps is 180 (a burst of what was missed would add some
    // 200), and no datagram as late as the stage of none (the one time
    // bound, and it is the stages').
    assert!(report.udp().sent <= 200, "{}", run.describe());
    assert!(report.latency().max < 300_000.0, "{}", run.describe());
}

/// Proves `--plot` of a `--udp` run in `--stages` shows both: a label
/// naming each stage and the connections it ramps to (where its dashed
/// line is), and a "jitter" series on the latency panel beside the
/// percentiles.
#[test]
fn plot_shows_stages_and_udp_jitter() {
    let addr = udp_echo();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("stress-plot-stages");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    let path = dir.join("plot.svg");
    let run = StressArgs::to(addr)
        .udp()
        .json()
        .size(64)
        .rate(200.0)
        .flag("--stages", "0.3s:4,0.3s:2")
        .flag("--interval", "0.1")
        .flag("--plot", path.display())
        .run(RUN_LIMIT);
    run.assert_exit(0);
    assert!(run.report().output_errors.is_empty(), "{}", run.describe());
    let svg = std::fs::read_to_string(&path).expect("read the plot");
    assert!(svg.trim_end().ends_with("</svg>"), "an unfinished SVG");
    // plotters writes each `<text>`'s words on a line of their own.
    for label in ["stage 1 → 4 conns", "stage 2 → 2 conns", "jitter"] {
        assert!(
            svg.lines().any(|l| l.trim() == label),
            "no {label:?} in {svg}"
        );
    }
}
