//! `--metrics`: the Prometheus exposition checked by Prometheus' own
//! `promtool`, counters equal to `Handle::stats()`, `/healthz` through a
//! shutdown, the HTTP error answers, silent scrapers and streaming clients
//! that cannot starve the echo, a health check through a flood, and bad
//! flags.

pub mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::{Config, Handle, Server, Stats};
use support::*;

/// An in-process server with `--metrics` on 127.0.0.1:0.
struct Scraped {
    echo: SocketAddr,
    metrics: SocketAddr,
    handle: Handle,
    thread: Option<JoinHandle<std::io::Result<Stats>>>,
}

impl Scraped {
    fn start(tweak: impl FnOnce(&mut Config)) -> Scraped {
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::bind(config).expect("bind");
        let echo = server.local_addrs()[0];
        let metrics = server.local_metrics_addr().expect("a metrics address");
        let handle = server.handle();
        let thread = Some(thread::spawn(move || server.run()));
        Scraped {
            echo,
            metrics,
            handle,
            thread,
        }
    }
}

impl Drop for Scraped {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `request` as is and returns the whole response (the server
/// closes after answering).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    String::from_utf8(response).expect("a text response")
}

/// `GET path`, returning (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    let code = response[9..12].parse().expect("a status code");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// exposition.
fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
        .parse::<f64>()
        .expect("a number") as u64
}

/// After 100 echo clients (and some UDP), every counter exposed equals the
/// server's own `Handle::stats()` at that moment, one series per field.
#[test]
fn exposed_counters_equal_the_stats() {
    let server = Scraped::start(|c| c.udp = true);
    for i in 0..100 {
        assert_echo(&connect(server.echo), &payload(i, 1000 + i));
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(TIMEOUT)).unwrap();
    udp.send_to(b"datagram", server.echo).unwrap();
    udp.recv_from(&mut [0u8; 16]).expect("udp echo");
    wait_until("every close and the datagram counted", TIMEOUT, || {
        let s = server.handle.stats();
        s.closed_by_peer == 100 && s.udp_datagrams_out == 1
    });
    let stats = server.handle.stats();
    let (code, text) = get(server.metrics, "/metrics");
    assert_eq!(code, 200);
    for (field, value) in Stats::FIELDS.iter().zip(stats.values()) {
        let name = format!("echoloop_{}", field.metric);
        assert_eq!(series(&text, &name), value, "{name}");
    }
    assert_eq!(stats.accepted, 100);
}

/// Prometheus' own checker finds no problem in the exposition of a
/// two-loop server (names, HELP and TYPE lines, counters' `_total`, the
/// totals beside each loop's `loop="i"` series, the limits and, on Linux, the
/// `process_*` metrics). promtool comes with Debian's `prometheus`
/// package (see `support::tools` for when it is installed, and when its
/// absence skips the test). Unix: promtool is a Linux program, which a
/// Windows build under Wine cannot start.
#[cfg(unix)]
#[test]
fn promtool_finds_no_problem() {
    use std::process::Stdio;
    let test = "promtool_finds_no_problem";
    let Some(promtool) = support::tools::program(test, "promtool", "prometheus") else {
        return;
    };
    let mut promtool = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool check metrics");
    let server = Scraped::start(|c| {
        c.udp = true;
        c.idle_timeout = Some(Duration::from_secs(60));
        c.loops = 2; // each loop's series besides the totals
    });
    assert_echo(&connect(server.echo), b"something to count");
    let (_, text) = get(server.metrics, "/metrics");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
    #[cfg(target_os = "linux")]
    for name in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(text.contains(&format!("\n{name} ")), "no {name}");
    }
}

/// `/healthz` is 200 while serving and 503 once shutdown has begun (during
/// the grace period, here held open by a client owed output it does not
/// read), and the metrics endpoint keeps answering meanwhile.
#[test]
fn healthz_turns_503_when_shutdown_begins() {
    let server = Scraped::start(|c| c.shutdown_grace = Duration::from_secs(30));
    assert_eq!(get(server.metrics, "/healthz"), (200, "ok\n".to_string()));
    let stuck = connect(server.echo);
    let writer = spawn_writer(&stuck, payload(3, 8 << 20));
    wait_until("output owed to the stuck client", TIMEOUT, || {
        server.handle.stats().pending_bytes > 0
    });
    server.handle.shutdown().unwrap();
    wait_until("/healthz says 503", TIMEOUT, || {
        get(server.metrics, "/healthz").0 == 503
    });
    assert_eq!(get(server.metrics, "/metrics").0, 200);
    drop(stuck);
    let _ = writer.join();
}

