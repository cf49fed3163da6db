//! End-to-end tests of the `echoloop-stress` binary.
//!
//! Each test runs the real binary against an echo server written here, in the
//! test: a plain thread-per-connection blocking server (anyone's RFC 862
//! server, not ours), or a deliberately broken variant of it. Everything is on
//! 127.0.0.1 with port 0, every run is bounded by `--messages` or a short
//! `--duration`, and every wait on the child has a timeout.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub mod support;

use support::{Stress, StressArgs, StressRun};

/// Longest any run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How long [`Behaviour::StallOnceAfter`] stops echoing.
const STALL: Duration = Duration::from_millis(500);

/// A latency percentile (µs) that shows the stall: three fifths of it. The
/// one time bound of the latency tests, and it is the stall's, not the
/// platform's: a slower machine only makes a stalled message later, and a
/// round trip that does not meet the stall stays far below it.
const SHOWS_STALL_US: f64 = STALL.as_micros() as f64 * 0.6;

/// `--echo-timeout` of the runs that must end without any stall: longer
/// than such a run takes on any platform, so ending before it proves no
/// connection waited for the stall timer.
const NO_STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How a test server treats its clients.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Echo every byte (RFC 862).
    Echo,
    /// Echo, but flip one bit of the byte at this offset of each connection's stream.
    FlipByteAt(u64),
    /// Accept and hold the connection, never read or write.
    Silent,
    /// Accept and at once close every n-th connection (the first, the
    /// n+1-th, …), echo the others: a server refusing over its limit.
    RefuseEvery(usize),
    /// Echo this many bytes, then end the stream (FIN) in the middle of a
    /// message, and discard the rest: a server shutting down mid-stream.
    EchoThenClose(u64),
    /// Echo, but once this many bytes have come in, stop for [`STALL`] (a
    /// garbage-collection pause, say) before echoing on.
    StallOnceAfter(u64),
    /// Echo slowly but steadily: 8 bytes every 50 ms.
    Trickle,
    /// Echo every chunk, but send the middle byte of each as TCP urgent
    /// data (`MSG_OOB`): legal, and the byte is still part of the stream.
    #[cfg(unix)]
    UrgentMiddle,
}

/// A running test server.
struct TestServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Source address of every accepted connection.
    peers: Arc<Mutex<Vec<IpAddr>>>,
}

/// Starts a thread-per-connection server on 127.0.0.1:0. Its threads are
/// detached and end with the test process.
fn serve(behaviour: Behaviour) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&peers);
    thread::spawn(move || {
        let mut held = Vec::new();
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            if let Ok(peer) = stream.peer_addr() {
                seen.lock().expect("peers lock").push(peer.ip());
            }
            match behaviour {
                Behaviour::Silent => held.push(stream),
                Behaviour::RefuseEvery(n) if i % n == 0 => drop(stream),
                _ => {
                    thread::spawn(move || echo(stream, behaviour));
                }
            }
        }
    });
    TestServer { addr, peers }
}

/// Echoes one connection until it closes, corrupting it if asked to.
fn echo(mut stream: TcpStream, behaviour: Behaviour) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Behaviour::FlipByteAt(at) = behaviour {
            if (offset..offset + n as u64).contains(&at) {
                buf[(at - offset) as usize] ^= 0x20;
            }
        }
        if let Behaviour::EchoThenClose(limit) = behaviour {
            let keep = (limit.saturating_sub(offset) as usize).min(n);
            if stream.write_all(&buf[..keep]).is_err() {
                return;
            }
            if offset + n as u64 >= limit {
                // The partial echo and the FIN leave together; then read on
                // so that closing sends no reset.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            offset += n as u64;
            continue;
        }
        if let Behaviour::Trickle = behaviour {
            for chunk in buf[..n].chunks(8) {
                thread::sleep(Duration::from_millis(50)); // the behaviour under test
                if stream.write_all(chunk).is_err() {
                    return;
                }
            }
            continue;
        }
        #[cfg(unix)]
        if let Behaviour::UrgentMiddle = behaviour {
            if write_with_urgent_middle(&mut stream, &buf[..n]).is_err() {
                return;
            }
            continue;
        }
        if let Behaviour::StallOnceAfter(at) = behaviour {
            if (offset..offset + n as u64).contains(&at) {
                thread::sleep(STALL); // the behaviour under test
            }
        }
        offset += n as u64;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Writes `data` with its middle byte sent alone as urgent data.
#[cfg(unix)]
fn write_with_urgent_middle(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mid = data.len() / 2;
    stream.write_all(&data[..mid])?;
    // SAFETY: send(2) on a connected socket we own, one byte from a live slice.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            data[mid..].as_ptr().cast(),
            1,
            libc::MSG_OOB,
        )
    };
    if sent != 1 {
        return Err(std::io::Error::last_os_error());
    }
    stream.write_all(&data[mid + 1..])
}

