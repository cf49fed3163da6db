//! `--proxy-protocol`: a trusted balancer's connections begin with a PROXY
//! header (v1 or v2), and the client it names is the one admitted, limited
//! and served; a header from anyone else is data; a bad or slow header
//! closes the connection with nothing echoed, counted by reason.

pub mod support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use echoloop::{proxy, Stats};
use support::*;

/// The balancer's side of a connection: this address is what the tests
/// connect from (the default source, 127.0.0.1).
const BALANCER: &str = "127.0.0.1/32";

/// A server trusting 127.0.0.1 as a balancer, after `tweak`.
fn behind_balancer(tweak: impl FnOnce(&mut echoloop::Config)) -> TestServer {
    TestServer::start(|c| {
        c.proxy_protocol = vec![BALANCER.parse().unwrap()];
        tweak(c);
    })
}

/// A header of `version` (1 or 2) for a client at `source`.
fn header(version: u8, source: &str, server: SocketAddr) -> Vec<u8> {
    let source: SocketAddr = source.parse().expect("a client address");
    match version {
        1 => proxy::v1(source, server),
        _ => proxy::v2(source, server),
    }
}

/// Connects as the balancer and sends `header` then `data` in one write,
/// as balancers do.
fn relay(server: SocketAddr, header: &[u8], data: &[u8]) -> TcpStream {
    let stream = connect(server);
    (&stream).write_all(&[header, data].concat()).expect("send");
    stream
}

/// Asserts the server closes `stream` without sending a byte.
#[track_caller]
fn assert_closed_silently(stream: &TcpStream, what: &str) {
    let got = read_until_closed(stream);
    assert!(got.is_empty(), "{what}: {} bytes came back", got.len());
}

/// Waits until the server's counters satisfy `pred`; returns them.
#[track_caller]
fn stats_when(server: &TestServer, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
    let mut last = server.handle.stats();
    wait_until(what, TIMEOUT, || {
        last = server.handle.stats();
        pred(&last)
    });
    last
}

/// A header in either version, in one write with the data behind it or
/// byte by byte: only the data comes back, and `--deny` judges the
/// header's client, not the balancer: a denied client's data never comes
/// back and it counts as denied.
#[test]
fn v1_and_v2_clients_are_judged_by_their_header() {
    let server = behind_balancer(|c| c.deny = vec!["203.0.113.0/24".parse().unwrap()]);
    for version in [1, 2] {
        let hello = format!("hello through v{version}");
        let stream = relay(
            server.addr,
            &header(version, "198.51.100.1:4000", server.addr),
            b"",
        );
        round_trip(&stream, hello.as_bytes());
        drop(stream);
        let stream = relay(
            server.addr,
            &header(version, "203.0.113.9:4000", server.addr),
            b"denied",
        );
        assert_closed_silently(&stream, "a denied client");
    }
    // An IPv6 client, byte by byte, the data after it in the same stream.
    let stream = connect(server.addr);
    let ipv6 = proxy::v2(
        "[2001:db8::1]:9".parse().unwrap(),
        "[2001:db8::7]:7".parse().unwrap(),
    );
    for byte in ipv6 {
        (&stream).write_all(&[byte]).expect("send a byte");
    }
    round_trip(&stream, b"after a header sent in pieces");
    drop(stream);
    let stats = stats_when(&server, "the four connections counted", |s| {
        s.proxy_proxied == 5 && s.refused_denied == 2 && s.closed_by_peer == 3
    });
    assert_eq!(
        (stats.accepted, stats.active, stats.proxy_pending),
        (3, 0, 0)
    );
}