/// The HTTP answers: unknown path 404, other methods 405 (with `Allow`), a
/// malformed request line or version 400, a version other than HTTP/1.0
/// and 1.1 505, a head over 8 KiB 431; each one line of status and a
/// close. A request after an empty line is answered.
#[test]
fn http_errors_are_answered_by_status() {
    let server = Scraped::start(|_| {});
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let cases: [(&[u8], &str); 9] = [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /healthz HTTP/1.1garbage\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /healthz HTTP/1.9\r\n\r\n", "HTTP/1.1 505 "),
        (b"GET /healthz HTTP/2.0\r\n\r\n", "HTTP/1.1 505 "),
        (b"\r\nGET /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 200 "),
        (big.as_bytes(), "HTTP/1.1 431 "),
    ];
    for (request, status) in cases {
        let response = http(server.metrics, request);
        assert!(response.starts_with(status), "{status}: {response}");
        assert!(response.contains("Connection: close\r\n"), "{response}");
    }
    let response = http(server.metrics, b"PUT /healthz HTTP/1.1\r\n\r\n");
    assert!(response.contains("\r\nAllow: GET, HEAD\r\n"), "{response}");
}

/// 1,000 metrics connections that say nothing are all closed (by the
/// timeout, or at once beyond the endpoint's own limit), never count
/// against echo clients, and cannot starve them: echo round trips meanwhile
/// keep a p99 under 50 ms. (200 on Windows: under Wine a thousand connects
/// alone take a minute, and the claim is the same.)
#[test]
fn silent_scrapers_cannot_starve_the_echo() {
    const SILENT: usize = if cfg!(windows) { 200 } else { 1000 };
    let _serial = serial();
    let server = Scraped::start(|c| c.max_connections = Some(10));
    let silent: Vec<TcpStream> = (0..SILENT).map(|_| connect(server.metrics)).collect();
    let echo = connect(server.echo);
    let mut rtts = Vec::new();
    let started = Instant::now();
    while rtts.len() < 500 || started.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        (&echo).write_all(b"ping").unwrap();
        (&echo).read_exact(&mut [0u8; 4]).unwrap();
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let p99 = rtts[rtts.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "echo p99 {p99:?} beside silent scrapers"
    );
    // All of them within one deadline, not one per connection.
    let deadline = Instant::now() + TIMEOUT;
    for s in &silent {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        assert_eq!(read_until_closed(s).len(), 0);
    }
    assert_eq!(
        server.handle.stats().refused,
        0,
        "scrapers counted as echo clients"
    );
}

/// Whether the server has not closed `stream` (no end of stream, no reset
/// waiting to be read); nothing is consumed.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("non-blocking");
    let open = matches!(
        stream.peek(&mut [0u8; 1]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).expect("blocking");
    open
}

/// Bytes one streaming connection may take before the test calls it
/// "living on": the server cuts one after a few KiB, and this is kernel
/// buffers many times over.
const STREAM_CAP: usize = 256 << 20;

/// One client streaming into the metrics port, reconnecting whenever the
/// server cuts it, until `stop`: what it sends first (a request, a head
/// that never ends, or empty lines), then 1 MiB chunks. Returns how many
/// of its connections were cut; panics if one took [`STREAM_CAP`].
fn spawn_streamer(
    addr: SocketAddr,
    first: &'static [u8],
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        while !stop.load(Ordering::Relaxed) {
            let mut stream = connect(addr);
            let mut sent = first.len();
            let mut outcome = stream.write_all(first);
            while outcome.is_ok() && sent < STREAM_CAP && !stop.load(Ordering::Relaxed) {
                outcome = stream.write_all(&chunk);
                sent += chunk.len();
            }
            match outcome {
                Err(e) => {
                    let timed_out = matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                    assert!(!timed_out, "a streaming client was neither read nor cut");
                    cut.fetch_add(1, Ordering::Relaxed);
                }
                Ok(()) => assert!(sent < STREAM_CAP, "a metrics connection took {sent} bytes"),
            }
        }
    })
}

