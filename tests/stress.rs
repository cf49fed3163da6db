//! End-to-end tests of the `echoloop-stress` binary.
//!
//! Each test runs the real binary against an echo server written here, in the
//! test: a plain thread-per-connection blocking server (anyone's RFC 862
//! server, not ours), or a deliberately broken variant of it. Everything is on
//! 127.0.0.1 with port 0, every run is bounded by `--messages` or a short
//! `--duration`, and every wait on the child has a timeout.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub mod support;

use support::{Field, Stress, StressRun, STRESS};

/// Longest any run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

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
    /// Echo, but once this many bytes have come in, stop for 500 ms (a
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
                thread::sleep(Duration::from_millis(500)); // the behaviour under test
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
    Stress::spawn(Command::new(STRESS).args(args)).finish(RUN_LIMIT)
}

/// Proves the load mode's core promise against a third-party style server:
/// 20 connections with 4 messages in flight each, split over two loops,
/// echo exactly the 2,000 messages asked for, every byte verified, and the
/// JSON report says so (and parses as JSON).
#[test]
fn load_mode_echoes_exact_count_all_verified() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "20",
        "--pipeline",
        "4",
        "--message-size",
        "100",
        "--messages",
        "2000",
        "--threads",
        "2",
        "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    assert_eq!(j["messages"].u64(), 2000);
    assert_eq!(j["bytes"].u64(), 200_000);
    assert_eq!(j["verification_errors"].u64(), 0);
    assert_eq!(j["connections_attempted"].u64(), 20);
    assert_eq!(j["connections_established"].u64(), 20);
    assert_eq!(j["connections_failed"].u64(), 0);
    assert_eq!(j["unexpected_closes"].u64(), 0);
    assert_eq!(j["latency_us"]["count"].u64(), 2000);
    assert!(j["latency_us"]["p50"].f64() > 0.0);
    assert!(j["latency_us"]["p99"].f64() >= j["latency_us"]["p50"].f64());
    assert_eq!(j["exit_code"].u64(), 0);
}

/// Proves the open loop sends on its schedule rather than as fast as it
/// can: 4 connections at 200 msg/s each for one second is about 800
/// messages, all verified.
#[test]
fn open_loop_rate_sends_on_schedule() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "4",
        "--rate",
        "200",
        "--duration",
        "1",
        "--message-size",
        "64",
        "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    let messages = j["messages"].u64();
    assert!(
        (700..=850).contains(&messages),
        "{messages} messages, expected ~800"
    );
    assert_eq!(j["verification_errors"].u64(), 0);
    assert_eq!(j["rate_per_connection"].f64(), 200.0);
}

/// Proves churn mode opens, echoes through and closes one connection per
/// cycle: 200 cycles with 4 in flight give 200 connects, 200 verified
/// echoes and a connections-per-second figure.
#[test]
fn churn_mode_counts_cycles() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--mode",
        "churn",
        "--connections",
        "4",
        "--messages",
        "200",
        "--message-size",
        "32",
        "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    assert_eq!(j["churn_cycles"].u64(), 200);
    assert_eq!(j["connections_attempted"].u64(), 200);
    assert_eq!(j["connections_established"].u64(), 200);
    assert_eq!(j["messages"].u64(), 200);
    assert_eq!(j["verification_errors"].u64(), 0);
    assert!(j["connections_per_sec"].f64() > 0.0);
    assert_eq!(server.peers.lock().expect("peers").len(), 200);
}