/// A listener whose accept queue is full and never drained: the kernel
/// drops every further SYN, so a connect to it neither succeeds nor fails —
/// a black hole on loopback. Keep the returned value alive.
fn black_hole() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind");
    socket.listen(1).expect("listen");
    let addr = socket
        .local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("inet");
    // Linux completes backlog + 1 handshakes; fill them (and a little more).
    let fill = (0..2)
        .map(|_| TcpStream::connect(addr).expect("fill the backlog"))
        .collect();
    (addr, socket, fill)
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Runs `echoloop-stress` with `args` to its exit, killing it (and
/// failing) if it runs past [`RUN_LIMIT`].
fn stress(args: &[&str]) -> StressRun {
    StressArgs::new().args(args).run(RUN_LIMIT)
}

/// A run against `server` with `--json`, to be given its other flags.
fn against(server: &TestServer) -> StressArgs {
    StressArgs::to(server.addr).json()
}

/// Proves the load mode's core promise against a third-party style server:
/// 20 connections with 4 messages in flight each, split over two loops,
/// echo exactly the 2,000 messages asked for, every byte verified, and the
/// JSON report says so (and parses as JSON, every field of it read by the
/// tests' typed report).
#[test]
fn load_mode_echoes_exact_count_all_verified() {
    let server = serve(Behaviour::Echo);
    let run = against(&server)
        .conns(20)
        .pipeline(4)
        .size(100)
        .messages(2000)
        .threads(2)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let r = run.report();
    assert_eq!(r.messages, 2000);
    assert_eq!(r.bytes, 200_000);
    assert_eq!(r.verification_errors, 0);
    assert_eq!(r.connections_attempted, 20);
    assert_eq!(r.connections_established, 20);
    assert_eq!(r.connections_failed, 0);
    assert_eq!(r.unexpected_closes, 0);
    assert_eq!(r.latency().count, 2000);
    assert!(r.latency().p50() > 0.0);
    assert!(r.latency().p99() >= r.latency().p50());
    assert_eq!(r.exit_code, 0);
    assert!(r.verdict.is_none());
}

/// Proves the open loop sends on its schedule rather than as fast as it
/// can: 4 connections at 200 msg/s each for one second is at most about
/// 800 messages, all verified, and a machine too slow for 800 shows its
/// lag in the latency (`Report::assert_on_schedule`).
#[test]
fn open_loop_rate_sends_on_schedule() {
    let server = serve(Behaviour::Echo);
    let run = against(&server)
        .conns(4)
        .rate(200.0)
        .secs(1.0)
        .size(64)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    let r = run.report();
    r.assert_on_schedule(r.messages);
    assert_eq!(r.verification_errors, 0);
    assert_eq!(r.rate_per_connection, Some(200.0));
}

/// Proves churn mode opens, echoes through and closes one connection per
/// cycle: 200 cycles with 4 in flight give 200 connects, 200 verified
/// echoes and a connections-per-second figure (and every field of the
/// churn report is read by the tests' typed report).
#[test]
fn churn_mode_counts_cycles() {
    let server = serve(Behaviour::Echo);
    let run = against(&server)
        .mode("churn")
        .conns(4)
        .messages(200)
        .size(32)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let r = run.report();
    assert_eq!(r.churn_cycles, 200);
    assert_eq!(r.connections_attempted, 200);
    assert_eq!(r.connections_established, 200);
    assert_eq!(r.messages, 200);
    assert_eq!(r.verification_errors, 0);
    assert!(r.connections_per_sec.expect("connections_per_sec") > 0.0);
    assert_eq!(server.peers.lock().expect("peers").len(), 200);
}

/// Proves idle mode holds every connection for the duration and then checks
/// each one still echoes: 50 held, 50 verified (and every field of the idle
/// report is read by the tests' typed report).
#[test]
fn idle_mode_verifies_every_survivor() {
    let server = serve(Behaviour::Echo);
    let run = against(&server)
        .mode("idle")
        .conns(50)
        .secs(0.3)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let r = run.report();
    assert_eq!(r.idle_held, 50);
    assert_eq!(r.idle_survived, 50);
    assert_eq!(r.messages, 50);
    assert_eq!(r.verification_errors, 0);
    assert!(
        run.took >= Duration::from_millis(300),
        "held only {:?}",
        run.took
    );
}

/// Proves corruption is caught: a server that flips one bit at stream
/// offset 1,000 of every connection makes the run fail (exit 1) with one
/// verification error per connection, pointing at byte 1,000.
#[test]
fn flipped_byte_fails_verification() {
    let server = serve(Behaviour::FlipByteAt(1000));
    let run = against(&server)
        .conns(5)
        .size(100)
        .messages(500)
        .run(RUN_LIMIT);
    run.assert_exit(1);
    let r = run.report();
    assert_eq!(r.verification_errors, 5);
    // Each connection verified its first 10 messages, then hit the flip.
    assert_eq!(r.messages, 50);
    let first = r
        .first_verification_error
        .expect("first_verification_error");
    assert!(first.contains("stream byte 1000"), "{first}");
    assert_eq!(r.exit_code, 1);
}

/// Proves a closed port is counted as refused connects, never aborts the
/// run, and turns the exit status to 1 with `--max-failures 0`; failures
/// within `--max-failures` are tolerated, but a run in which nothing was
/// tested fails anyway. (Tolerated failures beside verified traffic pass:
/// `refusing_server_counted_as_unexpected_closes`.) Also checks the
/// default human-readable report.
#[test]
fn closed_port_counts_refused() {
    let addr = closed_port().to_string();
    let run = StressArgs::to(&addr)
        .conns(5)
        .messages(5)
        .json()
        .run(RUN_LIMIT);
    run.assert_exit(1);
    let r = run.report();
    assert_eq!(r.connections_attempted, 5);
    assert_eq!(r.connections_failed, 5);
    assert_eq!(r.failed_by_reason.refused, 5);
    let first = r.first_failed_by_reason.refused.expect("first refused");
    assert!(first.contains(&addr), "{first}");

    let run = StressArgs::to(&addr)
        .conns(5)
        .messages(5)
        .flag("--max-failures", 5)
        .run(RUN_LIMIT);
    run.assert_exit(1);
    assert!(
        run.stdout.contains("5 failed (refused 5,"),
        "{}",
        run.stdout
    );
    // Tolerated failures, but then nothing at all was tested: still a FAIL.
    assert!(
        run.stdout
            .contains("result:       FAIL: no message was echoed and verified"),
        "{}",
        run.stdout
    );
}

/// Proves a server that refuses connections after accepting them (closing
/// at once, as a server over its connection limit does) is reported as
/// unexpected closes before any echo, while the other connections finish
/// their share.
#[test]
fn refusing_server_counted_as_unexpected_closes() {
    let server = serve(Behaviour::RefuseEvery(2));
    let run = against(&server)
        .conns(10)
        .messages(100)
        .flag("--max-failures", 5)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    let r = run.report();
    assert_eq!(r.connections_established, 10);
    assert_eq!(r.unexpected_closes, 5);
    assert_eq!(r.closed_before_echo, 5);
    assert_eq!(r.messages, 50);
    assert_eq!(r.verification_errors, 0);
}

/// Proves an end of stream that arrives together with the last bytes (one
/// readiness event for both) is seen as the close it is: each connection
/// is counted as an unexpected close at once, not left waiting for more
/// echo and reported stalled.
#[test]
fn close_with_last_bytes_is_an_unexpected_close_not_a_stall() {
    let server = serve(Behaviour::EchoThenClose(1050));
    let run = against(&server)
        .conns(4)
        .size(100)
        .messages(1000)
        .echo_timeout(NO_STALL_TIMEOUT.as_secs_f64())
        .run(RUN_LIMIT);
    run.assert_exit(1);
    let r = run.report();
    assert_eq!(r.unexpected_closes, 4, "{}", run.stdout);
    assert_eq!(r.stalled, 0, "{}", run.stdout);
    assert_eq!(r.verification_errors, 0);
    // At once: no connection sat out the echo timeout first.
    assert!(run.took < NO_STALL_TIMEOUT, "took {:?}", run.took);
}

/// Proves the open loop corrects for coordinated omission: a server that
/// stalls once for [`STALL`] holds back every message scheduled during the
/// stall, and their latency counts from when each was *due*, so the p99
/// shows the stall, while the same run's latency from each actual send
/// does not, and the corrected p99 is never below the uncorrected one. The
/// closed loop over the same server sees one slow message per connection,
/// lost in the p99 — which is why `--rate` exists. (Only the stall's own
/// length is compared with: how fast the catch-up after it goes is the
/// platform's, and under Wine it takes long enough to move the median.)
#[test]
fn open_loop_latency_counts_from_the_schedule() {
    let stalling = |rate: Option<f64>| {
        let server = serve(Behaviour::StallOnceAfter(64 * 100));
        let args = against(&server).conns(4).size(64).secs(2.0);
        let run = match rate {
            Some(r) => args.rate(r),
            None => args,
        }
        .run(RUN_LIMIT);
        run.assert_exit(0);
        run.report()
    };
    let open = stalling(Some(200.0));
    let corrected = open.latency().p99();
    let uncorrected = open.latency_uncorrected().p99();
    assert!(
        corrected >= SHOWS_STALL_US,
        "open loop p99 {corrected} µs hides a {STALL:?} stall"
    );
    assert!(
        uncorrected < SHOWS_STALL_US,
        "uncorrected p99 {uncorrected} µs: only the messages in flight at the stall wait it out"
    );
    assert!(
        corrected >= uncorrected,
        "{corrected} µs < {uncorrected} µs"
    );

    let p99 = stalling(None).latency().p99();
    assert!(
        p99 < SHOWS_STALL_US,
        "closed loop p99 {p99} µs: the stall should hide there"
    );
}

/// Proves a server that accepts but never echoes cannot hang the client: the
/// connections are declared stalled after `--echo-timeout` and the run fails.
#[test]
fn silent_server_is_reported_as_stalled() {
    let server = serve(Behaviour::Silent);
    let run = against(&server)
        .conns(3)
        .messages(30)
        .echo_timeout(0.5)
        .run(RUN_LIMIT);
    run.assert_exit(1);
    let r = run.report();
    assert_eq!(r.stalled, 3);
    assert_eq!(r.messages, 0);
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

/// Proves a run that tested nothing cannot pass: against a black hole
/// (connects neither succeed nor fail), a timed run in load mode and one in
/// churn mode both end with every connect still in progress, and both fail
/// (exit 1), saying nothing was tested and how many never connected.
#[test]
fn black_hole_fails_as_untested() {
    let (addr, _listener, _fill) = black_hole();
    for mode in ["load", "churn"] {
        let run = StressArgs::to(addr)
            .mode(mode)
            .conns(10)
            .secs(1.0)
            .json()
            .run(RUN_LIMIT);
        run.assert_exit(1);
        let r = run.report();
        assert_eq!(r.connections_established, 0, "{mode}");
        assert_eq!(r.connections_aborted, 10, "{mode}");
        let verdict = r.verdict.expect("a verdict");
        assert!(verdict.contains("nothing was tested"), "{mode}: {verdict}");
    }
}

/// Proves Ctrl-C (SIGINT) against a black hole ends the run promptly with
/// the report so far, and that report fails: the connections it cut off
/// were never established.
#[cfg(unix)]
#[test]
fn interrupted_black_hole_run_fails() {
    let (addr, _listener, _fill) = black_hole();
    let mut run = StressArgs::to(addr).conns(10).secs(60.0).json().spawn();
    // The first status line says the loops are running.
    run.process.stderr.wait_for("conns up");
    run.process.signal(libc::SIGINT);
    let out = run.finish(RUN_LIMIT);
    out.assert_exit(1);
    let r = out.report();
    assert!(r.interrupted, "{}", out.stdout);
    assert_eq!(r.connections_aborted, 10, "{}", out.stdout);
}

/// Proves connections the run never got to attempt count against it: at a
/// connect rate of 50/s, a 1-second run of 1,000 connections attempts only
/// about 50; the other ~950 were never tested, and the run fails saying so.
#[test]
fn connections_never_attempted_fail_the_run() {
    let server = serve(Behaviour::Echo);
    let run = against(&server)
        .conns(1000)
        .flag("--connect-rate", 50)
        .secs(1.0)
        .run(RUN_LIMIT);
    run.assert_exit(1);
    let r = run.report();
    let (attempted, never) = (r.connections_attempted, r.connections_never_attempted);
    assert!(r.messages > 0);
    assert!(attempted < 200, "attempted {attempted}");
    assert_eq!(attempted + never, 1000, "{}", run.stdout);
    assert!(r.verdict.expect("a verdict").contains("never established"));
}

/// Proves a slow server is told apart from a stalled one: against a server
/// that echoes 8 bytes every 50 ms, the echo still arriving when the drain
/// ends (eight 64-byte messages in flight need 3.2 s; the drain lasts 1 s)
/// is reported as unfinished, with how far it got, not as stalled, and the
/// run passes: the messages that did come back all verified.
#[test]
fn slow_echo_at_the_end_is_unfinished_not_stalled() {
    let server = serve(Behaviour::Trickle);
    let run = against(&server)
        .conns(1)
        .size(64)
        .pipeline(8)
        .secs(1.0)
        .echo_timeout(1.0)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    let r = run.report();
    assert_eq!(r.stalled, 0, "{}", run.stdout);
    assert_eq!(r.unfinished, 1, "{}", run.stdout);
    assert!(r.messages >= 1);
    let story = r.first_unfinished.expect("first_unfinished");
    assert!(story.contains("still echoing"), "{story}");
    assert!(!run.stdout.contains("no echo byte"), "{}", run.stdout);
}

/// Proves urgent data from a server is verified as part of the stream: a
/// server that sends the middle byte of every echo with `MSG_OOB` passes
/// every byte check, promptly. Without `SO_OOBINLINE` the urgent byte would
/// vanish (a verification error); without the urgent-mark rule the read
/// that stops at the mark would leave the rest unread (a stall).
#[cfg(unix)]
#[test]
fn urgent_bytes_are_verified_in_the_stream() {
    let server = serve(Behaviour::UrgentMiddle);
    let run = against(&server)
        .conns(4)
        .size(9)
        .messages(400)
        .echo_timeout(NO_STALL_TIMEOUT.as_secs_f64())
        .run(RUN_LIMIT);
    run.assert_exit(0);
    let r = run.report();
    assert_eq!(r.messages, 400);
    assert_eq!(r.verification_errors, 0);
    // Promptly: no connection sat out the echo timeout first.
    assert_eq!(r.stalled, 0, "{}", run.stdout);
    assert!(run.took < NO_STALL_TIMEOUT, "took {:?}", run.took);
}

/// Proves products of flags are checked, not wrapped: a message size near
/// 2^64 and a zero duration are usage errors (exit 2, one line), before any
/// connection is made.
#[test]
fn absurd_sizes_and_durations_are_usage_errors() {
    for args in [
        &["-s", "18446744073709551615", "-k", "2"][..],
        &["-s", "1073741824", "-n", "18446744073709551615"],
        &["-d", "0"],
        &["--echo-timeout", "1e19"],
    ] {
        stress(args).assert_usage_error(&format!("{args:?}"));
    }
}

/// Proves `--source-addrs` spreads the client sockets over the given
/// loopback addresses (Linux routes all of 127.0.0.0/8 to loopback).
#[cfg(target_os = "linux")]
#[test]
fn source_addrs_spread_connections() {
    use std::collections::HashSet;

    let server = serve(Behaviour::Echo);
    let run = against(&server)
        .conns(8)
        .messages(80)
        .flag("--source-addrs", "127.0.0.1-127.0.0.4")
        .run(RUN_LIMIT);
    run.assert_exit(0);
    assert_eq!(run.report().messages, 80);
    let peers: HashSet<IpAddr> = server
        .peers
        .lock()
        .expect("peers")
        .iter()
        .copied()
        .collect();
    let want: HashSet<IpAddr> = (1..=4).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    assert_eq!(peers, want);
}

/// Proves `--help` documents every flag the issue asks for.
#[test]
fn help_lists_every_flag() {
    let run = stress(&["--help"]);
    assert!(run.status.success());
    for flag in [
        "--addr",
        "--connections",
        "--message-size",
        "--pipeline",
        "--duration",
        "--messages",
        "--threads",
        "--connect-rate",
        "--source-addrs",
        "--json",
        "--rate",
        "--max-failures",
        "--mode",
        "--connect-timeout",
        "--echo-timeout",
        "--plot-percentiles",
        "--html",
        "[default: 127.0.0.1:7878]",
    ] {
        assert!(
            run.stdout.contains(flag),
            "--help lacks {flag}:\n{}",
            run.stdout
        );
    }
}

/// Proves output files are checked before any connection is made: an
/// unwritable `--hlog`, `--plot`, `--plot-percentiles` or `--html` path is
/// one line naming the flag and
/// the path, exit status 2, and the server never sees a connect; so is a
/// percentile above 100 (a usage error).
#[test]
fn unwritable_outputs_and_bad_percentiles_fail_before_connecting() {
    let server = serve(Behaviour::Echo);
    let nowhere = std::env::temp_dir()
        .join("echoloop-stress-no-such-dir")
        .join("x");
    let nowhere = nowhere.to_string_lossy();
    for (flag, value) in [
        ("--hlog", &*nowhere),
        ("--plot", &*nowhere),
        ("--plot-percentiles", &*nowhere),
        ("--html", &*nowhere),
        ("--percentiles", "50,101"),
        ("--percentiles", "0"),
    ] {
        let line = StressArgs::to(server.addr)
            .messages(10)
            .flag(flag, value)
            .run(RUN_LIMIT)
            .assert_usage_error(&format!("{flag} {value}"));
        assert!(line.contains(flag), "{flag} {value}: {line}");
    }
    assert!(server.peers.lock().expect("peers").is_empty());
}

/// Proves the open loop reports the uncorrected latency beside the
/// corrected one, and that the gap is what coordinated omission hides:
/// against a server that stalls once for [`STALL`], the latency from each
/// message's schedule has a p99 that shows the stall, while the latency
/// from each actual send (wrk2's `-U`) stays below it — only the few
/// messages in flight when the stall began waited it out (its max shows
/// them). Connect time and time to first byte are reported once per
/// connection, and every field of an open-loop report is read by the
/// tests' typed report.
#[test]
fn open_loop_reports_uncorrected_latency_apart() {
    let server = serve(Behaviour::StallOnceAfter(64 * 100));
    let run = against(&server)
        .conns(4)
        .size(64)
        .rate(200.0)
        .secs(2.0)
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let r = run.report();
    let corrected = r.latency().p99();
    let uncorrected = r.latency_uncorrected().p99();
    assert!(corrected >= SHOWS_STALL_US, "corrected p99 {corrected} µs");
    assert!(
        uncorrected < SHOWS_STALL_US,
        "uncorrected p99 {uncorrected} µs"
    );
    assert!(
        corrected >= uncorrected,
        "{corrected} µs < {uncorrected} µs"
    );
    // The message in flight when the server stopped did wait it out.
    let waited = r.latency_uncorrected().max;
    assert!(waited >= SHOWS_STALL_US, "uncorrected max {waited} µs");
    assert_eq!(r.latency_uncorrected().count, r.messages);
    assert_eq!(r.connect_latency().count, 4);
    assert_eq!(r.first_byte_us.as_ref().expect("first_byte_us").count, 4);
    let histogram = r.histograms.rtt_uncorrected.expect("rtt-uncorrected");
    assert!(histogram.starts_with("HISTF"), "{histogram}");

    // The closed loop has one round trip: no uncorrected series.
    let run = against(&server).conns(2).messages(20).run(RUN_LIMIT);
    run.assert_exit(0);
    assert!(run.report().latency_uncorrected_us.is_none());
}

/// Proves `--percentiles` picks what the report shows, in text and JSON.
#[test]
fn percentiles_flag_picks_the_columns() {
    let server = serve(Behaviour::Echo);
    let args = StressArgs::to(server.addr)
        .conns(2)
        .messages(200)
        .flag("--percentiles", "50,99.99");
    let run = args.run(RUN_LIMIT);
    run.assert_exit(0);
    assert!(run.stdout.contains("latency:      p50 "), "{}", run.stdout);
    assert!(run.stdout.contains(" p99.99 "), "{}", run.stdout);
    assert!(!run.stdout.contains(" p90 "), "{}", run.stdout);
    let r = args.json().run(RUN_LIMIT).report();
    assert!(r.latency().p("p99_99") > 0.0);
    assert!(!r.latency().percentiles.contains_key("p90"));
}

/// Proves one rule for output files that cannot be written once the run
/// is under way (`/dev/full` takes the open, refuses the bytes): the exit
/// status is 2 for `--hlog`, `--plot`, `--plot-percentiles` and `--html`
/// alike, the text report says
/// which file was not written, and with `--json` the report's `exit_code`
/// is the process's and `output_errors` names the file.
#[cfg(target_os = "linux")]
#[test]
fn unwritable_output_files_fail_the_run_and_say_so() {
    let server = serve(Behaviour::Echo);
    for flag in ["--hlog", "--plot", "--plot-percentiles", "--html"] {
        let base = StressArgs::to(server.addr)
            .conns(2)
            .messages(50)
            .flag(flag, "/dev/full");
        let text = base.run(RUN_LIMIT);
        text.assert_exit(2);
        assert!(
            text.stdout.contains("result:       PASS"),
            "{}",
            text.describe()
        );
        let said = format!("output:       NOT WRITTEN: {flag} /dev/full");
        assert!(text.stdout.contains(&said), "{}", text.describe());

        let json = base.json().run(RUN_LIMIT);
        json.assert_exit(2);
        let r = json.report();
        assert_eq!(r.exit_code, 2, "{}", json.describe());
        assert!(r.verdict.is_none(), "{}", json.describe());
        let errors = &r.output_errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!("{flag} /dev/full")),
            "{errors:?}"
        );
    }
    // Written files: the list is there, and empty.
    let dir = std::env::temp_dir().join(format!("echoloop-stress-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let hlog = dir.join("run.hlog");
    let run = StressArgs::to(server.addr)
        .conns(2)
        .messages(50)
        .json()
        .flag("--hlog", hlog.display())
        .run(RUN_LIMIT);
    run.assert_exit(0);
    run.assert_report_mirrored();
    assert!(run.report().output_errors.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Proves the same file named for two outputs is a usage error before
/// any connection, however it is spelt (`F` and `./F`, an absolute and a
/// relative path): one line naming both flags, exit status 2, and the
/// server never sees a connect.
#[test]
fn one_file_for_two_outputs_is_a_usage_error() {
    let server = serve(Behaviour::Echo);
    let dir = std::env::temp_dir().join(format!("echoloop-stress-same-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let absolute = dir.join("out");
    let spellings = [
        (absolute.clone(), std::path::PathBuf::from("./out")),
        (absolute.clone(), absolute.clone()),
        (dir.join(".").join("out"), std::path::PathBuf::from("out")),
    ];
    let flags = [
        ("--hlog", "--plot"),
        ("--plot", "--plot-percentiles"),
        ("--hlog", "--html"),
        ("--plot-percentiles", "--html"),
    ];
    // Every pair of outputs under one spelling; the others with one pair.
    for (i, (first, second)) in spellings.iter().enumerate() {
        for (a, b) in &flags[if i == 0 { 0 } else { 3 }..] {
            let mut cmd = StressArgs::to(server.addr)
                .messages(10)
                .flag(a, first.display())
                .flag(b, second.display())
                .command();
            let run = Stress::spawn(cmd.current_dir(&dir)).finish(RUN_LIMIT);
            let line = run.assert_usage_error(&format!("{a} {first:?} {b} {second:?}"));
            assert!(line.contains(a) && line.contains(b), "{line}");
            assert!(line.contains("same file"), "{line}");
        }
    }
    assert!(server.peers.lock().expect("peers").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Proves `--interval` below 0.1 s is refused as a usage error (each
/// interval costs a set of histograms and a hand-over per loop; at 1 ms
/// that was most of a gigabyte and two thirds of the throughput), and that
/// its help says what an interval costs.
#[test]
fn interval_below_a_tenth_of_a_second_is_refused() {
    for too_short in ["0.001", "0.05", "0.099"] {
        let run = StressArgs::to("127.0.0.1:9")
            .messages(1)
            .flag("--interval", too_short)
            .run(RUN_LIMIT);
        let line = run.assert_usage_error(too_short);
        assert!(
            line.contains("--interval") && line.contains("0.1"),
            "{line}"
        );
    }
    let help = stress(&["--help"]);
    help.assert_exit(0);
    let flat = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("at least 0.1"), "{flat}");
    assert!(flat.contains("MiB"), "{flat}");
}
