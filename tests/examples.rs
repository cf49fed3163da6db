//! The programs in `examples/` are part of what the project teaches, so they
//! are tested like the server: each one is run as a real process (the built
//! example binary), on 127.0.0.1 port 0, and real clients check that it
//! echoes byte for byte, survives partial writes, honours a half-close and
//! closes its side afterwards.
//!
//! The examples that serve many clients at once meet one set of sessions
//! (below the tests): every size from 1 byte to 16 MiB, a half-close before
//! reading, 100 clients at once, a client that resets among others, a client
//! that reads late. Every wait is a socket read timeout or a bounded wait:
//! no test sleeps to let something happen.
//!
//! `cargo test` builds the examples itself; `cargo test --test examples` does
//! not, so on Unix this file runs `cargo build --examples` (same profile and
//! target directory) once before the first test. It is a no-op when they are
//! up to date.

pub mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use support::*;

/// The payload large enough to fill the socket buffers on both sides, so the
/// server's writes come back partial (or `WouldBlock`) and must be resumed.
const BIG: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The matrix: every example that serves many clients, against the sessions
// (below the tests) that apply to it, one test each, named
// `example::session` (`select_loop::echoes_1_byte_to_16_mib`). What each
// session proves is said once, on its function; a cell adds what is
// particular to its example.
// ---------------------------------------------------------------------------

