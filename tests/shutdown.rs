//! Graceful shutdown: stop accepting, deliver every echo already owed,
//! close, exit 0 — and give up after the grace period.

mod common;

use std::time::{Duration, Instant};

use common::*;

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
    wait_until("pending output at the cap", || {
        server.stats().pending_bytes == CAP as u64
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
    wait_until("pending output", || server.stats().pending_bytes > 0);
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
    server.wait_for_line("pending_bytes=65536");
    server.signal(libc::SIGTERM);
    server.assert_graceful_exit(stream, writer, &data);
}

/// A second signal during a long graceful shutdown exits at once, with a
/// non-zero code (130, as for an interrupted program).
#[cfg(unix)]
#[test]
fn second_signal_exits_at_once() {
    use std::io::Write;
    let mut server = Binary::start(&["--shutdown-grace", "60"]);
    let stream = connect(server.addr);
    let writer = spawn_writer(&stream, payload(9, 8 << 20));
    // A client that never reads or closes keeps the graceful shutdown
    // waiting (for the whole 60 s grace, were it not for the second signal).
    (&stream).write_all(b"x").ok();
    server.signal(libc::SIGTERM);
    server.wait_for_line("shutting down");
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(stream);
    let _ = writer.join();
}
