//! Graceful shutdown of the real binary under load (scenario 7 of
//! `docs/hostile.md`). SIGTERM arrives while 1,000 clients are mid-stream —
//! sending and reading their echo at once, some stalled with output owed;
//! every byte the server had read is echoed before it closes, and it exits
//! 0. Clients that never read cannot hold it past `--shutdown-grace`: it
//! closes them and still exits 0.
//!
//! `tests/shutdown.rs` covers one client; here it is a thousand at once.
//! Unix only: the scenario is a signal.

#![cfg(unix)]

pub mod support;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::fleet::Fleet;
use support::*;

/// Clients' phases: first only the stalled readers and hostages send, until
/// the server owes each a full buffer; then everyone streams; stalled
/// readers read again just after the signal; and hostages finally read what
/// reached them once the server has exited.
const FILL: u8 = 0;
const STREAM: u8 = 1;
const RESUME: u8 = 2;
const DRAIN: u8 = 3;

/// How many bytes of echo make a client "mid-stream".
const MID_STREAM: u64 = 64 * 1024;

/// `--max-pending` (the default): a full pending buffer.
const CAP: u64 = 64 * 1024;

/// Who the clients are.
#[derive(Clone, Copy)]
struct Mix {
    /// Read as fast as echo comes.
    fast: usize,
    /// Read 64 KiB, then stall until [`RESUME`]: the server owes them a full
    /// pending buffer at the signal.
    stalled: usize,
    /// Never read until the server has exited, and never close: only the
    /// grace period gets rid of them.
    hostages: usize,
}

/// Starts the clients on one thread. Every client writes its stream
/// without end (1..=16 KiB per write) and checks every echoed byte; readers
/// close once they read the server's end of stream. Stalled readers and
/// hostages have 64 KiB socket buffers, so what they are owed piles up in
/// the server rather than in the kernel. `mid_stream` counts the readers
/// that have had at least [`MID_STREAM`] bytes back. The thread returns once
/// every client is closed.
fn clients(
    addr: std::net::SocketAddr,
    mix: Mix,
    phase: Arc<AtomicU8>,
    mid_stream: Arc<AtomicUsize>,
) -> JoinHandle<Fleet> {
    thread::spawn(move || {
        let mut fleet = Fleet::new();
        let total = mix.fast + mix.stalled + mix.hostages;
        for id in 0..total {
            let buffers = (id >= mix.fast).then_some(64 * 1024);
            let p = fleet.connect(addr, id, buffers);
            let peer = &mut fleet.peers[p];
            // The fast readers wait for STREAM.
            peer.send_limit = if id < mix.fast { Some(0) } else { None };
            peer.write_size = (1, 16 * 1024);
            if id >= mix.fast + mix.stalled {
                peer.read_allowance = 0;
            } else if id >= mix.fast {
                peer.read_allowance = MID_STREAM;
            }
        }
        let readers = mix.fast + mix.stalled;
        let mut counted = 0;
        fleet.run_until("every client closed", Duration::from_secs(90), |f| {
            let now = phase.load(Ordering::SeqCst);
            if now >= STREAM {
                for p in &mut f.peers[..mix.fast] {
                    p.send_limit = None;
                }
            }
            if now >= RESUME {
                for p in &mut f.peers[mix.fast..readers] {
                    p.read_allowance = u64::MAX;
                }
            }
            if now >= DRAIN {
                for p in &mut f.peers[readers..] {
                    p.read_allowance = u64::MAX;
                }
            }
            if counted < readers {
                counted = f.peers[..readers]
                    .iter()
                    .filter(|p| p.received >= MID_STREAM)
                    .count();
                mid_stream.store(counted, Ordering::SeqCst);
            }
            f.open() == 0
        });
        fleet
    })
}

/// The clients of a test, mid-stream: the moment to signal.
struct MidStream {
    fleet: JoinHandle<Fleet>,
    phase: Arc<AtomicU8>,
    /// From the start of the clients to this moment.
    ramp: Duration,
    /// The server's stats line at this moment.
    line: String,
}

/// Starts the `mix` of clients against `server` and waits until the server
/// owes every stalled reader and hostage a full pending buffer, then, once
/// everyone streams, until every reader has had [`MID_STREAM`] bytes back.
fn until_mid_stream(server: &mut Binary, mix: Mix) -> MidStream {
    let phase = Arc::new(AtomicU8::new(FILL));
    let mid_stream = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let fleet = clients(
        server.addr,
        mix,
        Arc::clone(&phase),
        Arc::clone(&mid_stream),
    );
    let total = (mix.fast + mix.stalled + mix.hostages) as u64;
    let owed = (mix.stalled + mix.hostages) as u64 * CAP;
    wait_for_stats(
        server,
        "a full buffer owed to each stalled reader and hostage",
        TIMEOUT,
        |l| stat(l, "active") == total && stat(l, "pending_bytes") >= owed,
    );
    phase.store(STREAM, Ordering::SeqCst);
    let readers = mix.fast + mix.stalled;
    wait_until("every reader mid-stream", Duration::from_secs(60), || {
        mid_stream.load(Ordering::SeqCst) == readers
    });
    let line = wait_for_stats(server, "the state at the signal", TIMEOUT, |_| true);
    MidStream {
        fleet,
        phase,
        ramp: started.elapsed(),
        line,
    }
}

