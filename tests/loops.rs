//! `--loops N`: several loops serve one address, and every guarantee of the
//! single loop holds over all of them — bytes verified, per-source limits
//! exact, `--max-connections` a total, counters that add up, and a graceful
//! shutdown that resets no one, not even the clients still waiting in the
//! loops' accept queues.
//!
//! The same tests run on every build: on Linux's epoll the kernel steers
//! clients to the loops' own `SO_REUSEPORT` listeners; on the forced
//! `poll(2)` build and under Wine loop 0 hands them off. Where the platform
//! cannot tell loopback sources apart (Wine), the tests that need distinct
//! sources say so and skip.

pub mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use echoloop::{Config, Server, Stats};
use support::*;

/// Loops in every test here.
const LOOPS: usize = 4;

/// Skips the test, saying why, where sources cannot be told apart.
macro_rules! needs_distinct_sources {
    () => {
        if !sources_are_told_apart() {
            return;
        }
    };
}

/// A server with [`LOOPS`] loops, after `tweak`.
fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(|c| {
        c.loops = LOOPS;
        tweak(c);
    })
}

/// The loopback source `127.0.0.i`.
fn source(i: usize) -> String {
    format!("127.0.0.{i}")
}

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string())
}

/// `metric` with `loop="l"` added to its labels, as `/metrics` writes it.
fn labelled(metric: &str, l: usize) -> String {
    match metric.strip_suffix('}') {
        Some(open) => format!("{open},loop=\"{l}\"}}"),
        None => format!("{metric}{{loop=\"{l}\"}}"),
    }
}

