//! Limits: the connection cap, the idle timeout, and descriptor exhaustion.

pub mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

/// Over `--max-connections`, a new client is accepted and closed at once —
/// it reads end of stream (or a reset) promptly instead of hanging — and is
/// counted as refused; admitted clients are unaffected, and a slot freed by
/// a leaving client is given to the next one.
#[test]
fn max_connections_refuses_promptly() {
    let server = TestServer::start(|c| c.max_connections = Some(3));
    let admitted: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    for (i, c) in admitted.iter().enumerate() {
        (&*c).write_all(&[i as u8; 10]).unwrap();
        let mut got = [0u8; 10];
        (&*c).read_exact(&mut got).unwrap();
        assert_eq!(got, [i as u8; 10]);
    }

    let refused = connect(server.addr);
    let started = Instant::now();
    let got = read_until_closed(&refused);
    assert!(got.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        started.elapsed()
    );
    wait_until("refusal counted", TIMEOUT, || {
        server.handle.stats().refused == 1
    });
    assert_eq!(server.handle.stats().active, 3);

    // The admitted ones still echo.
    assert_echo(&admitted[0], b"still here");
    wait_until("slot freed", TIMEOUT, || server.handle.stats().active == 2);
    assert_echo(&connect(server.addr), b"next in line");
    let stats = server.stop();
    assert_eq!(stats.accepted, 4);
    assert_eq!(stats.refused, 1);
    assert_eq!(stats.peak_active, 3);
}

/// With `--idle-timeout`, a silent connection is closed on time (not
/// before the timeout, not long after), while one that keeps talking is
/// kept; both are counted as timed out once silent.
#[test]
fn idle_timeout_closes_silent_connections_on_time() {
    let timeout = Duration::from_millis(300);
    const TALKS: u8 = 30; // 50 ms apart: 5 timeouts
    let server = TestServer::start(|c| c.idle_timeout = Some(timeout));
    // Before the connect: the server cannot stamp it any earlier.
    let started = Instant::now();
    let silent = connect(server.addr);
    let chatty = connect(server.addr);
    wait_until("both accepted", TIMEOUT, || {
        server.handle.stats().active == 2
    });

    // The chatty client talks every 50 ms for 5 timeouts' worth of time.
    let chatter = std::thread::spawn(move || {
        let mut buf = [0u8; 1];
        for i in 0..TALKS {
            (&chatty).write_all(&[i]).unwrap();
            (&chatty).read_exact(&mut buf).unwrap();
            assert_eq!(buf, [i]);
            std::thread::sleep(Duration::from_millis(50)); // pacing, not sync
        }
        chatty
    });

    assert!(read_until_closed(&silent).is_empty());
    let closed_after = started.elapsed();
    assert!(closed_after >= timeout, "closed early: {closed_after:?}");
    // Not long after: while the chatty client, served by the same loop, is
    // still in its five timeouts of talk (a bound that a slow platform
    // stretches on both sides alike, unlike a fixed slack).
    assert!(
        !chatter.is_finished(),
        "closed late: {closed_after:?}, after the chatty client's {:?} of talk",
        timeout * 5
    );

    let chatty = chatter.join().expect("chatty client kept being served");
    assert!(read_until_closed(&chatty).is_empty());
    let stats = server.stop();
    assert_eq!(stats.timed_out, 2);
    assert_eq!(stats.bytes_out, u64::from(TALKS));
}

/// Without `--idle-timeout`, silent connections are held indefinitely and
/// new clients are still served.
#[test]
fn without_idle_timeout_silent_connections_stay() {
    let server = TestServer::start(|_| {});
    let silent: Vec<_> = (0..50).map(|_| connect(server.addr)).collect();
    wait_until("all accepted", TIMEOUT, || {
        server.handle.stats().active == 50
    });
    assert_echo(&connect(server.addr), b"served");
    // Counted before its socket closed, so no wait is needed here.
    assert_eq!(server.handle.stats().closed_by_peer, 1);
    assert_eq!(server.handle.stats().timed_out, 0);
    assert_eq!(server.handle.stats().active, 50);
    drop(silent);
}