/// Proves idle mode holds every connection for the duration and then checks
/// each one still echoes: 50 held, 50 verified.
#[test]
fn idle_mode_verifies_every_survivor() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--mode",
        "idle",
        "--connections",
        "50",
        "--duration",
        "0.3",
        "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    assert_eq!(j["idle_held"].u64(), 50);
    assert_eq!(j["idle_survived"].u64(), 50);
    assert_eq!(j["messages"].u64(), 50);
    assert_eq!(j["verification_errors"].u64(), 0);
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
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "5",
        "--message-size",
        "100",
        "--messages",
        "500",
        "--json",
    ]);
    run.assert_exit(1);
    let j = run.json();
    assert_eq!(j["verification_errors"].u64(), 5);
    // Each connection verified its first 10 messages, then hit the flip.
    assert_eq!(j["messages"].u64(), 50);
    let first = j["first_verification_error"].str();
    assert!(first.contains("stream byte 1000"), "{first}");
    assert_eq!(j["exit_code"].u64(), 1);
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
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "5",
        "--messages",
        "5",
        "--json",
    ]);
    run.assert_exit(1);
    let j = run.json();
    assert_eq!(j["connections_attempted"].u64(), 5);
    assert_eq!(j["connections_failed"].u64(), 5);
    assert_eq!(j["failed_by_reason"]["refused"].u64(), 5);
    assert!(j["first_failed_by_reason"]["refused"].str().contains(&addr));

    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "5",
        "--messages",
        "5",
        "--max-failures",
        "5",
    ]);
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
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "10",
        "--messages",
        "100",
        "--json",
        "--max-failures",
        "5",
    ]);
    run.assert_exit(0);
    let j = run.json();
    assert_eq!(j["connections_established"].u64(), 10);
    assert_eq!(j["unexpected_closes"].u64(), 5);
    assert_eq!(j["closed_before_echo"].u64(), 5);
    assert_eq!(j["messages"].u64(), 50);
    assert_eq!(j["verification_errors"].u64(), 0);
}

/// Proves an end of stream that arrives together with the last bytes (one
/// readiness event for both) is seen as the close it is: each connection
/// is counted as an unexpected close at once, not left waiting for more
/// echo and reported stalled.
#[test]
fn close_with_last_bytes_is_an_unexpected_close_not_a_stall() {
    let server = serve(Behaviour::EchoThenClose(1050));
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "4",
        "--message-size",
        "100",
        "--messages",
        "1000",
        "--echo-timeout",
        "5",
        "--json",
    ]);
    run.assert_exit(1);
    let j = run.json();
    assert_eq!(j["unexpected_closes"].u64(), 4, "{}", run.stdout);
    assert_eq!(j["stalled"].u64(), 0, "{}", run.stdout);
    assert_eq!(j["verification_errors"].u64(), 0);
    assert!(run.took < Duration::from_secs(4), "took {:?}", run.took);
}

/// Proves the open loop corrects for coordinated omission: a server that
/// stalls once for 500 ms holds back every message scheduled during the
/// stall, and their latency counts from when each was *due*, so about a
/// quarter of a 2 s run at 200 msg/s shows up to 500 ms and the p99 is
/// far above the p50. The closed loop over the same server sees one slow
/// message per connection, lost in the p99 — which is why `--rate` exists.
#[test]
fn open_loop_latency_counts_from_the_schedule() {
    let open = {
        let server = serve(Behaviour::StallOnceAfter(64 * 100));
        let addr = server.addr.to_string();
        stress(&[
            "--addr",
            &addr,
            "--connections",
            "4",
            "--message-size",
            "64",
            "--rate",
            "200",
            "--duration",
            "2",
            "--json",
        ])
    };
    assert!(
        open.status.success(),
        "{}{}",
        open.stdout,
        open.stderr_text()
    );
    let j = open.json();
    let (p50, p99) = (j["latency_us"]["p50"].f64(), j["latency_us"]["p99"].f64());
    assert!(
        p99 >= 300_000.0,
        "open loop p99 {p99} µs hides a 500 ms stall"
    );
    assert!(p50 < 100_000.0, "open loop p50 {p50} µs");

    let closed = {
        let server = serve(Behaviour::StallOnceAfter(64 * 100));
        let addr = server.addr.to_string();
        stress(&[
            "--addr",
            &addr,
            "--connections",
            "4",
            "--message-size",
            "64",
            "--duration",
            "2",
            "--json",
        ])
    };
    assert!(
        closed.status.success(),
        "{}{}",
        closed.stdout,
        closed.stderr_text()
    );
    let p99 = closed.json()["latency_us"]["p99"].f64();
    assert!(
        p99 < 300_000.0,
        "closed loop p99 {p99} µs: the stall should hide there"
    );
}