/// 1,000 clients from 16 loopback sources, 4 messages of 512 bytes each,
/// every byte verified: on Linux the stress client with its default source
/// spread (127.0.0.1-127.0.0.16 against a loopback server: what makes its
/// connections spread over a multi-loop server), elsewhere the test's own
/// clients (the stress client binds source addresses on Linux only).
fn a_thousand_verified_clients(addr: SocketAddr) {
    if cfg!(target_os = "linux") {
        let run = StressArgs::to(addr)
            .conns(1000)
            .messages(4000)
            .size(512)
            .threads(2)
            .json()
            .run(Duration::from_secs(120));
        run.assert_exit(0);
        let report = run.report();
        assert_eq!(report.connections_established, 1000);
        assert_eq!(report.verification_errors, 0);
        assert_eq!(report.messages, 4000);
        return;
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for i in (t..1000).step_by(4) {
                    let c = connect_from(&source(1 + i % 16), addr);
                    for m in 0..4 {
                        round_trip(&c, &payload(i * 4 + m, 512));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
}

/// 1,000 connections from 16 sources (every byte verified) over 4 loops: every loop serves some; each loop's counters
/// add up to the totals, in `Handle::stats`, in `/metrics` (unlabelled
/// totals and `loop="i"` series alike) and in the final counters.
#[test]
fn a_thousand_clients_from_sixteen_sources_spread_and_add_up() {
    needs_distinct_sources!();
    let _serial = serial();
    let server = Server::bind(Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        loops: LOOPS,
        ..Config::default()
    })
    .expect("bind");
    let metrics = server.local_metrics_addr().expect("a metrics address");
    let server = TestServer::run(server);
    a_thousand_verified_clients(server.addr);
    wait_until("every client closed", TIMEOUT, || {
        server.handle.stats().closed_by_peer == 1000
    });
    let each = server.handle.stats_per_loop();
    assert_eq!(each.len(), LOOPS);
    assert!(
        each.iter().all(|s| s.accepted > 0),
        "a loop served no one: {each:?}"
    );
    let total = server.handle.stats();
    assert_eq!(Stats::sum(each.iter().copied()), total);
    let text = scrape(metrics);
    assert_eq!(series(&text, "echoloop_loops"), LOOPS as u64);
    for (f, field) in Stats::FIELDS.iter().enumerate() {
        let name = format!("echoloop_{}", field.metric);
        let per_loop: u64 = (0..LOOPS).map(|l| series(&text, &labelled(&name, l))).sum();
        assert_eq!(series(&text, &name), per_loop, "{name}");
        assert_eq!(series(&text, &name), total.values()[f], "{name}");
    }
    let last = server.stop();
    assert_eq!(last.accepted, 1000);
    assert_eq!(last.bytes_in, 4000 * 512);
    assert_eq!(last.bytes_out, last.bytes_in);
}

/// Every connection from one source IP is served by the same loop (the
/// steering, or the hand-off, hashes the source address), so per-source
/// state needs no sharing between loops.
#[test]
fn one_source_is_always_served_by_one_loop() {
    needs_distinct_sources!();
    let server = start(|_| {});
    let mut before = server.handle.stats_per_loop();
    for ip in [2, 7, 13] {
        let clients: Vec<TcpStream> = (0..20)
            .map(|i| {
                let c = connect_from(&source(ip), server.addr);
                round_trip(&c, &payload(i, 100));
                c
            })
            .collect();
        let now = server.handle.stats_per_loop();
        let grew: Vec<u64> = (now.iter().zip(&before))
            .map(|(n, b)| n.accepted - b.accepted)
            .collect();
        assert_eq!(
            grew.iter().filter(|&&n| n > 0).count(),
            1,
            "connections from {} spread over loops: {grew:?}",
            source(ip)
        );
        assert_eq!(grew.iter().sum::<u64>(), 20);
        drop(clients);
        before = now;
    }
}

/// The same over IPv6 (whose steering program folds the 128-bit source
/// address): every connection from ::1 is served by one loop.
#[test]
fn an_ipv6_source_is_served_by_one_loop() {
    let server = start(|c| c.listen = vec!["[::1]:0".parse().unwrap()]);
    let clients: Vec<TcpStream> = (0..20)
        .map(|i| {
            let c = connect(server.addr);
            round_trip(&c, &payload(i, 100));
            c
        })
        .collect();
    let each = server.handle.stats_per_loop();
    let serving: Vec<u64> = each.iter().map(|s| s.accepted).filter(|&n| n > 0).collect();
    assert_eq!(
        serving,
        [20],
        "connections from ::1 spread over loops: {each:?}"
    );
    drop(clients);
}

/// `--max-per-source 5 --loops 4`: from one IP the sixth concurrent
/// connection is refused, round after round and for sources that hash to
/// different loops, while another IP is served meanwhile.
#[test]
fn max_per_source_is_exact_over_loops() {
    needs_distinct_sources!();
    let server = start(|c| c.max_per_source = Some(5));
    for (round, ip) in [2, 5, 9, 14, 16].into_iter().enumerate() {
        let five: Vec<TcpStream> = (0..5)
            .map(|i| {
                let c = connect_from(&source(ip), server.addr);
                round_trip(&c, &payload(i, 64));
                c
            })
            .collect();
        assert_refused(&connect_from(&source(ip), server.addr));
        let other = connect_from(&source(if ip == 3 { 4 } else { 3 }), server.addr);
        assert_echo(&other, &payload(round, 1000));
        wait_until("the refusal counted", TIMEOUT, || {
            server.handle.stats().refused_per_source == round as u64 + 1
        });
        drop(five);
        wait_until("the round's clients closed", TIMEOUT, || {
            server.handle.stats().active == 0
        });
    }
    let stats = server.stop();
    assert_eq!(stats.refused_per_source, 5);
    assert_eq!(stats.refused, 0);
}

/// `--max-connections 100 --loops 4`: 100 clients from 16 sources are all
/// served; the 101st is refused, from whichever source and loop it comes;
/// once one closes, a new one gets its place.
#[test]
fn max_connections_is_a_total_over_loops() {
    let server = start(|c| c.max_connections = Some(100));
    let mut clients: Vec<TcpStream> = (0..100)
        .map(|i| {
            let c = connect_from(&source(1 + i % 16), server.addr);
            round_trip(&c, &payload(i, 32));
            c
        })
        .collect();
    for ip in [1, 6, 11, 16] {
        assert_refused(&connect_from(&source(ip), server.addr));
    }
    wait_until("the refusals counted", TIMEOUT, || {
        server.handle.stats().refused == 4
    });
    drop(clients.pop());
    wait_until("the place given back", TIMEOUT, || {
        server.handle.stats().active == 99
    });
    let next = connect_from(&source(8), server.addr);
    round_trip(&next, b"my turn");
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.refused), (101, 4));
}