/// One module per example: `$server` starts it (`None`: it cannot run on
/// this machine, and said why), then each listed session is a test, with
/// the arguments given after the name, if any.
macro_rules! matrix {
    ($(
        $(#[$row:meta])*
        $example:ident = $server:expr => [
            $( $(#[$cell:meta])* $session:ident $(($($arg:expr),*))? ),* $(,)?
        ];
    )*) => {$(
        $(#[$row])*
        mod $example {
            use super::*;
            $(
                #[doc = concat!(
                    "`", stringify!($example), "` passes the [`", stringify!($session),
                    "`](super::", stringify!($session), ") session."
                )]
                $(#[$cell])*
                #[test]
                fn $session() {
                    let Some(server) = $server else { return };
                    super::$session(server.addr $(, $($arg),*)?);
                }
            )*
        }
    )*};
}

matrix! {
    /// The one-thread mio loop.
    minimal_loop = Some(start("minimal_loop", &[])) => [
        serves_concurrent_clients(8),
        /// Its writes come back partial or `WouldBlock`: it keeps the
        /// unsent bytes, stops reading that client, waits for WRITABLE.
        survives_a_client_that_reads_late,
    ];
    /// With `MAX_THREADS` = 8.
    thread_per_connection = Some(start("thread_per_connection", &["8"])) => [
        serves_concurrent_clients(6),
    ];
    /// Each client in its own process; the parent goes on accepting.
    #[cfg(unix)]
    fork_per_connection = Some(start("fork_per_connection", &[])) => [
        serves_concurrent_clients(6),
    ];
    select_loop = Some(start("select_loop", &[])) => [
        echoes_1_byte_to_16_mib,
        echoes_everything_before_a_half_close,
        serves_100_concurrent_clients,
        /// The resetting client had filled the loop's buffers first.
        survives_a_client_that_resets,
    ];
    poll_loop = Some(start("poll_loop", &[])) => [
        echoes_1_byte_to_16_mib,
        echoes_everything_before_a_half_close,
        /// Its pollfd array kept in step as they leave in any order.
        serves_100_concurrent_clients,
        survives_a_client_that_resets,
    ];
    /// Refusing only 127.0.0.2 ([`DENY_ONE`]).
    conditional_accept = Some(start("conditional_accept", &DENY_ONE)) => [
        echoes_1_byte_to_16_mib,
        echoes_everything_before_a_half_close,
        /// One worker thread each.
        serves_100_concurrent_clients,
        /// The reset ends its own worker only.
        survives_a_client_that_resets,
    ];
    #[cfg(target_os = "linux")]
    io_uring_loop = io_uring_server(&[]) => [
        /// Either side of its 16 KiB buffers, and far more than the socket
        /// buffers hold, so sends complete partially and are resumed.
        echoes_1_byte_to_16_mib,
        echoes_everything_before_a_half_close,
        serves_100_concurrent_clients,
        survives_a_client_that_resets,
        /// Its receive is cancelled at the per-connection buffer limit and
        /// re-armed as the echo drains.
        survives_a_client_that_reads_late,
    ];
    /// mio + rustls, serving the certificate of [`tls_pki`].
    tls_loop = Some(start("tls_loop", &tls_loop_args())) => [
        echoes_over_tls_up_to_a_close_notify,
        refuses_plaintext_on_tls,
        serves_concurrent_tls_clients(8),
    ];
    /// Its 100-client session, with fewer accepts and threads than
    /// clients, is `iocp_loop_serves_100_concurrent_clients`.
    #[cfg(windows)]
    iocp_loop = Some(start("iocp_loop", &[])) => [
        /// Partial sends included.
        echoes_1_byte_to_16_mib,
        /// Its EOF is `shutdown(SD_SEND)`.
        echoes_everything_before_a_half_close,
        survives_a_client_that_resets,
        /// One operation per connection: it is not read from while its
        /// echo is unsent.
        survives_a_client_that_reads_late,
    ];
}

// ---------------------------------------------------------------------------
// One client at a time, a thread per client, a minimal loop
// ---------------------------------------------------------------------------

/// accept_one serves exactly one client completely: small and binary
/// messages round-trip byte for byte, a 4 MiB stream read concurrently comes
/// back intact, the listening socket is closed once the client is accepted
/// (a second client is refused), the server closes its side after the
/// client's `shutdown(Write)`, and the process then exits with status 0.
#[test]
fn accept_one_serves_one_client_and_exits() {
    let mut server = start("accept_one", &[]);
    let client = connect(server.addr);
    round_trips(&client, 1);

    // The server has accepted us (it echoed), so it has closed its listener.
    match connect_with(server.addr, |_| Ok(())) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("a second client must be refused after the first, got {other:?}"),
    }

    stream_through(&client, &payload(2, BIG));
    expect_close_after_half_close(client);
    let status = server.wait_exit();
    assert!(status.success(), "accept_one exited with {status}");
}

/// thread_per_connection's bound: with MAX_THREADS = 1, a second client is
/// connected by the kernel (it waits in the backlog) but gets no echo while
/// the first is being served, and is served as soon as the first leaves.
#[test]
fn thread_per_connection_waits_at_the_bound() {
    let server = start("thread_per_connection", &["1"]);
    let first = connect(server.addr);
    round_trips(&first, 3); // the only thread is now busy with `first`

    let second = connect(server.addr);
    (&second)
        .write_all(b"queued")
        .expect("write to the waiting client");
    assert_no_echo_within(
        &second,
        Duration::from_millis(300),
        "the second client must wait while the bound is reached",
    );

    expect_close_after_half_close(first); // frees the one slot
    let mut got = [0u8; 6];
    (&second)
        .read_exact(&mut got)
        .expect("the waiting client is served once a slot frees");
    assert_eq!(&got, b"queued");
    expect_close_after_half_close(second);
}

// ---------------------------------------------------------------------------
// The loops written directly on select() and poll()/WSAPoll, and WSAAccept's
// condition function: the same sessions each, plus each one's limit.
// ---------------------------------------------------------------------------

/// select_loop's limit, met head on: clients are served until the next one
/// would not fit in an fd_set (on Unix its descriptor reaches FD_SETSIZE,
/// 1024; on Windows the listener and 1,023 clients fill our 1,024-entry
/// set); that client is accepted and closed at once, with a log line, and
/// none of the served clients is disturbed. When some leave, a new client
/// is served again. Without the check, `libc::FD_SET` would panic (or, in
/// C, corrupt memory) and every client would be lost.
#[test]
fn select_loop_refuses_a_client_that_does_not_fit_an_fd_set() {
    let mut server = start("select_loop", &[]);
    let mut served = Vec::new();
    let refused_after = loop {
        assert!(
            served.len() <= 1100,
            "select_loop served {} clients and refused none",
            served.len()
        );
        let client = connect(server.addr);
        if !ping(&client, served.len()) {
            break served.len();
        }
        served.push(client);
    };
    // Unix: 0-2 are stdio and 3 the listener, so clients get 4..=1023.
    assert!(
        (1000..=1023).contains(&refused_after),
        "the first refusal came after {refused_after} clients"
    );
    server.stderr.wait_for(if cfg!(windows) {
        "fill the socket set"
    } else {
        ">= FD_SETSIZE (1024)"
    });
    for (i, client) in served.iter().enumerate().step_by(101) {
        assert!(ping(client, i), "served client {i} was disturbed");
    }
    for client in served.drain(..10) {
        expect_close_after_half_close(client);
    }
    assert!(
        ping(&connect(server.addr), 7),
        "no client served after some left"
    );
}

/// poll_loop has no FD_SETSIZE: 1,100 clients held at once, past where
/// select_loop refuses, are all served, the first and the last alike.
#[test]
fn poll_loop_serves_clients_past_fd_setsize() {
    let server = start("poll_loop", &[]);
    let clients: Vec<TcpStream> = (0..1100)
        .map(|i| {
            let client = connect(server.addr);
            assert!(ping(&client, i), "client {i} was not served");
            client
        })
        .collect();
    for (i, client) in clients.iter().enumerate() {
        assert!(ping(client, i), "client {i} was not served the second time");
    }
}

/// The flags of a conditional_accept that refuses only 127.0.0.2.
const DENY_ONE: [&str; 2] = ["--deny", "127.0.0.2/32"];

/// conditional_accept `--deny 127.0.0.2/32`, both outcomes: a client from
/// 127.0.0.1 is served; one bound to 127.0.0.2 is refused — on Windows
/// before the handshake (its connect is refused), under Wine and on Unix
/// just after it (the connection ends at once, nothing echoed) — and the
/// refusal is logged; 127.0.0.3, just outside the range, is served, and the
/// allowed client was not disturbed.
#[test]
fn conditional_accept_serves_allowed_and_refuses_denied_addresses() {
    let mut server = start("conditional_accept", &DENY_ONE);
    let allowed = connect(server.addr);
    round_trips(&allowed, 1);

    match connect_from([127, 0, 0, 2], server.addr) {
        // Refused before the handshake (Windows), or reset so soon after it
        // that the connect already reports it.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ) => {}
        Err(e) => panic!("connect from 127.0.0.2: {e}"),
        Ok(denied) => assert!(!ping(&denied, 0), "127.0.0.2 was served"),
    }
    server.stderr.wait_for("refused 127.0.0.2:");

    let neighbour = connect_from([127, 0, 0, 3], server.addr).expect("connect from 127.0.0.3");
    round_trips(&neighbour, 3);
    expect_close_after_half_close(neighbour);
    round_trips(&allowed, 2);
    expect_close_after_half_close(allowed);
}

/// conditional_accept `--max-clients 1`: while one client is served the
/// condition function refuses the next (its verdict is logged), and once
/// that client has left a new one is served again.
#[test]
fn conditional_accept_refuses_beyond_max_clients() {
    let mut server = start("conditional_accept", &["--max-clients", "1"]);
    let first = connect(server.addr);
    round_trips(&first, 4);
    match connect_from([127, 0, 0, 1], server.addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("second client: {e}"),
        Ok(second) => assert!(!ping(&second, 1), "a second client was served"),
    }
    server
        .stderr
        .wait_for("1 clients already served (--max-clients)");
    expect_close_after_half_close(first);
    // The worker gives its slot back just after its FIN: try until served.
    wait_until("a client served after the first left", TIMEOUT, || {
        connect_from([127, 0, 0, 1], server.addr).is_ok_and(|c| ping(&c, 2))
    });
}

/// conditional_accept rejects a malformed `--deny` or `--max-clients` with
/// one line naming the flag and exit status 2, never a panic.
#[test]
fn conditional_accept_rejects_bad_flags() {
    let cases: [&[&str]; 5] = [
        &["--deny", "127.0.0.2/33"],
        &["--deny", "not-an-address"],
        &["--deny", "::1/129"],
        &["--max-clients", "0"],
        &["--max-clients"],
    ];
    for bad in cases {
        let out = run_to_exit(
            Command::new(example_exe("conditional_accept"))
                .arg("127.0.0.1:0")
                .args(bad),
        );
        let stderr = out.stderr_text();
        let flag = format!("conditional_accept: {}", bad[0]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(
            stderr.starts_with(&flag) && !stderr.contains("panicked"),
            "{bad:?}: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// The completion-model examples: io_uring_loop (Linux) and iocp_loop
// (Windows, run under Wine in CI)
// ---------------------------------------------------------------------------

/// io_uring_loop's ENOBUFS path: with a ring of 4 buffers of 512 bytes and
/// 20 clients streaming at once, the ring runs dry (the server logs
/// ENOBUFS) and every starved receive is re-armed when buffers come back:
/// no byte is lost or reordered, and every client is closed after its
/// half-close.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_loses_nothing_when_the_buffer_ring_runs_dry() {
    let args = ["--buffers", "4", "--buffer-size", "512"];
    let Some(mut server) = io_uring_server(&args) else {
        return;
    };
    let clients = (0..20)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || {
                let stream = connect(addr);
                stream_through(&stream, &payload(900 + i, 256 * 1024));
                expect_close_after_half_close(stream);
            })
        })
        .collect();
    join_all("client", clients);
    server.stderr.wait_for("ENOBUFS");
}

/// io_uring_loop re-arms every starved receive, even when one it re-arms
/// takes no buffer. A ring of 1 buffer is held by a client that sends
/// without reading (the echo to it is stuck in a full send buffer). An idle
/// client accepted then fails its first receive with ENOBUFS although it
/// sent nothing (the kernel picks a buffer before it reads); clients that
/// send 64 bytes and wait queue behind the idle ones. The holder resets,
/// its buffer comes back, the idle client re-armed with it takes none: each
/// waiting client must still get its echo, and then each idle one too.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_wakes_clients_starved_behind_idle_ones() {
    let args = ["--buffers", "1", "--buffer-size", "65536"];
    let Some(mut server) = io_uring_server(&args) else {
        return;
    };
    let holder =
        connect_with(server.addr, |s| s.set_recv_buffer_size(4096)).expect("connect the holder");
    holder.set_nonblocking(true).expect("non-blocking");
    // Once the server's send buffer towards the holder is full too, the
    // buffer stays out; from then on every idle client is starved. The
    // log counts ENOBUFS at powers of two: 256 is well past the few while
    // the holder's echo still flowed.
    let mut idle = Vec::new();
    wait_until("256 receives starved by the held buffer", TIMEOUT, || {
        write_until_full(&holder);
        idle.push(connect(server.addr));
        assert!(idle.len() < 4000, "the buffer ring never stayed dry");
        server.stderr.contains("(256 times so far)")
    });
    let waiting: Vec<(TcpStream, Vec<u8>)> = (0..256)
        .map(|i| {
            let client = connect(server.addr);
            let msg = payload(2000 + i, 64);
            (&client).write_all(&msg).expect("write 64 bytes");
            (client, msg)
        })
        .collect();
    // 256 more: (nearly) all of `waiting` are starved now, behind `idle`.
    server.stderr.wait_for("(512 times so far)");
    linger_zero(&holder);
    drop(holder);
    for (i, (client, msg)) in waiting.iter().enumerate() {
        let mut got = vec![0u8; msg.len()];
        (&*client)
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("waiting client {i}: no echo: {e}"));
        assert_same(&got, msg);
    }
    for (i, client) in idle.iter().enumerate() {
        round_trip(client, &payload(i, 64));
    }
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
    let Some(mut server) = io_uring_server(&["--buffer-size", "1048576"]) else {
        return;
    };
    let stream = connect(server.addr);
    for round in 0..8 {
        stream_through(&stream, &payload(round, 16 << 20));
        if server.stderr.contains("partial send") {
            break;
        }
    }
    expect_close_after_half_close(stream);
    server.stderr.wait_for("partial send");
}