/// Proves a server that accepts but never echoes cannot hang the client: the
/// connections are declared stalled after `--echo-timeout` and the run fails.
#[test]
fn silent_server_is_reported_as_stalled() {
    let server = serve(Behaviour::Silent);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "3",
        "--messages",
        "30",
        "--echo-timeout",
        "0.5",
        "--json",
    ]);
    run.assert_exit(1);
    let j = run.json();
    assert_eq!(j["stalled"].u64(), 3);
    assert_eq!(j["messages"].u64(), 0);
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

/// Proves a run that tested nothing cannot pass: against a black hole
/// (connects neither succeed nor fail), a timed run in load mode and one in
/// churn mode both end with every connect still in progress, and both fail
/// (exit 1), saying nothing was tested and how many never connected.
#[test]
fn black_hole_fails_as_untested() {
    let (addr, _listener, _fill) = black_hole();
    let addr = addr.to_string();
    for mode in ["load", "churn"] {
        let run = stress(&[
            "--addr", &addr, "--mode", mode, "-c", "10", "-d", "1", "--json",
        ]);
        run.assert_exit(1);
        let j = run.json();
        assert_eq!(j["connections_established"].u64(), 0, "{mode}");
        assert_eq!(j["connections_aborted"].u64(), 10, "{mode}");
        let verdict = j["verdict"].str();
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
    let mut run = Stress::spawn(Command::new(STRESS).args([
        "--addr",
        &addr.to_string(),
        "-c",
        "10",
        "-d",
        "60",
        "--json",
    ]));
    // The first status line says the loops are running.
    run.process.stderr.wait_for("conns up");
    run.process.signal(libc::SIGINT);
    let out = run.finish(RUN_LIMIT);
    out.assert_exit(1);
    assert!(
        out.stdout.contains("\"interrupted\": true"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\"connections_aborted\": 10"),
        "{}",
        out.stdout
    );
}

/// Proves connections the run never got to attempt count against it: at a
/// connect rate of 50/s, a 1-second run of 1,000 connections attempts only
/// about 50; the other ~950 were never tested, and the run fails saying so.
#[test]
fn connections_never_attempted_fail_the_run() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "-c",
        "1000",
        "--connect-rate",
        "50",
        "-d",
        "1",
        "--json",
    ]);
    run.assert_exit(1);
    let j = run.json();
    let attempted = j["connections_attempted"].u64();
    let never = j["connections_never_attempted"].u64();
    assert!(j["messages"].u64() > 0);
    assert!(attempted < 200, "attempted {attempted}");
    assert_eq!(attempted + never, 1000, "{}", run.stdout);
    assert!(j["verdict"].str().contains("never established"));
}

