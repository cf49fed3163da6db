//! The programs in `examples/` are part of what the project teaches, so they
//! are tested like the server: each one is run as a real process (the built
//! example binary), on 127.0.0.1 port 0, and real clients check that it
//! echoes byte for byte, survives partial writes, honours a half-close and
//! closes its side afterwards.
//!
//! Every wait is a socket read timeout or a channel receive timeout: no test
//! sleeps to let something happen, and none can hang for more than a few
//! seconds per step.
//!
//! `cargo test` builds the examples itself; `cargo test --test examples` does
//! not, so on Unix this file runs `cargo build --examples` (same profile and
//! target directory) once before the first test. It is a no-op when they are
//! up to date.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for any single wait (a read, a process start, an exit).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The payload large enough to fill the socket buffers on both sides, so the
/// server's writes come back partial (or `WouldBlock`) and must be resumed.
const BIG: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// accept_one serves exactly one client completely: small and binary
/// messages round-trip byte for byte, a 4 MiB stream read concurrently comes
/// back intact, the listening socket is closed once the client is accepted
/// (a second client is refused), the server closes its side after the
/// client's `shutdown(Write)`, and the process then exits with status 0.
#[test]
fn accept_one_serves_one_client_and_exits() {
    let mut server = Server::start("accept_one", &[]);
    let mut client = connect(server.addr);
    round_trips(&mut client, 1);

    // The server has accepted us (it echoed), so it has closed its listener.
    match TcpStream::connect_timeout(&server.addr, STEP_TIMEOUT) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("a second client must be refused after the first, got {other:?}"),
    }

    stream_big(&client, 2);
    expect_close_after_half_close(client);
    let status = server.wait_exit();
    assert!(status.success(), "accept_one exited with {status}");
}

/// thread_per_connection serves several clients at the same time, each one
/// fully (round trips, a 4 MiB stream, half-close then close).
#[test]
fn thread_per_connection_serves_concurrent_clients() {
    let server = Server::start("thread_per_connection", &["8"]);
    run_concurrent_sessions(server.addr, 6);
    // And it goes on accepting after they have all left.
    run_concurrent_sessions(server.addr, 2);
}

/// thread_per_connection's bound: with MAX_THREADS = 1, a second client is
/// connected by the kernel (it waits in the backlog) but gets no echo while
/// the first is being served, and is served as soon as the first leaves.
#[test]
fn thread_per_connection_waits_at_the_bound() {
    let server = Server::start("thread_per_connection", &["1"]);
    let mut first = connect(server.addr);
    round_trips(&mut first, 3); // the only thread is now busy with `first`

    let mut second = connect(server.addr);
    second
        .write_all(b"queued")
        .expect("write to the waiting client");
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set_read_timeout");
    let mut byte = [0u8; 1];
    match second.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the second client must wait while the bound is reached, got {other:?}"),
    }

    expect_close_after_half_close(first); // frees the one slot
    second
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("set_read_timeout");
    let mut got = [0u8; 6];
    second
        .read_exact(&mut got)
        .expect("the waiting client is served once a slot frees");
    assert_eq!(&got, b"queued");
    expect_close_after_half_close(second);
}

/// minimal_loop, the one-thread mio loop, serves several clients at once
/// with the full session each (round trips, 4 MiB stream, half-close).
#[test]
fn minimal_loop_serves_concurrent_clients() {
    let server = Server::start("minimal_loop", &[]);
    run_concurrent_sessions(server.addr, 8);
    run_concurrent_sessions(server.addr, 2);
}

/// minimal_loop under backpressure: the client sends 4 MiB while NOT
/// reading, so the loop's writes must come back partial / `WouldBlock`, it
/// must keep the unsent bytes, stop reading that client, wait for WRITABLE,
/// and resume. The reader starts late (after 1 MiB was sent, or when the
/// writer has visibly stalled) and still gets every byte, in order. Another
/// client is served meanwhile: one stalled peer does not block the loop.
#[test]
fn minimal_loop_survives_a_client_that_reads_late() {
    let server = Server::start("minimal_loop", &[]);
    let slow = connect(server.addr);
    let payload = Arc::new(common::payload(7, BIG));

    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let writer = {
        let mut stream = slow.try_clone().expect("try_clone");
        let payload = Arc::clone(&payload);
        thread::spawn(move || {
            for (i, chunk) in payload.chunks(64 * 1024).enumerate() {
                stream.write_all(chunk).expect("write to minimal_loop");
                let _ = progress_tx.send((i + 1) * 64 * 1024);
            }
            stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
        })
    };

    // Let the writer get ahead: 1 MiB sent, or no progress for 500 ms
    // (it is blocked because the server stopped reading us: backpressure).
    loop {
        match progress_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(sent) if sent >= 1024 * 1024 => break,
            Ok(_) => continue,
            Err(_) => break,
        }
    }

    // While `slow` is stalled, the loop still serves someone else.
    let mut other = connect(server.addr);
    round_trips(&mut other, 8);
    expect_close_after_half_close(other);

    let echoed = read_to_eof(&slow);
    writer.join().expect("writer thread");
    assert_same(&echoed, &payload, "late reader");
}