/// A bad io_uring_loop flag is one line on stderr and a non-zero exit.
#[cfg(target_os = "linux")]
#[test]
fn io_uring_loop_rejects_a_bad_flag_in_one_line() {
    let out = run_to_exit(Command::new(example_exe("io_uring_loop")).args([
        "127.0.0.1:0",
        "--buffers",
        "3",
    ]));
    let stderr = out.stderr_text();
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

/// iocp_loop serves 100 clients connected at the same time, more than its
/// outstanding AcceptEx calls (4 here) and its 2 worker threads.
#[cfg(windows)]
#[test]
fn iocp_loop_serves_100_concurrent_clients() {
    let server = start("iocp_loop", &["--accepts", "4", "--threads", "2"]);
    serves_100_concurrent_clients(server.addr);
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
    let mut server = start("iocp_loop", &["--threads", "1"]);
    session(server.addr, 11, BIG);
    let next = connect(server.addr);
    round_trips(&next, 12);
    assert_no_echo_within(
        &next,
        Duration::from_millis(1500),
        "an idle client must get nothing",
    );
    round_trips(&next, 13);
    expect_close_after_half_close(next);
    assert!(
        server.stderr.so_far().is_empty(),
        "iocp_loop logged errors: {}",
        server.stderr.text()
    );
}

/// Off Windows, iocp_loop says in one line that it is Windows only and
/// exits non-zero.
#[cfg(not(windows))]
#[test]
fn iocp_loop_says_it_is_windows_only() {
    expect_one_line_refusal("iocp_loop", "Windows only");
}

// ---------------------------------------------------------------------------
// The sessions
// ---------------------------------------------------------------------------

/// Proves every size of [`ECHO_SIZES`], 1 byte to 16 MiB, is echoed byte
/// for byte: first all on one connection, one after the other, each written
/// while its echo is read back, then half-close and the server's close;
/// then each on a connection of its own that half-closes as soon as it has
/// written, closed only after everything that preceded its FIN is echoed.
fn echoes_1_byte_to_16_mib(addr: SocketAddr) {
    let stream = connect(addr);
    for (i, len) in ECHO_SIZES.into_iter().enumerate() {
        stream_through(&stream, &payload(i + 1, len));
    }
    expect_close_after_half_close(stream);
    echo_each_size(addr);
}

/// Proves a half-close with output still owed loses nothing: a client
/// with a small receive buffer (4 KiB, set before connecting) sends
/// everything and its FIN *before* reading a byte, so the FIN reaches the
/// server while the client has taken none of its echo. Only then does the client read: it must get every
/// byte, then the close. (Whether the owed bytes then sit in the server's
/// pending buffer or in the kernel's send buffer depends on buffer sizes
/// the test cannot set: Linux grows the server's to about 4 MiB.)
fn echoes_everything_before_a_half_close(addr: SocketAddr) {
    for (i, len) in [16 * 1024, 96 * 1024, 200 * 1024, 300 * 1024]
        .into_iter()
        .enumerate()
    {
        let stream = connect_with(addr, |s| s.set_recv_buffer_size(4096)).expect("connect");
        let data = payload(700 + i, len);
        (&stream).write_all(&data).expect("write before reading");
        stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
        assert_same(&read_to_eof(&stream), &data);
    }
}

/// Proves 100 clients at once are served: connected at once, each proven
/// served by a first round trip while all are open; then each, on a thread
/// of its own, runs binary round trips and a 256 KiB stream and
/// half-closes, closed after it. Afterwards two more clients are served:
/// the server goes on accepting after they leave.
fn serves_100_concurrent_clients(addr: SocketAddr) {
    let streams: Vec<TcpStream> = (0..100)
        .map(|i| {
            let stream = connect(addr);
            round_trip(&stream, &[i as u8]);
            stream
        })
        .collect();
    let clients = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            thread::spawn(move || {
                round_trips(&stream, 300 + i);
                stream_through(&stream, &payload(300 + i, 256 * 1024));
                expect_close_after_half_close(stream);
            })
        })
        .collect();
    join_all("client", clients);
    sessions(addr, 2, 256 * 1024);
}