/// `--udp --udp-rate 100 --loops 4`: one IP sending from 50 source ports
/// gets back about its rate in total (its datagrams all reach one loop, so
/// one bucket holds them), while another IP meanwhile gets everything.
#[test]
fn udp_rate_is_per_source_over_loops() {
    if !udp_sources_are_told_apart() {
        eprintln!(
            "skipped: this platform reports datagrams from 127.0.0.2 as from 127.0.0.1 \
             (Wine does), so per-source limits cannot be told apart here"
        );
        return;
    }
    const RATE: u32 = 100;
    let server = start(|c| {
        c.udp = true;
        c.udp_rate = RATE;
    });
    let addr = server.addr;
    let bystander = thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.3:0").expect("bind");
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 128];
        for i in 0..50 {
            let data = payload(i, 64);
            socket.send_to(&data, addr).expect("send");
            let (n, _) = socket.recv_from(&mut buf).expect("the bystander's echo");
            assert_same(&buf[..n], &data);
            thread::sleep(Duration::from_millis(20)); // its own slow pace
        }
    });
    let ports: Vec<UdpSocket> = (0..50)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.2:0").expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for s in &ports {
            s.send_to(b"flood", addr).expect("send");
            sent += 1;
        }
        thread::sleep(Duration::from_millis(50)); // 1,000 a second in all
    }
    let mut echoed = 0u64;
    let mut buf = [0u8; 16];
    for s in &ports {
        while s.recv_from(&mut buf).is_ok() {
            echoed += 1;
        }
    }
    bystander.join().expect("the bystander lost an echo");
    let limit = u64::from(RATE);
    assert!(
        (limit..=3 * limit).contains(&echoed),
        "the flooder sent {sent} from 50 ports, got {echoed} back at --udp-rate {RATE}"
    );
    let stats = server.stop();
    assert_eq!(stats.udp_dropped_rate_limited, sent - echoed);
}

/// Whether a datagram sent from 127.0.0.2 is seen as coming from 127.0.0.2
/// (Linux, Windows) rather than 127.0.0.1 (Wine).
fn udp_sources_are_told_apart() -> bool {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver.set_read_timeout(Some(TIMEOUT)).unwrap();
    let sender = UdpSocket::bind("127.0.0.2:0").expect("bind");
    let to = receiver.local_addr().expect("its address");
    sender.send_to(b"?", to).expect("send");
    let (_, from) = receiver
        .recv_from(&mut [0u8; 4])
        .expect("a loopback datagram");
    from.ip() == sender.local_addr().expect("its address").ip()
}

/// Graceful shutdown with 200 clients still waiting in the loops' accept
/// queues (connected before the loops ran; each loop accepts one client
/// per turn, and shutdown is asked before the first): every one is taken
/// in and closed with a FIN, none reset, and the server returns cleanly.
/// Closing a listener with clients in its queue resets them.
#[test]
fn shutdown_resets_no_one_waiting_in_the_accept_queues() {
    let _serial = serial();
    let server = Server::bind(Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        loops: LOOPS,
        accepts_per_turn: 1,
        ..Config::default()
    })
    .expect("bind");
    let addr = server.local_addrs()[0];
    let handle = server.handle();
    let clients: Vec<TcpStream> = (0..200)
        .map(|i| {
            let c = connect_from(&source(1 + i % 16), addr);
            (&c).write_all(&payload(i, 100)).expect("send");
            c
        })
        .collect();
    handle.shutdown().expect("ask for shutdown");
    let running = thread::spawn(move || server.run());
    for (i, c) in clients.iter().enumerate() {
        // Whatever was echoed is a prefix of what was sent, then a FIN.
        let got = read_to_eof(c);
        assert_same(&got, &payload(i, 100)[..got.len()]);
    }
    drop(clients);
    wait_until("the server to stop", TIMEOUT, || running.is_finished());
    let stats = running.join().expect("no panic").expect("a clean stop");
    assert_eq!(stats.accepted, 200, "{stats}");
    assert_eq!(stats.errored, 0, "{stats}");
}