/// fork_per_connection serves several clients at once, each in its own
/// process, with the full session each; the parent goes on accepting
/// after the children have finished.
#[cfg(unix)]
#[test]
fn fork_per_connection_serves_concurrent_clients() {
    let server = Server::start("fork_per_connection", &[]);
    run_concurrent_sessions(server.addr, 6);
    run_concurrent_sessions(server.addr, 2);
}

// ---------------------------------------------------------------------------
// The completion-model examples: io_uring_loop (Linux) and iocp_loop
// (Windows, run under Wine in CI)
// ---------------------------------------------------------------------------

/// io_uring_loop echoes byte for byte on one connection, message sizes from
/// 1 byte to 16 MiB (either side of its 16 KiB buffers, and far more than
/// the socket buffers hold, so sends complete partially and are resumed).
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_echoes_1_byte_to_16_mib() {
    let Some(server) = io_uring_server(&[]) else {
        return;
    };
    echo_every_size(server.addr);
}

/// io_uring_loop after a half-close: everything sent before the client's
/// FIN comes back, then the server's FIN (EOF), and nothing else.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_echoes_everything_before_a_half_close() {
    let Some(server) = io_uring_server(&[]) else {
        return;
    };
    half_close_then_read(server.addr);
}

/// io_uring_loop serves 100 clients connected at the same time, each its
/// own payload, byte for byte, each closed after its half-close.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_serves_100_concurrent_clients() {
    let Some(server) = io_uring_server(&[]) else {
        return;
    };
    hundred_clients(server.addr);
}

/// A client of io_uring_loop that resets (SO_LINGER 0, then close) while
/// its echo is in flight does not disturb the clients streaming meanwhile,
/// and the server goes on accepting.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_survives_a_client_that_resets() {
    let Some(server) = io_uring_server(&[]) else {
        return;
    };
    reset_among_others(server.addr);
}

/// io_uring_loop's backpressure: a client that sends 4 MiB before reading
/// any of it has its receive cancelled at the per-connection buffer limit
/// and re-armed as the echo drains; it gets every byte in order, and
/// another client is served while it is stalled.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_survives_a_client_that_reads_late() {
    let Some(server) = io_uring_server(&[]) else {
        return;
    };
    late_reader_and_another(server.addr);
}

/// io_uring_loop's ENOBUFS path: with a ring of 4 buffers of 512 bytes and
/// 20 clients streaming at once, the ring runs dry (the server logs
/// ENOBUFS) and every starved receive is re-armed when buffers come back:
/// no byte is lost or reordered, and every client is closed after its
/// half-close.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_loses_nothing_when_the_buffer_ring_runs_dry() {
    let args = ["--buffers", "4", "--buffer-size", "512"];
    let Some(server) = io_uring_server(&args) else {
        return;
    };
    let clients: Vec<_> = (0..20u64)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || {
                let stream = connect(addr);
                stream_exact(&stream, &common::payload(900 + i, 256 * 1024));
                expect_close_after_half_close(stream);
            })
        })
        .collect();
    for c in clients {
        c.join()
            .expect("a client failed (its panic message is above)");
    }
    common::wait_until("io_uring_loop to log ENOBUFS", || {
        server_stderr(&server).contains("ENOBUFS")
    });
}