/// `--max-per-source` counts the header's clients: a second connection of
/// one client is refused while another client gets in through the same
/// balancer (which is not limited as one client); `--allow` admits by the
/// header's address although the balancer is not in it.
#[test]
fn per_source_limits_and_allow_see_the_headers_client() {
    let server = behind_balancer(|c| {
        c.max_per_source = Some(1);
        c.allow = vec!["198.51.100.0/24".parse().unwrap()];
    });
    let first = relay(server.addr, &header(1, "198.51.100.1:1", server.addr), b"");
    round_trip(&first, b"one");
    let again = relay(
        server.addr,
        &header(2, "198.51.100.1:2", server.addr),
        b"two",
    );
    assert_closed_silently(&again, "a second connection of one client");
    let other = relay(server.addr, &header(2, "198.51.100.2:1", server.addr), b"");
    round_trip(&other, b"another client, the same balancer");
    let outside = relay(server.addr, &header(1, "192.0.2.1:1", server.addr), b"no");
    assert_closed_silently(&outside, "a client outside --allow");
    let stats = stats_when(&server, "the refusals counted", |s| {
        s.refused_per_source == 1 && s.refused_denied == 1
    });
    assert_eq!((stats.accepted, stats.active), (2, 2));
}

/// v2 LOCAL (a balancer's health check) and headers with no usable address
/// (v1 UNKNOWN, v2 AF_UNSPEC) are served as the balancer itself, counted
/// by kind; with the balancer denied, they are refused.
#[test]
fn local_and_unknown_are_the_balancer() {
    let mut local = proxy::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut unspec = proxy::V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0, 0]);
    let headers = [&local[..], b"PROXY UNKNOWN\r\n", &unspec];

    let server = behind_balancer(|_| {});
    for h in headers {
        round_trip(&relay(server.addr, h, b""), b"as the balancer");
    }
    let stats = stats_when(&server, "the headers counted", |s| {
        s.proxy_local == 1 && s.proxy_unknown == 2
    });
    assert_eq!(stats.accepted, 3);

    let denied = behind_balancer(|c| c.deny = vec![BALANCER.parse().unwrap()]);
    for h in headers {
        assert_closed_silently(&relay(denied.addr, h, b"x"), "the balancer denied");
    }
    stats_when(&denied, "three refusals", |s| s.refused_denied == 3);
}

/// From a source that is not a trusted balancer no header is looked for:
/// it is data, echoed like any other.
#[test]
fn a_header_from_anyone_else_is_echoed() {
    let server = TestServer::start(|c| c.proxy_protocol = vec!["192.0.2.0/24".parse().unwrap()]);
    for version in [1, 2] {
        let bytes = header(version, "198.51.100.1:4000", server.addr);
        let stream = connect(server.addr);
        round_trip(&stream, &[&bytes[..], b"and data"].concat());
    }
    let stats = server.stop();
    assert_eq!(stats.proxy_proxied + stats.proxy_pending, 0);
}

/// Every way a balancer's first bytes can fail closes the connection with
/// nothing echoed, counted by reason: not a header, malformed (v1 and v2),
/// oversized (v1 and v2), and closed before the header ended.
#[test]
fn bad_headers_close_without_echo() {
    let server = behind_balancer(|_| {});
    let v2 = |ver_cmd: u8, family: u8, len: u16, body: &[u8]| {
        let mut h = proxy::V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, family]);
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(body);
        h
    };
    let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
    long_v1.resize(200, b'x');
    let cases: [(&str, Vec<u8>); 7] = [
        ("not a header", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "v1 bad port",
            b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 7\r\nhello".to_vec(),
        ),
        ("v1 no line end", long_v1),
        ("v2 version 3", v2(0x31, 0x11, 12, &[0; 12])),
        (
            "v2 TLV past the end",
            v2(
                0x21,
                0x11,
                15,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9],
            ),
        ),
        ("v2 length past the bound", v2(0x21, 0x11, 65_000, &[0; 12])),
        (
            "v2 AF_INET shorter than its addresses",
            v2(0x21, 0x11, 4, &[0; 4]),
        ),
    ];
    for (what, bytes) in &cases {
        assert_closed_silently(&relay(server.addr, bytes, b"data"), what);
    }
    let cut = connect(server.addr);
    (&cut)
        .write_all(b"PROXY TCP4 192.0")
        .expect("send half a header");
    cut.shutdown(Shutdown::Write).expect("shutdown(Write)");
    assert_closed_silently(&cut, "a header cut short");
    let stats = stats_when(&server, "every failure counted", |s| {
        s.proxy_not_proxy + s.proxy_malformed + s.proxy_oversized + s.proxy_incomplete == 8
    });
    assert_eq!(
        (
            stats.proxy_not_proxy,
            stats.proxy_malformed,
            stats.proxy_oversized
        ),
        (1, 4, 2)
    );
    assert_eq!(stats.proxy_incomplete, 1);
    assert_eq!(
        (stats.accepted, stats.bytes_out, stats.proxy_pending),
        (0, 0, 0)
    );
}