/// Proves a resetting client disturbs nobody: eight clients stream 2 MiB
/// each; as they start, a ninth, that has sent without reading until its
/// socket took no more (so the server holds echo owed to it and has
/// stopped reading it) and has seen its echo begin, resets its connection
/// (SO_LINGER 0). The eight get every byte, and a new client is served
/// afterwards.
fn survives_a_client_that_resets(addr: SocketAddr) {
    let start = Arc::new(Barrier::new(9));
    let others: Vec<_> = (0..8)
        .map(|i| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let stream = connect(addr);
                round_trips(&stream, 700 + i);
                start.wait();
                stream_through(&stream, &payload(800 + i, 2 << 20));
                expect_close_after_half_close(stream);
            })
        })
        .collect();

    let victim = connect(addr);
    fill_without_reading(&victim);
    (&victim)
        .read_exact(&mut [0u8; 1])
        .expect("the echo has started");
    start.wait();
    linger_zero(&victim);
    drop(victim); // RST

    join_all("client", others);
    session(addr, 999, BIG);
}

/// Proves backpressure loses nothing and blocks nobody: a client sends
/// 4 MiB without reading (the server must stop reading it, keep what it
/// owes, and resume); the reader starts late (after 1 MiB was sent, or when
/// the writer has visibly stalled); another client is served meanwhile,
/// then the first reads everything back in order.
fn survives_a_client_that_reads_late(addr: SocketAddr) {
    let slow = connect(addr);
    let data = Arc::new(payload(7, BIG));
    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let writer = {
        let mut stream = slow.try_clone().expect("try_clone");
        let data = Arc::clone(&data);
        thread::spawn(move || {
            for (i, chunk) in data.chunks(64 * 1024).enumerate() {
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
    let other = connect(addr);
    round_trips(&other, 8);
    expect_close_after_half_close(other);

    let echoed = read_to_eof(&slow);
    writer.join().expect("writer thread");
    assert_same(&echoed, &data);
}

/// Proves `n` clients at once are each served fully (round trips, a 4 MiB
/// stream, half-close then close), and that the server goes on accepting
/// after they have all left: two more are served the same way.
fn serves_concurrent_clients(addr: SocketAddr, n: usize) {
    sessions(addr, n, BIG);
    sessions(addr, 2, BIG);
}

/// `n` clients at once, each running a [`session`] with a `len`-byte
/// stream, all joined.
fn sessions(addr: SocketAddr, n: usize, len: usize) {
    let clients = (0..n)
        .map(|i| thread::spawn(move || session(addr, 100 + i, len)))
        .collect();
    join_all("client", clients);
}

/// One client's whole life: round trips, a `len`-byte stream, half-close,
/// close.
fn session(addr: SocketAddr, seed: usize, len: usize) {
    let stream = connect(addr);
    round_trips(&stream, seed);
    stream_through(&stream, &payload(seed, len));
    expect_close_after_half_close(stream);
}

/// Messages of growing size (1 byte to 64 KiB), binary (every byte value,
/// NULs, CR/LF), each written and then read back exactly.
fn round_trips(stream: &TcpStream, seed: usize) {
    let mut special = vec![0u8, 0, b'\r', b'\n', 0xff, 0x80, 0];
    special.extend(0..=255u8);
    round_trip(stream, b"x");
    round_trip(stream, &special);
    for (i, len) in [100, 1024, 4096, 16 * 1024, 64 * 1024]
        .into_iter()
        .enumerate()
    {
        round_trip(stream, &payload(seed * 31 + i, len));
    }
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

/// Writes to the non-blocking `stream` until its send buffer is full
/// (what is written does not matter: it is never read back).
#[cfg(target_os = "linux")]
fn write_until_full(stream: &TcpStream) {
    let chunk = [0u8; 64 * 1024];
    loop {
        match (&*stream).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Nothing comes back within `wait` (a read timeout, not a sleep); the
/// read timeout is then the usual one again.
fn assert_no_echo_within(stream: &TcpStream, wait: Duration, what: &str) {
    stream
        .set_read_timeout(Some(wait))
        .expect("set_read_timeout");
    match (&*stream).read(&mut [0u8; 1]) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("{what}, got {other:?}"),
    }
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("set_read_timeout");
}

/// Non-blocking writes until `WouldBlock`: the send buffer is full because
/// the server stopped taking our bytes. That is the synchronisation point,
/// no sleep.
fn fill_without_reading(stream: &TcpStream) {
    stream.set_nonblocking(true).expect("set_nonblocking");
    let chunk = stream_bytes(0, 0, 64 * 1024);
    let mut sent = 0usize;
    loop {
        match (&*stream).write(chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("write without reading, after {sent} bytes: {e}"),
        }
        assert!(sent < 1 << 30, "the server took 1 GiB without being read");
    }
    stream.set_nonblocking(false).expect("set_nonblocking");
}

/// One byte out and back. True if it was echoed; false if the server ended
/// the connection instead (EOF or reset); a timeout fails the test.
fn ping(stream: &TcpStream, seed: usize) -> bool {
    let byte = [seed as u8 ^ 0xa5];
    if (&*stream).write_all(&byte).is_err() {
        return false;
    }
    let mut got = [0u8; 1];
    match (&*stream).read(&mut got) {
        Ok(1) => {
            assert_eq!(got, byte, "ping {seed}: wrong byte echoed");
            true
        }
        Ok(_) => false,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("ping {seed}: no echo and no close within {TIMEOUT:?}")
        }
        Err(_) => false, // reset or aborted: the server closed it
    }
}

/// Connects from a chosen loopback source address (bound before the
/// connect).
fn connect_from(source: [u8; 4], addr: SocketAddr) -> io::Result<TcpStream> {
    connect_with(addr, |s| s.bind(&SocketAddr::from((source, 0)).into()))
}

/// Joins the client threads; a client that panicked fails the test.
fn join_all(what: &str, clients: Vec<JoinHandle<()>>) {
    for (i, c) in clients.into_iter().enumerate() {
        c.join()
            .unwrap_or_else(|_| panic!("{what} {i} failed (its panic message is above)"));
    }
}

/// Proves TLS echo of the plaintext stream, byte for byte: sizes from 1
/// byte to 256 KiB each written whole (the client reads only afterwards),
/// then the client's `close_notify`; the example must answer with every
/// byte, then its own `close_notify` and the end of the stream.
fn echoes_over_tls_up_to_a_close_notify(addr: SocketAddr) {
    let client = tls_pki().client_config(false);
    for (i, len) in [1, 100, 16 * 1024, 100 * 1024, 256 * 1024]
        .into_iter()
        .enumerate()
    {
        let mut stream = support::tls::connect_tls(addr, &client).expect("handshake");
        let data = payload(900 + i, len);
        stream.write_all(&data).expect("write");
        stream.conn.send_close_notify();
        stream.flush().expect("flush");
        let mut got = Vec::new();
        // read_to_end ends at the server's close_notify; a FIN without one
        // would be an error here.
        stream
            .read_to_end(&mut got)
            .expect("echo, then close_notify");
        assert_same(&got, &data);
    }
}

/// Proves plaintext on the TLS port is refused, not echoed: the example
/// answers with an alert (or nothing) and closes.
fn refuses_plaintext_on_tls(addr: SocketAddr) {
    let stream = connect(addr);
    (&stream)
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("write");
    let got = read_until_closed(&stream);
    assert!(!got.starts_with(b"GET"), "plaintext echoed: {got:?}");
}

/// Proves `n` TLS clients at once are served, each with round trips of
/// several sizes on its own thread.
fn serves_concurrent_tls_clients(addr: SocketAddr, n: usize) {
    let client = tls_pki().client_config(false);
    let clients = (0..n)
        .map(|i| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                let mut stream = support::tls::connect_tls(addr, &client).expect("handshake");
                for len in [1, 1000, 16 * 1024, 40 * 1024] {
                    support::tls::tls_round_trip(&mut stream, &payload(950 + i, len));
                }
            })
        })
        .collect();
    join_all("TLS clients", clients);
}

/// The certificates `tls_loop` serves, made once per test run and kept for
/// its length (a static is never dropped).
fn tls_pki() -> &'static support::tls::Pki {
    static PKI: OnceLock<support::tls::Pki> = OnceLock::new();
    PKI.get_or_init(|| support::tls::Pki::new("examples-tls_loop"))
}

/// `tls_loop`'s arguments after the address: the server's certificate and
/// key files of [`tls_pki`].
fn tls_loop_args() -> [&'static str; 2] {
    static ARGS: OnceLock<[String; 2]> = OnceLock::new();
    let [cert, key] = ARGS.get_or_init(|| {
        let pki = tls_pki();
        [pki.file("server.pem"), pki.file("server.key")]
    });
    [cert, key]
}

// ---------------------------------------------------------------------------
// Running an example
// ---------------------------------------------------------------------------

/// Starts `examples/NAME` on 127.0.0.1:0 with `args`; its first line on
/// stdout must say `listening on ADDR`. Dropping it kills it.
#[track_caller]
fn start(name: &str, args: &[&str]) -> Binary {
    let exe = example_exe(name);
    let mut process = Process::spawn(name, Command::new(exe).arg("127.0.0.1:0").args(args));
    let first = process.stdout.wait_for("");
    assert!(
        first.starts_with("listening on "),
        "{name}: first line is {first:?}, not `listening on ADDR`"
    );
    Binary::listening(process, &first)
}

/// Starts io_uring_loop, or prints why not and returns None when this
/// kernel refuses io_uring (the example's one "io_uring unavailable" line):
/// the only case in which its tests skip. Any other start-up failure fails.
#[cfg(target_os = "linux")]
fn io_uring_server(args: &[&str]) -> Option<Binary> {
    static REFUSED: OnceLock<Option<String>> = OnceLock::new();
    let refused = REFUSED.get_or_init(|| {
        let exe = example_exe("io_uring_loop");
        let mut probe = Process::spawn("io_uring_loop", Command::new(exe).arg("127.0.0.1:0"));
        // It says where it listens at once, or exits.
        wait_until("io_uring_loop to listen or exit", TIMEOUT, || {
            probe.stdout.contains("listening on ")
                || probe.child.try_wait().expect("try_wait").is_some()
        });
        if probe.stdout.contains("listening on ") {
            return None;
        }
        let exit = probe.finish(TIMEOUT);
        let err = exit.stderr_text();
        assert!(
            err.contains("io_uring unavailable:") && !exit.status.success(),
            "io_uring_loop failed to start ({}): {err}",
            exit.status
        );
        Some(err.trim().to_string())
    });
    match refused {
        None => Some(start("io_uring_loop", args)),
        Some(why) => {
            eprintln!("SKIPPED: this kernel refuses io_uring: {why}");
            None
        }
    }
}

/// Runs `name` and expects exactly one line on stderr containing `words`,
/// nothing on stdout, and a non-zero exit.
fn expect_one_line_refusal(name: &str, words: &str) {
    let out = run_to_exit(Command::new(example_exe(name)).arg("127.0.0.1:0"));
    let stderr = out.stderr_text();
    assert!(!out.status.success(), "{name} exited with {}", out.status);
    assert!(out.stdout.is_empty(), "{name} printed on stdout");
    assert_eq!(stderr.lines().count(), 1, "{name} stderr: {stderr}");
    assert!(stderr.contains(words), "{name} stderr: {stderr}");
}

/// Where cargo puts example binaries: `target/<profile>/examples/NAME`,
/// next to the `deps/` directory holding this test binary.
fn example_exe(name: &str) -> PathBuf {
    build_examples_once();
    let path = profile_dir()
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

/// `target/<profile>` (or `target/<triple>/<profile>`), where this test
/// binary's `deps/` directory is.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// `cargo test --test examples` does not build examples, and a stale binary
/// would test old code, so build them once per run with the cargo that runs
/// us, for the same profile and target directory (a no-op when up to date).
/// Unix only: under Windows (or Wine) we rely on `cargo test` having built
/// them.
fn build_examples_once() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let cargo = match std::env::var_os("CARGO") {
            Some(cargo) if !cfg!(windows) => cargo,
            _ => return Ok(()), // Windows, or not run by cargo: use what is there
        };
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--examples", "--quiet", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        same_build_as_this_test(&mut cmd, &profile_dir());
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

/// Adds to a `cargo build` the profile, target directory and target triple
/// that `profile_dir` (this test binary's) was built with.
fn same_build_as_this_test(cmd: &mut Command, profile_dir: &Path) {
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    // <target-dir>/<profile> or, when cross-compiling,
    // <target-dir>/<triple>/<profile>. Both directories carry cargo's
    // CACHEDIR.TAG, so tell a triple (x86_64-pc-windows-gnu) from a
    // target directory (target/pollbuild) by its shape.
    let Some(above) = profile_dir.parent() else {
        return;
    };
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