/// io_uring_loop's partial sends: with 1 MiB buffers, some sends come back
/// short (the socket's send buffer had less room), which the server logs,
/// and each rest is sent from where it stopped: 16 MiB streams come back
/// byte for byte. Whether a given stream meets a short send depends on the
/// kernel's send-buffer sizing, so it streams until one was logged (at
/// most 8 times; usually once).
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_resumes_partial_sends() {
    let Some(server) = io_uring_server(&["--buffer-size", "1048576"]) else {
        return;
    };
    let stream = connect(server.addr);
    for round in 0..8 {
        stream_exact(&stream, &common::payload(round, 16 << 20));
        if server_stderr(&server).contains("partial send") {
            break;
        }
    }
    expect_close_after_half_close(stream);
    common::wait_until("io_uring_loop to log a partial send", || {
        server_stderr(&server).contains("partial send")
    });
}

/// A bad io_uring_loop flag is one line on stderr and a non-zero exit.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_rejects_a_bad_flag_in_one_line() {
    let out = Command::new(example_exe("io_uring_loop"))
        .args(["127.0.0.1:0", "--buffers", "3"])
        .output()
        .expect("run io_uring_loop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {}", out.status);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("power of two"), "stderr: {stderr}");
}

/// Off Linux, io_uring_loop says in one line that it is Linux only and
/// exits non-zero.
#[cfg(not(target_os = "linux"))]
#[test]
fn io_uring_loop_says_it_is_linux_only() {
    expect_one_line_refusal("io_uring_loop", "Linux only");
}

/// iocp_loop echoes byte for byte on one connection, message sizes from
/// 1 byte to 16 MiB (partial sends included).
#[cfg(windows)]
#[test]
fn iocp_loop_echoes_1_byte_to_16_mib() {
    let server = Server::start("iocp_loop", &[]);
    echo_every_size(server.addr);
}

/// iocp_loop after a half-close: everything sent before the client's FIN
/// comes back, then `shutdown(SD_SEND)` (EOF), and nothing else.
#[cfg(windows)]
#[test]
fn iocp_loop_echoes_everything_before_a_half_close() {
    let server = Server::start("iocp_loop", &[]);
    half_close_then_read(server.addr);
}

/// iocp_loop serves 100 clients connected at the same time, more than its
/// outstanding AcceptEx calls (4 here) and its 2 worker threads.
#[cfg(windows)]
#[test]
fn iocp_loop_serves_100_concurrent_clients() {
    let server = Server::start("iocp_loop", &["--accepts", "4", "--threads", "2"]);
    hundred_clients(server.addr);
}

/// A client of iocp_loop that resets (SO_LINGER 0, then close) while its
/// echo is in flight does not disturb the clients streaming meanwhile, and
/// the server goes on accepting.
#[cfg(windows)]
#[test]
fn iocp_loop_survives_a_client_that_resets() {
    let server = Server::start("iocp_loop", &[]);
    reset_among_others(server.addr);
}

/// iocp_loop with a client that sends 4 MiB before reading: one operation
/// per connection means it is not read from while its echo is unsent; it
/// gets every byte in order, and another client is served meanwhile.
#[cfg(windows)]
#[test]
fn iocp_loop_survives_a_client_that_reads_late() {
    let server = Server::start("iocp_loop", &[]);
    late_reader_and_another(server.addr);
}

/// iocp_loop stays correct across idle periods longer than its workers'
/// 1 s wake-up: after a client has been served and closed, a timeout of
/// `GetQueuedCompletionStatusEx` must not hand out that client's last
/// completion again (a double free that closed the next client's socket,
/// under Wine, before the worker ignored the count on a timeout). The idle
/// period is a 1.5 s read timeout on the next client, not a sleep.
#[cfg(windows)]
#[test]
fn iocp_loop_replays_no_completion_after_an_idle_wakeup() {
    let server = Server::start("iocp_loop", &["--threads", "1"]);
    full_session(server.addr, 11);
    let mut next = connect(server.addr);
    round_trips(&mut next, 12);
    next.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("set_read_timeout");
    let mut byte = [0u8; 1];
    match next.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("an idle client must get nothing, got {other:?}"),
    }
    next.set_read_timeout(Some(STEP_TIMEOUT))
        .expect("set_read_timeout");
    round_trips(&mut next, 13);
    expect_close_after_half_close(next);
    let stderr = server
        .stderr
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(stderr.is_empty(), "iocp_loop logged errors: {stderr}");
}

/// Off Windows, iocp_loop says in one line that it is Windows only and
/// exits non-zero.
#[cfg(not(windows))]
#[test]
fn iocp_loop_says_it_is_windows_only() {
    expect_one_line_refusal("iocp_loop", "Windows only");
}