/// Clients streaming MiBs into the metrics port (after a request, in a head
/// that never ends, as empty lines) are cut off after a few KiB, again and
/// again as they reconnect, and the echo port answers meanwhile: while they
/// stream, and after each probe they are still being cut.
#[test]
fn streaming_into_metrics_cannot_stall_the_echo() {
    let _serial = serial();
    let server = Scraped::start(|_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let firsts: [&'static [u8]; 3] = [
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nX-Long: ",
        b"\r\n",
    ];
    let streamers: Vec<_> = firsts
        .into_iter()
        .map(|first| spawn_streamer(server.metrics, first, stop.clone(), cut.clone()))
        .collect();
    wait_until("the streaming clients cut off", TIMEOUT, || {
        cut.load(Ordering::Relaxed) >= firsts.len()
    });
    let echo = connect(server.echo);
    echo.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for i in 0..20 {
        let before = cut.load(Ordering::Relaxed);
        round_trip(&echo, &payload(i, 64));
        // Streaming goes on after the probe: the probe was answered during
        // it, not after it.
        wait_until("more streaming clients cut off", TIMEOUT, || {
            cut.load(Ordering::Relaxed) > before
        });
    }
    stop.store(true, Ordering::Relaxed);
    for streamer in streamers {
        streamer.join().expect("a streaming client failed");
    }
    assert_eq!(get(server.metrics, "/healthz").0, 200);
}

/// Silent connections from four other sources fill the metrics endpoint
/// (each source beyond its share, all of them beyond the limit); a health
/// check from 127.0.0.1 is still answered 200, and the flood loses one
/// connection to it. Skipped where sources cannot be told apart (Wine).
#[test]
fn a_health_check_gets_through_a_flood_from_elsewhere() {
    if !sources_are_told_apart() {
        return;
    }
    let _serial = serial();
    const PER_FLOODER: usize = 20;
    let server = Scraped::start(|_| {});
    let addr = server.metrics;
    let flooders: Vec<JoinHandle<Vec<TcpStream>>> = (2..6)
        .map(|i| {
            let ip = format!("127.0.0.{i}");
            thread::spawn(move || (0..PER_FLOODER).map(|_| connect_from(&ip, addr)).collect())
        })
        .collect();
    let flood: Vec<TcpStream> = flooders
        .into_iter()
        .flat_map(|f| f.join().expect("a flooder"))
        .collect();
    // The endpoint holds 64: the rest of the flood is closed at once.
    let held = 64;
    wait_until("the flood held by the endpoint", TIMEOUT, || {
        flood.iter().filter(|s| !still_open(s)).count() >= flood.len() - held
    });
    let open_before = flood.iter().filter(|s| still_open(s)).count();
    assert_eq!(
        open_before, held,
        "the flood fills the endpoint (unless this machine took 5 s to open it)"
    );
    let check = connect_from("127.0.0.1", addr);
    (&check)
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = String::from_utf8(read_until_closed(&check)).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200 ") && response.ends_with("\r\n\r\nok\n"),
        "health check during the flood: {response:?}"
    );
    wait_until("a flood connection closed to make room", TIMEOUT, || {
        flood.iter().filter(|s| still_open(s)).count() == held - 1
    });
}

/// Bad input, each one line naming the flag and a non-zero exit: a range
/// that is not one, a metrics port in use, metrics on a listen address.
#[test]
fn bad_metrics_and_admission_flags_fail_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_addr = free.local_addr().unwrap().to_string();
    drop(free);
    for (args, needle) in [
        (vec!["--allow", "300.1.2.3/8"], "--allow"),
        (vec!["--deny", "10.0.0.0/33"], "--deny"),
        (vec!["--max-per-source", "0"], "--max-per-source"),
        (vec!["--metrics", &taken], "bind metrics"),
        (
            vec!["--listen", &free_addr, "--metrics", &free_addr],
            "metrics",
        ),
    ] {
        let out = Command::new(ECHOLOOP)
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