/// Proves a slow server is told apart from a stalled one: against a server
/// that echoes 8 bytes every 50 ms, the echo still arriving when the drain
/// ends (eight 64-byte messages in flight need 3.2 s; the drain lasts 1 s)
/// is reported as unfinished, with how far it got, not as stalled, and the
/// run passes: the messages that did come back all verified.
#[test]
fn slow_echo_at_the_end_is_unfinished_not_stalled() {
    let server = serve(Behaviour::Trickle);
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "-c",
        "1",
        "-s",
        "64",
        "-k",
        "8",
        "-d",
        "1",
        "--echo-timeout",
        "1",
        "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    assert_eq!(j["stalled"].u64(), 0, "{}", run.stdout);
    assert_eq!(j["unfinished"].u64(), 1, "{}", run.stdout);
    assert!(j["messages"].u64() >= 1);
    let story = j["first_unfinished"].str();
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
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "-c",
        "4",
        "-s",
        "9",
        "-n",
        "400",
        "--echo-timeout",
        "5",
        "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    assert_eq!(j["messages"].u64(), 400);
    assert_eq!(j["verification_errors"].u64(), 0);
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
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
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr",
        &addr,
        "--connections",
        "8",
        "--messages",
        "80",
        "--source-addrs",
        "127.0.0.1-127.0.0.4",
        "--json",
    ]);
    run.assert_exit(0);
    assert_eq!(run.json()["messages"].u64(), 80);
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
/// unwritable `--hlog` or `--plot` path is one line naming the flag and
/// the path, exit status 2, and the server never sees a connect; so is a
/// percentile above 100 (a usage error).
#[test]
fn unwritable_outputs_and_bad_percentiles_fail_before_connecting() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let nowhere = std::env::temp_dir()
        .join("echoloop-stress-no-such-dir")
        .join("x");
    let nowhere = nowhere.to_string_lossy();
    for (args, says) in [
        (&["--hlog", &nowhere][..], "--hlog"),
        (&["--plot", &nowhere], "--plot"),
        (&["--percentiles", "50,101"], "--percentiles"),
        (&["--percentiles", "0"], "--percentiles"),
    ] {
        let mut argv = vec!["--addr", &addr, "-n", "10"];
        argv.extend_from_slice(args);
        let line = stress(&argv).assert_usage_error(&format!("{args:?}"));
        assert!(line.contains(says), "{args:?}: {line}");
    }
    assert!(server.peers.lock().expect("peers").is_empty());
}

/// Proves the open loop reports the uncorrected latency beside the
/// corrected one, and that the gap is what coordinated omission hides:
/// against a server that stalls once for 500 ms, the latency from each
/// message's schedule has a p99 of 300 ms or more, while the latency from
/// each actual send (wrk2's `-U`) stays far below it — only the few
/// messages in flight when the stall began waited it out. Connect time and
/// time to first byte are reported once per connection.
#[test]
fn open_loop_reports_uncorrected_latency_apart() {
    let server = serve(Behaviour::StallOnceAfter(64 * 100));
    let addr = server.addr.to_string();
    let run = stress(&[
        "--addr", &addr, "-c", "4", "-s", "64", "--rate", "200", "-d", "2", "--json",
    ]);
    run.assert_exit(0);
    let j = run.json();
    let corrected = j["latency_us"]["p99"].f64();
    let uncorrected = j["latency_uncorrected_us"]["p99"].f64();
    assert!(corrected >= 300_000.0, "corrected p99 {corrected} µs");
    assert!(uncorrected < 100_000.0, "uncorrected p99 {uncorrected} µs");
    assert_eq!(
        j["latency_uncorrected_us"]["count"].u64(),
        j["messages"].u64()
    );
    assert_eq!(j["connect_latency_us"]["count"].u64(), 4);
    assert_eq!(j["first_byte_us"]["count"].u64(), 4);
    assert!(
        run.stdout.contains("\"rtt-uncorrected\": \"HISTF"),
        "{}",
        run.stdout
    );

    // The closed loop has one round trip: no uncorrected series.
    let run = stress(&["--addr", &addr, "-c", "2", "-n", "20", "--json"]);
    run.assert_exit(0);
    assert!(run.json()["latency_uncorrected_us"].is_null());
}

/// Proves `--percentiles` picks what the report shows, in text and JSON.
#[test]
fn percentiles_flag_picks_the_columns() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let args = [
        "--addr",
        &addr,
        "-c",
        "2",
        "-n",
        "200",
        "--percentiles",
        "50,99.99",
    ];
    let run = stress(&args);
    run.assert_exit(0);
    assert!(run.stdout.contains("latency:      p50 "), "{}", run.stdout);
    assert!(run.stdout.contains(" p99.99 "), "{}", run.stdout);
    assert!(!run.stdout.contains(" p90 "), "{}", run.stdout);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let j = stress(&json_args).json();
    assert!(j["latency_us"]["p99_99"].f64() > 0.0);
    assert!(j["latency_us"]["p90"].is_null());
}