/// Graceful shutdown with `--loops 4` under load: 32 clients from 16
/// sources stream while shutdown begins; each reads a prefix of what it
/// sent and then a FIN (no reset), the server returns cleanly, and it
/// echoed every byte it read.
#[test]
fn shutdown_under_load_echoes_everything_read() {
    let _serial = serial();
    let server = start(|c| c.shutdown_grace = Duration::from_secs(20));
    let streams: Vec<(TcpStream, Vec<u8>)> = (0..32)
        .map(|i| {
            (
                connect_from(&source(1 + i % 16), server.addr),
                payload(i, 512 * 1024),
            )
        })
        .collect();
    let readers: Vec<_> = (streams.iter())
        .map(|(c, data)| {
            let c = c.try_clone().expect("clone");
            let data = data.clone();
            thread::spawn(move || {
                let got = read_to_eof(&c);
                assert_same(&got, &data[..got.len()]);
                got.len() as u64
            })
        })
        .collect();
    let writers: Vec<_> = (streams.iter())
        .map(|(c, data)| spawn_writer(c, data.clone()))
        .collect();
    wait_until("echo flowing", TIMEOUT, || {
        server.handle.stats().bytes_out > 4 << 20
    });
    server.handle.shutdown().expect("ask for shutdown");
    for ((c, _), w) in streams.iter().zip(writers) {
        w.join().expect("writer");
        let _ = c.shutdown(std::net::Shutdown::Write);
    }
    let echoed: u64 = readers
        .into_iter()
        .map(|r| r.join().expect("a clean end"))
        .sum();
    let stats = server.stop();
    assert_eq!(stats.bytes_out, stats.bytes_in, "{stats}");
    assert_eq!(stats.bytes_out, echoed);
    assert_eq!(stats.errored, 0, "{stats}");
}

/// `--loops 0`, a count past the bound, a non-number and a negative one
/// are each one line naming the flag and exit status 2, never a panic.
#[test]
fn bad_loops_values_are_usage_errors() {
    for bad in ["0", "1025", "many", "-1"] {
        let exit = run_to_exit(std::process::Command::new(ECHOLOOP).args(["--loops", bad]));
        let line = exit.assert_usage_error(&format!("--loops {bad}"));
        assert!(line.contains("--loops"), "{line}");
    }
}

/// The real binary with `--loops auto --pin` (`ECHOLOOP_LOOPS` spelled as
/// a flag) says how many loops serve and how, echoes, and on SIGTERM exits
/// 0 with the totals in its last line.
#[cfg(unix)]
#[test]
fn the_binary_runs_every_core_and_stops_cleanly() {
    let mut server = Binary::start(&["--loops", "auto", "--pin"]);
    server.stderr.wait_for(
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            " loops: "
        } else {
            "admission:"
        },
    );
    for i in 0..16 {
        assert_echo(
            &connect_from(&source(1 + i), server.addr),
            &payload(i, 4096),
        );
    }
    let last = server.stop();
    assert_eq!(stat(&last, "accepted"), 16, "{last}");
    assert_eq!(stat(&last, "bytes_out"), 16 * 4096, "{last}");
}

/// A listen address another socket holds fails the whole start with one
/// error naming the bind, whatever the loop count: no loop runs while
/// another could not bind.
#[test]
fn a_taken_address_fails_every_loop_at_start() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the holder");
    let taken = holder.local_addr().expect("its address");
    let failed = Server::bind(Config {
        listen: vec![taken],
        loops: LOOPS,
        ..Config::default()
    })
    .expect_err("the address is taken");
    assert!(
        failed.to_string().contains(&format!("bind {taken}")),
        "{failed}"
    );
}