/// A header sent one byte a second is closed at its deadline
/// (`proxy_header_timeout`), counted as a timeout, nothing echoed; the
/// server meanwhile serves others.
#[test]
fn a_slow_header_is_closed_at_its_deadline() {
    let server = behind_balancer(|c| c.proxy_header_timeout = Duration::from_millis(1500));
    let slow = connect(server.addr);
    let bytes = header(1, "198.51.100.1:4000", server.addr);
    let mut writer = slow.try_clone().expect("try_clone");
    let dripping = thread::spawn(move || {
        for byte in bytes {
            if writer.write_all(&[byte]).is_err() {
                return; // closed by the server
            }
            thread::sleep(Duration::from_secs(1)); // the pace, not a sync point
        }
    });
    let quick = relay(server.addr, &header(2, "198.51.100.2:1", server.addr), b"");
    round_trip(&quick, b"served meanwhile");
    assert_closed_silently(&slow, "a slow header");
    let stats = stats_when(&server, "the timeout counted", |s| s.proxy_timeout == 1);
    assert_eq!((stats.accepted, stats.proxy_pending), (1, 0));
    drop(slow);
    dripping.join().expect("the dripping writer");
}

/// The real binary: `--proxy-protocol` is a flag (and its admission log
/// line says so), and a v2 header's client is judged by `--deny`.
#[cfg(unix)]
#[test]
fn the_binary_takes_the_flag() {
    let mut server = Binary::start(&["--proxy-protocol", BALANCER, "--deny", "203.0.113.0/24"]);
    let line = server.stderr.wait_for("admission:");
    assert!(
        line.contains("PROXY header required from 127.0.0.1/32"),
        "{line}"
    );
    let addr = server.addr;
    round_trip(
        &relay(addr, &header(2, "198.51.100.1:1", addr), b""),
        b"through",
    );
    assert_closed_silently(
        &relay(addr, &header(1, "203.0.113.1:1", addr), b"x"),
        "denied",
    );
    let last = server.stop();
    assert_eq!(stat(&last, "proxy_proxied"), 2, "{last}");
    assert_eq!(stat(&last, "refused_denied"), 1, "{last}");
}

/// A header still incomplete when the server shuts down is closed with
/// the rest, counted as incomplete (never admitted, so not a close), and
/// does not hold the shutdown up.
#[test]
fn shutdown_closes_a_header_still_coming() {
    let server = behind_balancer(|_| {});
    let half = connect(server.addr);
    (&half)
        .write_all(b"PROXY TCP4 198.51")
        .expect("send half a header");
    stats_when(&server, "the header pending", |s| s.proxy_pending == 1);
    let stats = server.stop();
    assert_eq!((stats.proxy_incomplete, stats.proxy_pending), (1, 0));
    assert_eq!((stats.accepted, stats.shut_down, stats.active), (0, 0, 0));
    assert_closed_silently(&half, "a header cut off by shutdown");
}