/// Starts io_uring_loop, or prints why not and returns None when this
/// kernel refuses io_uring (the example's one "io_uring unavailable" line):
/// the only case in which its tests skip. Any other start-up failure fails.
#[cfg(target_os = "linux")]
fn io_uring_server(extra_args: &[&str]) -> Option<Server> {
    static REFUSED: OnceLock<Option<String>> = OnceLock::new();
    let refused = REFUSED.get_or_init(|| {
        let mut child = Command::new(example_exe("io_uring_loop"))
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn io_uring_loop");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        // The first line comes at once, or the process exits (EOF: "").
        let line = rx
            .recv_timeout(STEP_TIMEOUT)
            .expect("io_uring_loop: no first line and no exit");
        let _ = child.kill();
        let status = child.wait().expect("wait for io_uring_loop");
        if line.starts_with("listening on ") {
            return None;
        }
        let mut err = String::new();
        let _ = child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut err);
        assert!(
            err.contains("io_uring unavailable:") && !status.success(),
            "io_uring_loop failed to start ({status}): {err}"
        );
        Some(err.trim().to_string())
    });
    match refused {
        None => Some(Server::start("io_uring_loop", extra_args)),
        Some(why) => {
            eprintln!("SKIPPED: this kernel refuses io_uring: {why}");
            None
        }
    }
}

/// Runs `name` and expects exactly one line on stderr containing `words`,
/// nothing on stdout, and a non-zero exit.
fn expect_one_line_refusal(name: &str, words: &str) {
    let out = Command::new(example_exe(name))
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name} exited with {}", out.status);
    assert!(out.stdout.is_empty(), "{name} printed on stdout");
    assert_eq!(stderr.lines().count(), 1, "{name} stderr: {stderr}");
    assert!(stderr.contains(words), "{name} stderr: {stderr}");
}

/// What the example has written on stderr so far.
#[cfg(target_os = "linux")]
fn server_stderr(server: &Server) -> String {
    server
        .stderr
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// One connection, messages of 1 byte to 16 MiB, each streamed and read
/// back concurrently, then half-close and close.
#[cfg(any(target_os = "linux", windows))]
fn echo_every_size(addr: SocketAddr) {
    let stream = connect(addr);
    let sizes = [
        1,
        2,
        100,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        1 << 20,
        16 << 20,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        stream_exact(&stream, &common::payload(i as u64 + 1, len));
    }
    expect_close_after_half_close(stream);
}

/// Writes `data` from another thread while reading the echo here, and
/// checks it byte for byte.
#[cfg(any(target_os = "linux", windows))]
fn stream_exact(stream: &TcpStream, data: &[u8]) {
    let writer = {
        let mut stream = stream.try_clone().expect("try_clone");
        let data = data.to_vec();
        thread::spawn(move || stream.write_all(&data))
    };
    let mut got = vec![0u8; data.len()];
    let mut reader = stream;
    reader
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("read back {} bytes: {e}", data.len()));
    writer
        .join()
        .expect("writer thread")
        .unwrap_or_else(|e| panic!("write {} bytes: {e}", data.len()));
    assert_same(&got, data, "stream");
}

/// Sends 300 KiB and the FIN before reading anything, then expects all of
/// it back followed by EOF.
#[cfg(any(target_os = "linux", windows))]
fn half_close_then_read(addr: SocketAddr) {
    let stream = connect(addr);
    let data = common::payload(42, 300 * 1024);
    let mut writer = &stream;
    writer.write_all(&data).expect("write 300 KiB");
    stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    let echoed = read_to_eof(&stream);
    assert_same(&echoed, &data, "echo after half-close");
}