/// A server run with a small open-file limit (a child process) takes a
/// storm of connections beyond its descriptors: accept fails with EMFILE,
/// the server pauses accepting instead of spinning (its CPU time over a
/// second of storm stays small), does not exit, keeps serving the clients
/// it has, and serves new clients once the storm's clients leave.
#[cfg(target_os = "linux")]
#[test]
fn emfile_storm_neither_spins_nor_exits() {
    const FD_LIMIT: u64 = 64;
    let mut cmd = echoloop_with_fd_limit(FD_LIMIT);
    cmd.args(["--max-connections", "1000"]);
    let mut server = Binary::start_with(&mut cmd);

    let storm: Vec<_> = (0..200).map(|_| connect(server.addr)).collect();
    server.stderr.wait_for("pausing accepts");
    let cpu_before = cpu_ticks(server.child.id());
    let window = Instant::now();
    // One second of storm: the measurement window, not a sync point.
    while window.elapsed() < Duration::from_secs(1) {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "server exited during the storm"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_used = cpu_ticks(server.child.id()) - cpu_before;
    // Spinning would burn ~100 ticks; backing off every 100 ms costs ~0.
    assert!(
        cpu_used <= 20,
        "server used {cpu_used} clock ticks of CPU in 1 s of EMFILE storm"
    );

    // The first clients were accepted before the limit and are served.
    assert_echo(&storm[0], b"first in");
    drop(storm);

    // Once the storm's clients are gone, a new client is served.
    let client = connect(server.addr);
    assert_echo(&client, &payload(1, 100_000));
    assert!(server.child.try_wait().unwrap().is_none(), "server exited");
}

/// A low open-file limit that leaves the default `--max-connections` small
/// is said at warn level at start, with the number and the cure — not only
/// in a debug line an operator never sees.
#[cfg(target_os = "linux")]
#[test]
fn low_fd_limit_is_warned_about() {
    let server = Binary::start_with(&mut echoloop_with_fd_limit(100));
    let seen = &server.stderr.seen;
    let warning = seen
        .iter()
        .find(|l| l.text.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning before listening: {seen:?}"));
    assert!(
        warning
            .text
            .contains("open-file limit (100) leaves --max-connections at 36"),
        "{}",
        warning.text
    );
}

/// `--send-buffer` fixes the kernel send buffer of every accepted
/// connection, as `ss` (iproute2, not ours) reports it: `tb` in its socket
/// memory figures is twice the size asked for (Linux doubles `SO_SNDBUF`
/// for its bookkeeping) and stays there under load, while without the flag
/// the kernel autotunes it past that.
#[cfg(target_os = "linux")]
#[test]
fn send_buffer_fixes_the_kernel_send_buffer() {
    let test = "send_buffer_fixes_the_kernel_send_buffer";
    let Some(ss) = support::tools::program(test, "ss", "iproute2") else {
        return;
    };
    let sndbuf = |send_buffer: Option<usize>| {
        let server = TestServer::start(|c| c.send_buffer = send_buffer);
        let client = connect(server.addr);
        // 4 MiB through, read back: enough for autotuning to grow it.
        let chunk = vec![7u8; 64 * 1024];
        let mut back = vec![0u8; chunk.len()];
        for _ in 0..64 {
            (&client).write_all(&chunk).unwrap();
            (&client).read_exact(&mut back).unwrap();
        }
        let filter = format!("sport = :{}", server.addr.port());
        let out = std::process::Command::new(&ss)
            .args(["-tmnH", "state", "established", &filter])
            .output()
            .expect("ss");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let tb = text
            .split(|c: char| c == ',' || c == '(' || c == ')' || c.is_whitespace())
            .find_map(|field| field.strip_prefix("tb")?.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no tb in ss output: {text:?}"));
        server.stop();
        tb
    };
    let fixed = sndbuf(Some(64 * 1024));
    assert_eq!(fixed, 2 * 64 * 1024, "--send-buffer 65536");
    let autotuned = sndbuf(None);
    assert!(autotuned > fixed, "autotuned {autotuned}, fixed {fixed}");
    eprintln!("send buffer: fixed {fixed} bytes, autotuned {autotuned} bytes after 4 MiB");
}
