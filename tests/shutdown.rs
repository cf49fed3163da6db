//! Graceful shutdown: stop accepting, deliver every echo already owed,
//! close, exit 0 — and give up after the grace period.

pub mod support;

#[cfg(target_os = "linux")]
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

/// Shutdown while a client that is not reading is owed a full pending
/// buffer: the server reads nothing more, delivers exactly what it had read
/// (the client receives `bytes_out` bytes, a prefix of what it sent, and
/// `bytes_in == bytes_out`), sends end of stream, and stops once the client
/// closes — well before the grace period.
#[test]
fn shutdown_flushes_what_was_read() {
    const CAP: usize = 64 * 1024;
    let server = TestServer::start(|c| {
        c.max_pending = CAP;
        c.shutdown_grace = Duration::from_secs(15);
    });
    let stream = connect(server.addr);
    let data = payload(5, 8 << 20);
    let writer = spawn_writer(&stream, data.clone());
    wait_until("pending output at the cap", TIMEOUT, || {
        server.handle.stats().pending_bytes == CAP as u64
    });

    let started = Instant::now();
    server.handle.shutdown().unwrap();
    let got = read_until_closed(&stream);
    drop(stream);
    let _ = writer.join();
    let stats = server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the grace period"
    );
    assert_eq!(stats.bytes_in, stats.bytes_out, "{stats}");
    assert_eq!(got.len() as u64, stats.bytes_out, "{stats}");
    assert_same(&got, &data[..got.len()]);
    assert!(got.len() >= CAP);
    assert_eq!(stats.shut_down, 1);
    assert_eq!(stats.pending_bytes, 0);
}

/// Shutdown stops accepting: a connect after it is refused by the kernel
/// (the listener is closed) rather than queued.
#[test]
fn shutdown_stops_accepting() {
    let server = TestServer::start(|_| {});
    let addr = server.addr;
    let stats = server.stop();
    assert_eq!(stats.accepted, 0);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener still open after shutdown"
    );
}

/// A client that never reads and never closes cannot hold shutdown
/// hostage: after the grace period the server closes it and returns.
#[test]
fn shutdown_gives_up_after_grace() {
    let grace = Duration::from_millis(300);
    let server = TestServer::start(|c| c.shutdown_grace = grace);
    let stream = connect(server.addr);
    let writer = spawn_writer(&stream, payload(6, 8 << 20));
    wait_until("pending output", TIMEOUT, || {
        server.handle.stats().pending_bytes > 0
    });
    let started = Instant::now();
    let stats = server.stop();
    let took = started.elapsed();
    assert!(took >= grace, "stopped before the grace period: {took:?}");
    assert!(
        took < grace + Duration::from_secs(3),
        "stopped late: {took:?}"
    );
    assert_eq!(stats.shut_down, 1);
    assert_eq!(stats.active, 0);
    drop(stream);
    let _ = writer.join();
}

/// SIGTERM to the real binary: it flushes what was pending (the client gets
/// exactly the bytes the server reports echoing, a prefix of what it sent)
/// and exits 0.
#[cfg(unix)]
#[test]
fn sigterm_flushes_and_exits_zero() {
    let mut server = Binary::start(&["--stats-interval", "0.05", "--shutdown-grace", "15"]);
    let stream = connect(server.addr);
    let data = payload(8, 8 << 20);
    let writer = spawn_writer(&stream, data.clone());
    server.stderr.wait_for("pending_bytes=65536");
    server.signal(libc::SIGTERM);
    server.assert_graceful_exit(stream, writer, &data);
}

/// A second signal during a long graceful shutdown exits at once, with a
/// non-zero code (130, as for an interrupted program).
#[cfg(unix)]
#[test]
fn second_signal_exits_at_once() {
    let mut server = Binary::start(&["--shutdown-grace", "60", "--stats-interval", "0.05"]);
    let stream = connect(server.addr);
    let writer = spawn_writer(&stream, payload(9, 8 << 20));
    // A client that never reads or closes, and is owed output it has not
    // taken, keeps the graceful shutdown waiting (for the whole 60 s
    // grace, were it not for the second signal).
    server.stderr.wait_for("pending_bytes=65536");
    server.signal(libc::SIGTERM);
    server.stderr.wait_for("shutting down");
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(stream);
    let _ = writer.join();
}