/// `echoloop-stress --proxy-protocol` against echoloop: every connection
/// names its own client from `--proxy-source`, so `--allow` (which the
/// client machine is not in) and `--max-per-source 1` let all of them in,
/// and every byte is verified (the header is not echoed, nor expected).
#[test]
fn the_stress_client_comes_through_as_many_clients() {
    for version in ["v1", "v2"] {
        let server = TestServer::start(|c| {
            c.proxy_protocol = vec!["127.0.0.0/8".parse().unwrap()];
            c.allow = vec!["10.1.0.0/16".parse().unwrap()];
            c.max_per_source = Some(1);
        });
        let run = StressArgs::to(server.addr)
            .conns(8)
            .messages(800)
            .flag("--proxy-protocol", version)
            .flag("--proxy-source", "10.1.0.1-10.1.0.8")
            .run(TIMEOUT);
        run.assert_exit(0);
        let stats = server.stop();
        assert_eq!((stats.proxy_proxied, stats.accepted), (8, 8), "{version}");
        assert_eq!(
            stats.refused_denied + stats.refused_per_source,
            0,
            "{version}"
        );
    }
}

/// A PROXY-aware echo server written here, by the specification and not
/// with the library's parser: reads each connection's header (v1 or v2,
/// TCP over IPv4), records the client it names, then echoes.
fn proxy_aware_server() -> (SocketAddr, std::sync::mpsc::Receiver<SocketAddr>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                // Both versions are at least 16 bytes; v1 then runs to "\r\n".
                let mut head = vec![0u8; 16];
                stream.read_exact(&mut head).expect("a header");
                let mut byte = [0u8; 1];
                while !head.starts_with(&proxy::V2_SIGNATURE) && !head.ends_with(b"\r\n") {
                    stream.read_exact(&mut byte).expect("a header byte");
                    head.push(byte[0]);
                }
                let client = if head.starts_with(b"PROXY TCP4 ") {
                    let line = std::str::from_utf8(&head).expect("ASCII");
                    let f: Vec<&str> = line.trim_end().split(' ').collect();
                    format!("{}:{}", f[2], f[4]).parse().expect("v1 client")
                } else {
                    assert_eq!(
                        (head[12], head[13]),
                        (0x21, 0x11),
                        "v2 PROXY, TCP over IPv4"
                    );
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
                    stream.read_exact(&mut body).expect("the v2 addresses");
                    let ip = std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                    SocketAddr::from((ip, u16::from_be_bytes([body[8], body[9]])))
                };
                let _ = tx.send(client);
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// `echoloop-stress --proxy-protocol` against someone else's PROXY-aware
/// server: v1 and v2 headers it reads by the specification name the
/// `--proxy-source` addresses in turn, a new port for each round.
#[test]
fn the_stress_client_heads_each_connection() {
    for version in ["v1", "v2"] {
        let (addr, clients) = proxy_aware_server();
        StressArgs::to(addr)
            .conns(4)
            .messages(40)
            .flag("--proxy-protocol", version)
            .flag("--proxy-source", "10.9.0.1-10.9.0.2")
            .run(TIMEOUT)
            .assert_exit(0);
        let mut named: Vec<String> = clients.try_iter().map(|c| c.to_string()).collect();
        named.sort();
        assert_eq!(
            named,
            [
                "10.9.0.1:1024",
                "10.9.0.1:1025",
                "10.9.0.2:1024",
                "10.9.0.2:1025"
            ],
            "{version}"
        );
    }
}

/// The stress client's PROXY flags need each other, and TCP: each misuse
/// is one line and exit status 2.
#[test]
fn the_stress_clients_proxy_flags_are_checked() {
    for args in [
        &["--proxy-protocol", "v1"][..],
        &["--proxy-source", "10.0.0.1"],
        &["--proxy-protocol", "v3", "--proxy-source", "10.0.0.1"],
        &[
            "--udp",
            "--proxy-protocol",
            "v2",
            "--proxy-source",
            "10.0.0.1",
        ],
    ] {
        run_to_exit(std::process::Command::new(STRESS).args(args))
            .assert_usage_error(&format!("{args:?}"));
    }
}