/// SIGTERM while 1,000 clients stream: 750 read at full speed, 250 have
/// stalled with a full pending buffer owed (≥ 250 × 64 KiB at the signal)
/// and read again just after it. The server stops reading, delivers every
/// byte it had read, and exits 0 well within the grace period. Each
/// client's echo is a byte-exact prefix of what it sent, followed by end of
/// stream; the sum over clients of bytes received equals the server's final
/// `bytes_out`, which equals its `bytes_in`; all 1,000 are counted as closed
/// by the shutdown.
#[test]
fn sigterm_with_1000_clients_mid_stream_echoes_every_byte_read() {
    const GRACE_SECS: u64 = 30;
    let mix = Mix {
        fast: 750,
        stalled: 250,
        hostages: 0,
    };
    let clients_n = mix.fast + mix.stalled;
    let _serial = serial();
    let mut server = Binary::start(&[
        "--shutdown-grace",
        &GRACE_SECS.to_string(),
        "--stats-interval",
        "0.1",
    ]);
    let clients = until_mid_stream(&mut server, mix);

    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    server.stderr.wait_for("shutting down");
    clients.phase.store(RESUME, Ordering::SeqCst);
    let last = server.stderr.wait_for("stopped:");
    assert_eq!(server.wait_exit().code(), Some(0));
    let took = signalled.elapsed();
    let fleet = clients.fleet.join().expect("clients");

    let (mut sent, mut received) = (0, 0);
    for p in &fleet.peers {
        assert!(
            p.corrupt_at.is_none() && p.error.is_none() && p.eof_at.is_some(),
            "{}",
            p.describe()
        );
        assert!(
            p.received >= MID_STREAM && p.received <= p.sent,
            "{}",
            p.describe()
        );
        sent += p.sent;
        received += p.received;
    }
    eprintln!(
        "shutdown under load: {clients_n} clients mid-stream after {:?}; at the signal: {}\n\
         shutdown under load: exit 0 after {took:?}; clients sent {sent} bytes, received {received} \
         (all verified); {last}",
        clients.ramp, clients.line
    );
    assert_eq!(stat(&last, "bytes_out"), received, "{last}");
    assert_eq!(stat(&last, "bytes_in"), received, "{last}");
    assert_eq!(stat(&last, "shut_down"), clients_n as u64, "{last}");
    assert_eq!(stat(&last, "errored"), 0, "{last}");
    assert!(
        took < Duration::from_secs(GRACE_SECS / 2),
        "shutdown took {took:?}: waited on the grace period?"
    );
}

/// SIGTERM with 900 clients streaming and 100 hostages that never read and
/// never close, each owed a full pending buffer: the readers still get
/// every byte the server read from them and its end of stream; after the
/// 1 s grace period the server closes the hostages, drops their pending
/// output (at most 100 × 64 KiB: `bytes_in − bytes_out`), and exits 0 —
/// not before the grace period, and within 3 s after it. What reached the
/// hostages is a byte-exact prefix of what they sent.
#[test]
fn sigterm_grace_period_closes_hostages_and_exits_zero() {
    let grace = Duration::from_secs(1);
    let mix = Mix {
        fast: 900,
        stalled: 0,
        hostages: 100,
    };
    let total = mix.fast + mix.hostages;
    let _serial = serial();
    let mut server = Binary::start(&["--shutdown-grace", "1", "--stats-interval", "0.1"]);
    let clients = until_mid_stream(&mut server, mix);

    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    server.stderr.wait_for("shutting down");
    let gave_up = server.stderr.wait_for("shutdown grace over");
    let last = server.stderr.wait_for("stopped:");
    assert_eq!(server.wait_exit().code(), Some(0));
    let took = signalled.elapsed();
    clients.phase.store(DRAIN, Ordering::SeqCst);
    let fleet = clients.fleet.join().expect("clients");

    let (mut readers_got, mut hostages_got, mut hostages_reset) = (0, 0, 0);
    for p in &fleet.peers {
        assert!(p.corrupt_at.is_none(), "{}", p.describe());
        assert!(p.received <= p.sent, "{}", p.describe());
        if p.id < mix.fast {
            assert!(p.error.is_none() && p.eof_at.is_some(), "{}", p.describe());
            readers_got += p.received;
        } else {
            hostages_got += p.received;
            hostages_reset += usize::from(p.error.is_some());
        }
    }
    let (bytes_in, bytes_out) = (stat(&last, "bytes_in"), stat(&last, "bytes_out"));
    eprintln!(
        "grace expiry: at the signal: {}\ngrace expiry: {gave_up}\ngrace expiry: exit 0 after \
         {took:?} (grace {grace:?}); readers received {readers_got} bytes, hostages {hostages_got} \
         ({hostages_reset} of them reset); dropped {} bytes; {last}",
        clients.line,
        bytes_in - bytes_out
    );
    assert!(took >= grace, "exited before the grace period: {took:?}");
    assert!(
        took < grace + Duration::from_secs(3),
        "exited late: {took:?}"
    );
    assert_eq!(stat(&last, "shut_down"), total as u64, "{last}");
    assert_eq!(stat(&last, "active"), 0, "{last}");
    assert_eq!(stat(&last, "pending_bytes"), 0, "{last}");
    assert!(bytes_out <= bytes_in, "{last}");
    assert!(bytes_in - bytes_out <= mix.hostages as u64 * CAP, "{last}");
    assert!(readers_got + hostages_got <= bytes_out, "{last}");
}