/// 100 clients connected at once (each proven served by a first round
/// trip while all are open), then each streams its own 64 KiB in its own
/// thread and half-closes.
#[cfg(any(target_os = "linux", windows))]
fn hundred_clients(addr: SocketAddr) {
    let streams: Vec<TcpStream> = (0..100u64)
        .map(|i| {
            let mut s = connect(addr);
            s.write_all(&[i as u8]).expect("write the first byte");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("read the first byte back");
            assert_eq!(b[0], i as u8);
            s
        })
        .collect();
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            thread::spawn(move || {
                stream_exact(&s, &common::payload(500 + i as u64, 64 * 1024));
                expect_close_after_half_close(s);
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        c.join()
            .unwrap_or_else(|_| panic!("client {i} failed (its panic message is above)"));
    }
}

/// Eight clients stream 2 MiB each; as they start, a ninth, with 256 KiB
/// of echo owed to it and unread, resets its connection. The eight get
/// every byte, and a new client is served afterwards.
#[cfg(any(target_os = "linux", windows))]
fn reset_among_others(addr: SocketAddr) {
    let start = Arc::new(std::sync::Barrier::new(9));
    let others: Vec<_> = (0..8u64)
        .map(|i| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut s = connect(addr);
                round_trips(&mut s, 700 + i);
                start.wait();
                stream_exact(&s, &common::payload(800 + i, 2 << 20));
                expect_close_after_half_close(s);
            })
        })
        .collect();

    let mut victim = connect(addr);
    victim
        .write_all(&common::payload(1, 256 * 1024))
        .expect("write to the server");
    let mut b = [0u8; 1];
    victim.read_exact(&mut b).expect("the echo has started");
    start.wait();
    // SO_LINGER 0, then close: the kernel sends RST instead of FIN.
    socket2::SockRef::from(&victim)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(victim);

    for (i, c) in others.into_iter().enumerate() {
        c.join()
            .unwrap_or_else(|_| panic!("client {i} failed (its panic message is above)"));
    }
    full_session(addr, 999);
}

/// A client sends 4 MiB without reading (the server must stop reading it,
/// keep what it owes, and resume), another is served meanwhile, then the
/// first reads everything back in order.
#[cfg(any(target_os = "linux", windows))]
fn late_reader_and_another(addr: SocketAddr) {
    let slow = connect(addr);
    let payload = Arc::new(common::payload(7, BIG));
    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let writer = {
        let mut stream = slow.try_clone().expect("try_clone");
        let payload = Arc::clone(&payload);
        thread::spawn(move || {
            for (i, chunk) in payload.chunks(64 * 1024).enumerate() {
                stream.write_all(chunk).expect("write to the server");
                let _ = progress_tx.send((i + 1) * 64 * 1024);
            }
            stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
        })
    };
    // Until 1 MiB is sent, or the writer has stalled for 500 ms (the
    // server has stopped reading it: backpressure).
    while let Ok(sent) = progress_rx.recv_timeout(Duration::from_millis(500)) {
        if sent >= 1024 * 1024 {
            break;
        }
    }
    let mut other = connect(addr);
    round_trips(&mut other, 8);
    expect_close_after_half_close(other);

    let echoed = read_to_eof(&slow);
    writer.join().expect("writer thread");
    assert_same(&echoed, &payload, "late reader");
}

// ---------------------------------------------------------------------------
// Client sessions
// ---------------------------------------------------------------------------

/// `n` clients at once, each running `full_session`, all joined.
fn run_concurrent_sessions(addr: SocketAddr, n: usize) {
    let clients: Vec<_> = (0..n)
        .map(|i| thread::spawn(move || full_session(addr, i as u64 + 100)))
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        c.join()
            .unwrap_or_else(|_| panic!("client {i} failed (its panic message is above)"));
    }
}

/// One client's whole life: round trips, a 4 MiB stream, half-close, close.
fn full_session(addr: SocketAddr, seed: u64) {
    let mut stream = connect(addr);
    round_trips(&mut stream, seed);
    stream_big(&stream, seed);
    expect_close_after_half_close(stream);
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(STEP_TIMEOUT))
        .expect("set_write_timeout");
    stream
}

/// Messages of growing size (1 byte to 64 KiB), binary (every byte value,
/// NULs, CR/LF), each written and then read back exactly.
fn round_trips(stream: &mut TcpStream, seed: u64) {
    let mut special = vec![0u8, 0, b'\r', b'\n', 0xff, 0x80, 0];
    special.extend(0..=255u8);
    let mut messages = vec![b"x".to_vec(), special];
    for (i, len) in [100, 1024, 4096, 16 * 1024, 64 * 1024]
        .into_iter()
        .enumerate()
    {
        messages.push(common::payload(seed * 31 + i as u64, len));
    }
    for msg in messages {
        stream.write_all(&msg).expect("write a message");
        let mut got = vec![0u8; msg.len()];
        stream
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("read back {} bytes: {e}", msg.len()));
        assert_same(&got, &msg, "round trip");
    }
}