/// Clients that took every echoed byte but do not close on our end of
/// stream are owed nothing: with them alone, SIGTERM closes at once instead
/// of waiting out the grace period (60 s here), and the exit says all
/// were shut down, with no warning about output still owed.
#[cfg(target_os = "linux")]
#[test]
fn shutdown_does_not_wait_for_peers_owed_nothing() {
    let mut server = Binary::start(&["--shutdown-grace", "60"]);
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let c = connect(server.addr);
            let data = payload(i, 1000);
            (&c).write_all(&data).unwrap();
            let mut got = vec![0; data.len()];
            (&c).read_exact(&mut got).unwrap();
            assert_same(&got, &data);
            c
        })
        .collect();
    server.signal(libc::SIGTERM);
    // Each client reads our end of stream, and keeps its side open.
    for c in &clients {
        assert_eq!((&*c).read(&mut [0u8; 1]).unwrap(), 0);
    }
    let last = server.stderr.wait_for("stopped:");
    assert_eq!(server.wait_exit().code(), Some(0));
    assert_eq!(stat(&last, "shut_down"), 100, "{last}");
    assert_eq!(stat(&last, "pending_bytes"), 0, "{last}");
    drop(clients);
}

/// When the grace period does run out, the warning says what is really
/// owed: a client that never reads is owed the output held here and what
/// the kernel sent it unacknowledged; a client that has taken every echo
/// and, after one more burst, gone quiet without closing is closed early
/// (owed nothing) and is not counted in.
#[cfg(target_os = "linux")]
#[test]
fn grace_warning_says_what_is_owed() {
    let mut server = Binary::start(&["--shutdown-grace", "2", "--stats-interval", "0.05"]);
    let chatty = connect(server.addr);
    (&chatty).write_all(b"hello").unwrap();
    (&chatty).read_exact(&mut [0u8; 5]).unwrap();
    let stuck = connect(server.addr);
    let writer = spawn_writer(&stuck, payload(10, 8 << 20));
    server.stderr.wait_for("pending_bytes=65536");
    server.signal(libc::SIGTERM);
    // The burst once the server has stopped reading: what it read before
    // the signal, it has echoed and the client has taken.
    server.stderr.wait_for("shutting down");
    let chatter = spawn_writer(&chatty, payload(11, 1 << 20));
    let warning = server.stderr.wait_for("shutdown grace over");
    assert!(
        warning.contains("closing 1 connection: 1 still owed output (65536 bytes held here, "),
        "{warning}"
    );
    let unacked: u64 = warning
        .split("held here, ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no unacknowledged count in {warning}"));
    assert!(unacked > 0, "{warning}");
    assert_eq!(server.wait_exit().code(), Some(0));
    drop((chatty, stuck));
    let _ = (writer.join(), chatter.join());
}

/// SIGHUP starts the same graceful shutdown as SIGTERM (exit 0)...
#[cfg(unix)]
#[test]
fn sighup_shuts_down_gracefully() {
    let mut server = Binary::start(&[]);
    assert_echo(&connect(server.addr), b"before");
    server.signal(libc::SIGHUP);
    server.stderr.wait_for("shutting down");
    assert_eq!(server.wait_exit().code(), Some(0));
}

/// ...unless SIGHUP was ignored when the server started, as `nohup`
/// arranges: then it stays ignored. SIGHUP then SIGTERM make one signal,
/// not two: a graceful exit 0, where a handled SIGHUP would have made the
/// SIGTERM a second signal (exit 130). On Linux the disposition itself is
/// checked too.
#[cfg(unix)]
#[test]
fn sighup_ignored_at_start_stays_ignored() {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(ECHOLOOP);
    // SAFETY: signal(2) is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut server = Binary::start_with(&mut cmd);
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
            .expect("read /proc status");
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .expect("SigIgn");
        assert_ne!(
            ignored & (1 << (libc::SIGHUP - 1)),
            0,
            "SIGHUP no longer ignored"
        );
    }
    assert_echo(&connect(server.addr), b"serving");
    server.signal(libc::SIGHUP);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0));
}
