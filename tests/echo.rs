//! Echo semantics (RFC 862): every byte back, in order, binary-safe, for one
//! client or a thousand, until the client closes.

pub mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// Sizes from 1 byte to 16 MiB ([`ECHO_SIZES`]) — around the 64 KiB read
/// buffer and pending cap, and far past what socket buffers hold — come
/// back byte-exact, NUL bytes included, and the server counts them all.
#[test]
fn echoes_every_size_byte_exact() {
    let server = TestServer::start(|_| {});
    let mut total = echo_each_size(server.addr);
    let zeros = vec![0u8; 100_000];
    assert_echo(&connect(server.addr), &zeros);
    total += zeros.len() as u64;

    let stats = server.stop();
    assert_eq!(stats.bytes_in, total);
    assert_eq!(stats.bytes_out, total);
    assert_eq!(stats.closed_by_peer, ECHO_SIZES.len() as u64 + 1);
    assert_eq!(stats.errored, 0);
    assert_eq!(stats.pending_bytes, 0);
}

/// 1,000 clients connected at once, each sending its own numbered messages
/// in interleaved rounds, all get exactly their own bytes back in order.
#[test]
fn thousand_concurrent_clients_interleave() {
    const CLIENTS: usize = 1000;
    const ROUNDS: usize = 5;
    let server = TestServer::start(|_| {});
    let clients: Vec<_> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    wait_until("all clients accepted", TIMEOUT, || {
        server.handle.stats().active == CLIENTS as u64
    });

    // Four threads, each driving a quarter of the clients round-robin.
    thread::scope(|s| {
        for group in clients.chunks(CLIENTS / 4) {
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let msgs: Vec<Vec<u8>> = (0..group.len())
                        .map(|i| {
                            format!("client {i} round {round} {}\n", "x".repeat(i % 97))
                                .into_bytes()
                        })
                        .collect();
                    for (mut c, msg) in group.iter().zip(&msgs) {
                        c.write_all(msg).unwrap();
                    }
                    for (mut c, msg) in group.iter().zip(&msgs) {
                        let mut got = vec![0; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        assert_same(&got, msg);
                    }
                }
            });
        }
    });
    assert_eq!(server.handle.stats().peak_active, CLIENTS as u64);
    drop(clients);
    wait_until("all connections closed", TIMEOUT, || {
        server.handle.stats().active == 0
    });
    let stats = server.stop();
    assert_eq!(stats.accepted, CLIENTS as u64);
    assert_eq!(stats.closed_by_peer + stats.errored, CLIENTS as u64);
    assert_eq!(stats.bytes_in, stats.bytes_out);
}