/// Streams 4 MiB from one thread while another reads the echo, so that the
/// server meets full socket buffers (partial writes) and has to resume.
fn stream_big(stream: &TcpStream, seed: u64) {
    let data = Arc::new(common::payload(seed, BIG));
    let reader = {
        let mut stream = stream.try_clone().expect("try_clone");
        thread::spawn(move || {
            let mut got = vec![0u8; BIG];
            stream.read_exact(&mut got).map(|()| got)
        })
    };
    let mut writer = stream;
    writer.write_all(&data).expect("write 4 MiB");
    let got = reader
        .join()
        .expect("reader thread")
        .expect("read back 4 MiB");
    assert_same(&got, &data, "4 MiB stream");
}

/// Shuts down our write side, then expects no more bytes and the server's
/// close (EOF) within the read timeout.
fn expect_close_after_half_close(stream: TcpStream) {
    stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    let rest = read_to_eof(&stream);
    assert!(
        rest.is_empty(),
        "{} unexpected bytes after everything was echoed",
        rest.len()
    );
}

/// Reads until EOF; a read timeout or error fails the test.
fn read_to_eof(stream: &TcpStream) -> Vec<u8> {
    let mut stream = stream;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "waiting for the server to close (after {} bytes): {e}",
                all.len()
            ),
        }
    }
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: echo differs: got {} bytes, want {}, first difference at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

// ---------------------------------------------------------------------------
// Running an example
// ---------------------------------------------------------------------------

/// A running example process. Dropping it kills the process (if still
/// running) and reaps it; when the test is failing, it also prints what the
/// process wrote on stderr.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// Further stdout lines; disconnected once every process holding the
    /// pipe (the example and, for fork, its children) has exited.
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `examples/NAME` on 127.0.0.1:0 and reads its first line,
    /// `listening on ADDR`.
    fn start(name: &'static str, extra_args: &[&str]) -> Server {
        let exe = example_exe(name);
        let mut child = Command::new(&exe)
            .arg("127.0.0.1:0")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));

        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });

        let mut server = Server {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
        };
        let first = match server.stdout.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("{name}: no first line on stdout ({e:?})"),
        };
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: first line is {first:?}, not `listening on ADDR`"));
        server.addr = addr;
        server
    }

    /// Waits (bounded) for the process to exit on its own; returns its status.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP_TIMEOUT;
        // Its stdout closes when it exits: that is the signal we wait for.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: did not exit within {STEP_TIMEOUT:?}", self.name)
                }
            }
        }
        self.child.wait().expect("wait for the example")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!("--- stderr of example {} ---\n{stderr}", self.name);
        }
    }
}

/// Where cargo puts example binaries: `target/<profile>/examples/NAME`,
/// next to the `deps/` directory holding this test binary.
fn example_exe(name: &str) -> PathBuf {
    build_examples_once();
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not found: build the examples first (`cargo build --examples`; \
         a plain `cargo test` builds them)",
        path.display()
    );
    path
}

/// `cargo test --test examples` does not build examples, and a stale binary
/// would test old code, so build them once per run with the cargo that runs
/// us, for the same profile and target directory (a no-op when up to date).
/// Unix only: under Windows (or Wine) we rely on `cargo test` having built
/// them.
fn build_examples_once() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if cfg!(windows) {
            return Ok(());
        }
        let Some(cargo) = std::env::var_os("CARGO") else {
            return Ok(()); // not run by cargo: use what is there
        };
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) else {
            return Ok(());
        };
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--examples", "--quiet", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        // <target-dir>/<profile> or, when cross-compiling,
        // <target-dir>/<triple>/<profile>. Both directories carry cargo's
        // CACHEDIR.TAG, so tell a triple (x86_64-pc-windows-gnu) from a
        // target directory (target/pollbuild) by its shape.
        if let Some(above) = profile_dir.parent() {
            let is_triple = above
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.matches('-').count() >= 2);
            let triple_dir = above
                .parent()
                .filter(|p| is_triple && p.join("CACHEDIR.TAG").exists());
            match (triple_dir, above.file_name()) {
                (Some(target_dir), Some(triple)) => {
                    cmd.arg("--target-dir").arg(target_dir);
                    cmd.arg("--target").arg(triple);
                }
                _ => {
                    cmd.arg("--target-dir").arg(above);
                }
            }
        }
        match cmd.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "`cargo build --examples` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => {
                eprintln!("note: could not run cargo to build the examples ({e}); using existing binaries");
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