/// Proves one rule for output files that cannot be written once the run
/// is under way (`/dev/full` takes the open, refuses the bytes): the exit
/// status is 2 for `--hlog` and for `--plot` alike, the text report says
/// which file was not written, and with `--json` the report's `exit_code`
/// is the process's and `output_errors` names the file.
#[cfg(target_os = "linux")]
#[test]
fn unwritable_output_files_fail_the_run_and_say_so() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    for flag in ["--hlog", "--plot"] {
        let base = ["--addr", &addr, "-c", "2", "-n", "50", flag, "/dev/full"];
        let text = Stress::spawn(Command::new(STRESS).args(base)).finish(RUN_LIMIT);
        text.assert_exit(2);
        assert!(
            text.stdout.contains("result:       PASS"),
            "{}",
            text.describe()
        );
        let said = format!("output:       NOT WRITTEN: {flag} /dev/full");
        assert!(text.stdout.contains(&said), "{}", text.describe());

        let json = Stress::spawn(Command::new(STRESS).args(base).arg("--json")).finish(RUN_LIMIT);
        json.assert_exit(2);
        let j = json.json();
        assert_eq!(j["exit_code"].u64(), 2, "{}", json.describe());
        assert!(j["verdict"].is_null(), "{}", json.describe());
        let errors = j["output_errors"].as_array().expect("output_errors");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].str().starts_with(&format!("{flag} /dev/full")),
            "{errors:?}"
        );
    }
    // Written files: the list is there, and empty.
    let dir = std::env::temp_dir().join(format!("echoloop-stress-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let hlog = dir.join("run.hlog");
    let run = Stress::spawn(
        Command::new(STRESS)
            .args(["--addr", &addr, "-c", "2", "-n", "50", "--json", "--hlog"])
            .arg(&hlog),
    )
    .finish(RUN_LIMIT);
    run.assert_exit(0);
    assert_eq!(run.json()["output_errors"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Proves the same file named for two outputs is a usage error before
/// any connection, however it is spelt (`F` and `./F`, an absolute and a
/// relative path): one line naming both flags, exit status 2, and the
/// server never sees a connect.
#[test]
fn one_file_for_two_outputs_is_a_usage_error() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let dir = std::env::temp_dir().join(format!("echoloop-stress-same-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let absolute = dir.join("out");
    for (hlog, plot) in [
        (absolute.clone(), absolute.clone()),
        (absolute.clone(), std::path::PathBuf::from("./out")),
        (dir.join(".").join("out"), std::path::PathBuf::from("out")),
    ] {
        let run = Stress::spawn(
            Command::new(STRESS)
                .current_dir(&dir)
                .args(["--addr", &addr, "-n", "10", "--hlog"])
                .arg(&hlog)
                .arg("--plot")
                .arg(&plot),
        )
        .finish(RUN_LIMIT);
        let line = run.assert_usage_error(&format!("--hlog {hlog:?} --plot {plot:?}"));
        assert!(line.contains("--hlog") && line.contains("--plot"), "{line}");
        assert!(line.contains("same file"), "{line}");
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
        let run = Stress::spawn(Command::new(STRESS).args([
            "--addr",
            "127.0.0.1:9",
            "-n",
            "1",
            "--interval",
            too_short,
        ]))
        .finish(RUN_LIMIT);
        let line = run.assert_usage_error(too_short);
        assert!(
            line.contains("--interval") && line.contains("0.1"),
            "{line}"
        );
    }
    let help = Stress::spawn(Command::new(STRESS).arg("--help")).finish(RUN_LIMIT);
    help.assert_exit(0);
    let flat = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("at least 0.1"), "{flat}");
    assert!(flat.contains("MiB"), "{flat}");
}