/// After the client shuts down its write side, the server still echoes
/// everything it received, then closes (the client reads end of stream),
/// and counts it as a clean close.
#[test]
fn half_close_echoes_everything_then_closes() {
    let server = TestServer::start(|_| {});
    let stream = connect(server.addr);
    let data = payload(7, 200_000);
    (&stream).write_all(&data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let got = read_until_closed(&stream);
    assert_same(&got, &data);
    wait_until("clean close counted", TIMEOUT, || {
        server.handle.stats().closed_by_peer == 1
    });
    assert_eq!(server.handle.stats().active, 0);
}

/// A client that resets mid-stream (SO_LINGER 0 with echo unread) closes
/// only its own connection: it is counted, and another client, connected
/// throughout, is still served.
#[test]
fn reset_mid_stream_closes_only_that_connection() {
    let server = TestServer::start(|_| {});
    let bystander = connect(server.addr);
    (&bystander).write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    (&bystander).read_exact(&mut buf).unwrap();

    let victim = socket2::Socket::from(connect(server.addr));
    let data = payload(3, 1 << 20);
    let victim_std: std::net::TcpStream = victim.try_clone().unwrap().into();
    let writer = spawn_writer(&victim_std, data);
    wait_until("the server to read from the victim", TIMEOUT, || {
        server.handle.stats().bytes_in >= 64 * 1024
    });
    victim.set_linger(Some(Duration::ZERO)).unwrap();
    victim.shutdown(Shutdown::Both).ok();
    drop(victim_std);
    drop(victim);
    let _ = writer.join();

    wait_until("the reset connection to close", TIMEOUT, || {
        server.handle.stats().active == 1
    });
    let stats = server.handle.stats();
    assert_eq!(stats.errored + stats.closed_by_peer, 1, "{stats}");
    assert_echo(&bystander, &payload(4, 100_000));
}

/// One client streaming at full speed does not starve another: the
/// ping-pong client's 200 round trips complete while the flood runs.
#[test]
fn streaming_client_does_not_starve_others() {
    let server = TestServer::start(|_| {});
    let flood = connect(server.addr);
    let writer = spawn_writer(&flood, payload(9, 256 << 20));
    let mut drain = flood.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        while let Ok(n) = drain.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    wait_until("the flood to be under way", TIMEOUT, || {
        server.handle.stats().bytes_out > 8 << 20
    });

    let ping = connect(server.addr);
    let started = Instant::now();
    for i in 0..200u32 {
        let msg = i.to_le_bytes();
        (&ping).write_all(&msg).unwrap();
        let mut got = [0u8; 4];
        (&ping).read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
    let elapsed = started.elapsed();
    assert!(server.handle.stats().bytes_out > 8 << 20);
    flood.shutdown(Shutdown::Both).ok();
    let _ = writer.join();
    let _ = reader.join();
    // Liveness, not a benchmark: generous bound.
    assert!(
        elapsed < Duration::from_secs(10),
        "200 round trips took {elapsed:?}"
    );
}

/// Urgent ("out-of-band") data is part of the stream RFC 862 echoes: `BBBB`,
/// an urgent `!` and `CCCC`, corked into one segment, come back as
/// `BBBB!CCCC` — every byte, and without waiting for the client to send
/// more. Linux's `recv` stops short at the urgent mark; a server that took
/// that short read for "drained" would leave `CCCC` unread until the next
/// segment, and one without `SO_OOBINLINE` would drop the `!`.
#[cfg(target_os = "linux")]
#[test]
fn urgent_byte_is_echoed_in_the_stream() {
    let server = TestServer::start(|_| {});
    echo_urgent_rounds(&server, 20);
}

/// Sends `rounds` corked `BBBB`, urgent `!`, `CCCC` to `server` on one
/// connection and asserts each comes back whole and in order, then that the
/// server closed it and counted every byte.
#[cfg(target_os = "linux")]
#[track_caller]
fn echo_urgent_rounds(server: &TestServer, rounds: u64) {
    use std::os::fd::AsRawFd;
    let before = server.handle.stats().bytes_out;
    let stream = connect(server.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let fd = stream.as_raw_fd();
    let cork = |on: libc::c_int| {
        // SAFETY: setsockopt on a socket we own, with a live c_int.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "TCP_CORK");
    };
    for round in 0..rounds {
        cork(1);
        (&stream).write_all(b"BBBB").unwrap();
        // SAFETY: send(2) of one byte from a live buffer on our socket.
        let sent = unsafe { libc::send(fd, b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
        assert_eq!(sent, 1, "send MSG_OOB");
        (&stream).write_all(b"CCCC").unwrap();
        cork(0);
        let mut got = [0u8; 9];
        (&stream)
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("round {round}: echo of BBBB!CCCC incomplete: {e}"));
        assert_eq!(&got, b"BBBB!CCCC", "round {round}");
    }
    drop(stream);
    wait_until("closed", TIMEOUT, || server.handle.stats().active == 0);
    assert_eq!(server.handle.stats().bytes_out - before, rounds * 9);
}

/// A listener the caller bound itself (std, 127.0.0.1:0) is served as
/// given: the server listens exactly there, echoes every size through it,
/// and (Linux) gives its clients the options a listener of its own passes
/// on — an urgent byte stays in the stream.
#[test]
fn serves_a_listener_it_is_handed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = echoloop::Server::from_listeners(echoloop::Config::default(), vec![listener])
        .expect("serve the listener");
    let server = TestServer::run(server);
    assert_eq!(server.addrs, vec![addr]);
    #[allow(unused_mut)] // only Linux adds the urgent rounds
    let mut total = echo_each_size(addr);
    #[cfg(target_os = "linux")]
    {
        echo_urgent_rounds(&server, 3);
        total += 3 * 9;
    }
    let stats = server.stop();
    assert_eq!(stats.bytes_in, total);
    assert_eq!(stats.bytes_out, total);
    assert_eq!(stats.errored, 0);
}
