//! End-to-end tests of `echoloop-stress --udp`.
//!
//! Each test runs the real binary against a UDP echo server: one written
//! here (a thread with a std `UdpSocket` that echoes each datagram to its
//! source), or a deliberately broken variant of it that drops, duplicates,
//! swaps, alters or invents datagrams, or the real `echoloop --udp`. All on
//! 127.0.0.1 (or ::1) with port 0, every run bounded by `--messages` or a
//! short `--duration`, every wait on a child bounded by a timeout. The
//! helpers are this file's own.

use std::collections::HashSet;
#[cfg(target_os = "linux")]
use std::net::IpAddr;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub mod support;

use support::{Binary, Report, StressArgs, StressRun};

/// Longest any run (or wait for the real server) may take before the test
/// fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What a test server does with the `i`-th datagram it receives (counted
/// from 0 over all its clients).
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Echo every datagram to its source (RFC 862 section 2).
    Echo,
    /// Drop datagram `i` when `i % n == n - 1`: one in `n`.
    DropEvery(u64),
    /// Drop only datagram `k`.
    DropAt(u64),
    /// Echo datagram `i` twice when `i % n == 10`.
    DuplicateEvery(u64),
    /// Hold datagram `k` back and echo it after datagram `k + 1`.
    SwapAt(u64),
    /// Flip one bit of byte `byte` of datagram `k`.
    FlipAt {
        /// Which datagram.
        k: u64,
        /// Which byte of it.
        byte: usize,
    },
    /// Echo datagram `k` one byte short.
    TruncateAt(u64),
    /// After datagram `k`, send a copy of it whose header claims sequence
    /// 1,000,000: a datagram the client never sent.
    InventAfter(u64),
    /// Echo every datagram from a second socket (another port) instead.
    FromElsewhere,
}

/// A running test server.
struct UdpServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Every source address (IP and port) it received from.
    peers: Arc<Mutex<HashSet<SocketAddr>>>,
}

impl UdpServer {
    /// The distinct source IPs seen (used where sources can be spread).
    #[cfg(target_os = "linux")]
    fn ips(&self) -> HashSet<IpAddr> {
        self.peers
            .lock()
            .expect("peers")
            .iter()
            .map(|p| p.ip())
            .collect()
    }
}

/// Receive buffer of the test servers: room for every datagram the tests
/// have in flight (up to 4 × 64 KiB), so that the kernel drops none of
/// them for want of space and every loss counted is the behaviour's.
const SERVER_RCVBUF: usize = 4 << 20;

/// Starts a UDP echo server on `ip`, port 0, behaving as asked; `None` if
/// `ip` cannot be bound. Its thread is detached and ends with the process.
fn try_serve(ip: &str, behaviour: Behaviour) -> Option<UdpServer> {
    let socket = UdpSocket::bind((ip, 0)).ok()?;
    // Best effort: the OS may cap it (Linux: net.core.rmem_max).
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(SERVER_RCVBUF);
    let addr = socket.local_addr().expect("local_addr");
    let other = UdpSocket::bind((ip, 0)).expect("bind a second socket");
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&peers);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut held: Option<(Vec<u8>, SocketAddr)> = None;
        let mut i = 0u64;
        loop {
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                // Windows: an ICMP error for an earlier echo; go on.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
                Err(_) => return,
            };
            seen.lock().expect("peers").insert(from);
            let out = if let Behaviour::FromElsewhere = behaviour {
                &other
            } else {
                &socket
            };
            answer(out, behaviour, i, &mut buf[..n], from, &mut held);
            i += 1;
        }
    });
    Some(UdpServer { addr, peers })
}

/// [`try_serve`] on 127.0.0.1, which always binds.
fn serve(behaviour: Behaviour) -> UdpServer {
    try_serve("127.0.0.1", behaviour).expect("bind 127.0.0.1:0")
}

/// Echoes (or not) datagram `i`, `data` from `to`, as `behaviour` says.
fn answer(
    socket: &UdpSocket,
    behaviour: Behaviour,
    i: u64,
    data: &mut [u8],
    to: SocketAddr,
    held: &mut Option<(Vec<u8>, SocketAddr)>,
) {
    let send = |bytes: &[u8]| {
        let _ = socket.send_to(bytes, to);
    };
    match behaviour {
        Behaviour::Echo | Behaviour::FromElsewhere => send(data),
        Behaviour::DropEvery(n) if i % n == n - 1 => {}
        Behaviour::DropAt(k) if i == k => {}
        Behaviour::DuplicateEvery(n) if i % n == 10 => {
            send(data);
            send(data);
        }
        Behaviour::SwapAt(k) if i == k => *held = Some((data.to_vec(), to)),
        Behaviour::SwapAt(k) if i == k + 1 => {
            send(data);
            if let Some((bytes, dst)) = held.take() {
                let _ = socket.send_to(&bytes, dst);
            }
        }
        Behaviour::FlipAt { k, byte } if i == k => {
            data[byte] ^= 0x10;
            send(data);
        }
        Behaviour::TruncateAt(k) if i == k => send(&data[..data.len() - 1]),
        Behaviour::InventAfter(k) if i == k => {
            send(data);
            let mut fake = data.to_vec();
            fake[..8].copy_from_slice(&1_000_000u64.to_le_bytes());
            send(&fake);
        }
        _ => send(data),
    }
}

/// Runs `echoloop-stress` with `args` to its exit, killing it (and
/// failing) if it runs past [`RUN_LIMIT`].
fn stress(args: &[&str]) -> StressRun {
    StressArgs::new().args(args).run(RUN_LIMIT)
}

/// `stress` with `--udp --addr ADDR --json` and `args`, and its report.
fn udp_json(server: SocketAddr, args: &[&str]) -> (StressRun, Report) {
    let run = StressArgs::to(server)
        .udp()
        .json()
        .args(args)
        .run(RUN_LIMIT);
    let report = run.report();
    (run, report)
}

/// The datagram counts of a report: sent, echoed, lost, duplicated,
/// reordered, corrupted.
fn counts(j: &Report) -> [u64; 6] {
    let u = j.udp();
    [
        u.sent,
        u.echoed,
        u.lost,
        u.duplicated,
        u.reordered,
        u.corrupted,
    ]
}

/// Proves the core promise against a correct server: 20 sockets, each on
/// its own source port, 4 datagrams in flight each, over two loops, send
/// exactly the 2,000 datagrams asked for, all echoed and verified, nothing
/// lost, duplicated, reordered or corrupted; the JSON names it all, with a
/// latency sample per datagram (every field of it read by the tests' typed
/// report), and the verdict is PASS.
#[test]
fn correct_server_passes_with_every_datagram_verified() {
    let server = serve(Behaviour::Echo);
    let (run, j) = udp_json(
        server.addr,
        &["-c", "20", "-k", "4", "-s", "100", "-n", "2000", "-t", "2"],
    );
    run.assert_exit(0);
    run.assert_report_mirrored();
    assert_eq!(counts(&j), [2000, 2000, 0, 0, 0, 0], "{}", run.stdout);
    assert_eq!(j.mode, "udp");
    assert_eq!(j.messages, 2000);
    assert_eq!(j.bytes, 200_000);
    assert_eq!(j.latency().count, 2000);
    assert!(j.latency().p99() >= j.latency().p50());
    assert!(j.verdict.is_none());
    assert_eq!(j.exit_code, 0);
    assert_eq!(j.connections_established, 20);
    assert_eq!(server.peers.lock().expect("peers").len(), 20);
}

/// Proves the text report of a passing run says PASS and names the counts.
#[test]
fn text_report_says_pass() {
    let server = serve(Behaviour::Echo);
    let addr = server.addr.to_string();
    let run = stress(&["--udp", "--addr", &addr, "-c", "2", "-n", "100"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("100 sent, 100 echoed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("result:       PASS"), "{}", run.stdout);
}

/// Proves the stress client and the real server agree: `echoloop --udp
/// --udp-rate 0` echoes a timed run of 10 sockets × 1,400-byte datagrams,
/// 4 in flight each, with nothing lost, duplicated or corrupted; the
/// drain after the deadline leaves nothing unresolved.
///
/// The 40 datagrams in flight fit the server socket's default receive
/// buffer (212,992 bytes on Linux). More may not: a server slower than
/// its clients (a debug build on a busy machine) then has datagrams
/// dropped by its kernel, and they are rightly counted lost.
#[test]
fn real_server_passes() {
    // With --udp the server's UDP echo is on its TCP address.
    let server = Binary::start(&["--udp", "--udp-rate", "0"]);
    let (run, j) = udp_json(
        server.addr,
        &["-c", "10", "-s", "1400", "-k", "4", "-d", "1"],
    );
    run.assert_exit(0);
    let [sent, echoed, lost, duplicated, _, corrupted] = counts(&j);
    assert!(sent > 0);
    assert_eq!((echoed, lost, duplicated, corrupted), (sent, 0, 0, 0));
    assert_eq!(j.udp().unresolved, 0);
    assert_eq!(j.latency().count, echoed);
}

/// Proves a dropped datagram is caught: a server that drops only its
/// 11th datagram makes that one lost (named in the report) and the run
/// fail with the default `--max-loss` of 0, every other one echoed.
#[test]
fn dropped_datagram_is_lost_and_fails() {
    let server = serve(Behaviour::DropAt(10));
    let (run, j) = udp_json(
        server.addr,
        &["-c", "1", "-n", "100", "--echo-timeout", "0.3"],
    );
    run.assert_exit(1);
    assert_eq!(counts(&j), [100, 99, 1, 0, 0, 0]);
    let first = j.udp().first_lost.clone().expect("first_lost");
    assert!(first.contains("datagram 10 "), "{first}");
    let verdict = j.verdict.expect("a verdict");
    assert!(verdict.contains("lost"), "{verdict}");
}

/// Proves `--max-loss`: a server dropping 1 % of datagrams (exactly 20 of
/// 2,000) fails the run by default and passes it with `--max-loss 2`;
/// both times the 20 are counted lost.
#[test]
fn max_loss_tolerates_what_it_says() {
    let server = serve(Behaviour::DropEvery(100));
    let args = ["-c", "4", "-k", "8", "-n", "2000", "--echo-timeout", "0.3"];
    let (run, j) = udp_json(server.addr, &args);
    run.assert_exit(1);
    assert_eq!(counts(&j), [2000, 1980, 20, 0, 0, 0]);
    let verdict = j.verdict.expect("a verdict");
    assert!(verdict.contains("--max-loss 0"), "{verdict}");

    let server = serve(Behaviour::DropEvery(100));
    let mut tolerant = args.to_vec();
    tolerant.extend(["--max-loss", "2"]);
    let (run, j) = udp_json(server.addr, &tolerant);
    run.assert_exit(0);
    assert_eq!(counts(&j), [2000, 1980, 20, 0, 0, 0]);
    assert_eq!(j.udp().loss_percent, Some(1.0));
    assert_eq!(j.udp().max_loss_percent, 2.0);
}

/// Proves duplication is caught and always fails: a server that echoes
/// every 50th datagram twice gives 10 duplicates in 500, although every
/// datagram was echoed.
#[test]
fn duplicated_datagrams_fail() {
    let server = serve(Behaviour::DuplicateEvery(50));
    let (run, j) = udp_json(server.addr, &["-c", "1", "-k", "4", "-n", "500"]);
    run.assert_exit(1);
    assert_eq!(counts(&j), [500, 500, 0, 10, 0, 0]);
    let first = j.udp().first_duplicated.clone().expect("first_duplicated");
    assert!(first.contains("datagram 10 "), "{first}");
    let verdict = j.verdict.expect("a verdict");
    assert!(verdict.contains("more than once"), "{verdict}");
}

/// Proves reordering is reported and is not a failure: a server that
/// swaps two datagrams gives one reordered echo, and the run passes.
#[test]
fn reordered_datagrams_are_reported_not_failed() {
    let server = serve(Behaviour::SwapAt(20));
    let (run, j) = udp_json(server.addr, &["-c", "1", "-k", "4", "-n", "200"]);
    run.assert_exit(0);
    assert_eq!(counts(&j), [200, 200, 0, 0, 1, 0]);
    let first = j.udp().first_reordered.clone().expect("first_reordered");
    assert!(first.contains("datagram 20 "), "{first}");
    assert!(j.verdict.is_none());
}

/// Proves corruption is caught and always fails, in its three forms: a
/// flipped byte, a datagram cut one byte short (each named as its
/// datagram, which then counts as come back, not lost), and a datagram
/// with a sequence never sent.
#[test]
fn corrupted_datagrams_fail() {
    for (behaviour, echoed, says) in [
        (
            Behaviour::FlipAt { k: 30, byte: 40 },
            99,
            "datagram 30: byte 40 expected",
        ),
        (
            Behaviour::TruncateAt(30),
            99,
            "datagram 30: 99 bytes, sent 100",
        ),
        (
            Behaviour::InventAfter(30),
            100,
            "sequence 1000000 was never sent",
        ),
    ] {
        let server = serve(behaviour);
        let (run, j) = udp_json(server.addr, &["-c", "1", "-s", "100", "-n", "100"]);
        run.assert_exit(1);
        assert_eq!(counts(&j), [100, echoed, 0, 0, 0, 1], "{behaviour:?}");
        let first = j.udp().first_corrupted.clone().expect("first_corrupted");
        assert!(first.contains(says), "{behaviour:?}: {first}");
        let verdict = j.verdict.expect("a verdict");
        assert!(verdict.contains("corrupted"), "{verdict}");
    }
}

/// Proves an answer from another address is no echo: a server that
/// answers from a second port gets every datagram counted as from
/// elsewhere and lost, and the run fails.
#[test]
fn answers_from_another_address_are_not_echoes() {
    let server = serve(Behaviour::FromElsewhere);
    let (run, j) = udp_json(
        server.addr,
        &["-c", "1", "-n", "3", "--echo-timeout", "0.2"],
    );
    run.assert_exit(1);
    assert_eq!(counts(&j), [3, 0, 3, 0, 0, 0]);
    assert_eq!(j.udp().foreign, 3);
}

/// Proves the largest IPv4 datagram, 65,507 bytes, goes out and comes back
/// whole, and a size of 1 works too (the sequence cut to one byte).
#[test]
fn smallest_and_largest_datagrams() {
    let server = serve(Behaviour::Echo);
    for size in ["65507", "1"] {
        let (run, j) = udp_json(server.addr, &["-c", "2", "-k", "2", "-s", size, "-n", "40"]);
        run.assert_exit(0);
        assert_eq!(counts(&j), [40, 40, 0, 0, 0, 0], "size {size}");
    }
}

/// Proves IPv6: the largest IPv6 datagram, 65,527 bytes, against a server
/// on ::1. Skips, saying so, where ::1 cannot be bound.
#[test]
fn ipv6_largest_datagrams() {
    let Some(server) = try_serve("::1", Behaviour::Echo) else {
        eprintln!("SKIPPED ipv6_largest_datagrams: cannot bind [::1]:0 on this machine");
        return;
    };
    let (run, j) = udp_json(
        server.addr,
        &["-c", "2", "-k", "2", "-s", "65527", "-n", "20"],
    );
    run.assert_exit(0);
    assert_eq!(counts(&j), [20, 20, 0, 0, 0, 0]);
}

/// Proves the open loop sends on its schedule and reports the latency
/// from each actual send beside the corrected one: 2 sockets at 200/s for
/// a second are at most about 400 datagrams, and a machine too slow for
/// 400 shows its lag in the latency (`Report::assert_on_schedule`).
#[test]
fn open_loop_sends_on_schedule() {
    let server = serve(Behaviour::Echo);
    let (run, j) = udp_json(server.addr, &["-c", "2", "--rate", "200", "-d", "1"]);
    run.assert_exit(0);
    let [sent, echoed, ..] = counts(&j);
    j.assert_on_schedule(sent);
    assert_eq!(echoed, sent);
    assert_eq!(j.latency_uncorrected().count, echoed);
}

/// Proves bad input is one line and exit status 2, before any datagram:
/// a datagram too large for IPv4 (or IPv6), a loss percentage out of
/// range, `--max-loss` without `--udp`, `--udp` with another mode.
#[test]
fn bad_flags_are_one_line() {
    for args in [
        &["--message-size", "70000", "--udp"][..],
        &["--udp", "--message-size", "65508"],
        &["--udp", "--addr", "[::1]:7", "--message-size", "65528"],
        &["--udp", "--max-loss", "-1"],
        &["--udp", "--max-loss", "101"],
        &["--max-loss", "5"],
        &["--udp", "--mode", "idle"],
    ] {
        stress(args).assert_usage_error(&format!("{args:?}"));
    }
}

/// Proves `--source-addrs` spreads the sockets over the given addresses,
/// and that against a loopback server the default spreads them over
/// 127.0.0.1–127.0.0.16, as for TCP (Linux routes all of 127.0.0.0/8 to
/// the loopback).
#[cfg(target_os = "linux")]
#[test]
fn sockets_spread_over_source_addresses() {
    let server = serve(Behaviour::Echo);
    let (run, _) = udp_json(
        server.addr,
        &[
            "-c",
            "8",
            "-n",
            "80",
            "--source-addrs",
            "127.0.0.1-127.0.0.4",
        ],
    );
    run.assert_exit(0);
    let want: HashSet<IpAddr> = (1..=4).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    assert_eq!(server.ips(), want);
    assert_eq!(server.peers.lock().expect("peers").len(), 8);

    let server = serve(Behaviour::Echo);
    let (run, _) = udp_json(server.addr, &["-c", "16", "-n", "160"]);
    run.assert_exit(0);
    let want: HashSet<IpAddr> = (1..=16).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    assert_eq!(server.ips(), want);
}

/// Proves `--hlog`, `--plot`, `--plot-percentiles` and `--html` work for
/// UDP: the interval log has round trips (tag rtt) and no connect or
/// first-byte series, whose histograms together count every echoed
/// datagram; the plots are SVG pictures, the percentile plot with the one
/// rtt line and no connect or first-byte; the page has the datagram counts
/// and both pictures.
#[test]
fn interval_log_plots_and_page() {
    let server = serve(Behaviour::Echo);
    let dir = std::env::temp_dir().join(format!("stress-udp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let (hlog, svg) = (dir.join("run.hlog"), dir.join("run.svg"));
    let (spectrum, page) = (dir.join("spectrum.svg"), dir.join("run.html"));
    let [hlog_s, svg_s, spectrum_s, page_s] =
        [&hlog, &svg, &spectrum, &page].map(|p| p.to_string_lossy().into_owned());
    let (run, j) = udp_json(
        server.addr,
        &[
            "-c",
            "2",
            "-n",
            "300",
            "--hlog",
            &hlog_s,
            "--plot",
            &svg_s,
            "--plot-percentiles",
            &spectrum_s,
            "--html",
            &page_s,
        ],
    );
    run.assert_exit(0);
    assert_eq!(j.udp().echoed, 300);
    let log = std::fs::read_to_string(&hlog).expect("read the interval log");
    assert!(log.lines().any(|l| l.starts_with("Tag=rtt,")), "{log}");
    assert!(!log.contains("Tag=connect,") && !log.contains("Tag=first-byte,"));
    let picture = std::fs::read_to_string(&svg).expect("read the plot");
    assert!(picture.contains("<svg"), "not an SVG picture");
    let picture = std::fs::read_to_string(&spectrum).expect("read the percentile plot");
    assert!(
        picture.contains(">\nrtt\n</text>"),
        "no rtt line: {picture}"
    );
    for absent in ["connect", "first-byte", "rtt-uncorrected"] {
        assert!(
            !picture.contains(&format!(">\n{absent}\n</text>")),
            "{absent}"
        );
    }
    let html = std::fs::read_to_string(&page).expect("read the page");
    assert_eq!(html.matches("<svg").count(), 2, "two inline pictures");
    for field in ["<th>echoed</th>", "<th>lost</th>", "<th>reordered</th>"] {
        assert!(html.contains(field), "no {field} in the page");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Proves two UDP reports merge into their sum: datagram counts added (and
/// the merged report has every field a report has).
#[test]
fn reports_merge() {
    let server = serve(Behaviour::Echo);
    let dir = std::env::temp_dir().join(format!("stress-udp-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let mut paths = Vec::new();
    for (i, n) in ["100", "50"].into_iter().enumerate() {
        let (run, _) = udp_json(server.addr, &["-c", "2", "-n", n]);
        run.assert_exit(0);
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, &run.stdout).expect("write a report");
        paths.push(path.to_string_lossy().into_owned());
    }
    let run = stress(&["merge", "--json", &paths[0], &paths[1]]);
    run.assert_exit(0);
    run.assert_report_mirrored();
    let j = run.report();
    assert_eq!(counts(&j), [150, 150, 0, 0, 0, 0]);
    assert_eq!(j.mode, "udp");
    assert_eq!(j.latency().count, 150);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Proves `--help` documents the UDP flags.
#[test]
fn help_lists_the_udp_flags() {
    let run = stress(&["--help"]);
    run.assert_exit(0);
    for flag in ["--udp", "--max-loss"] {
        assert!(run.stdout.contains(flag), "--help lacks {flag}");
    }
}

/// The datagrams lost so far, from a `--udp` status line (`… | lost 1,234`).
#[cfg(unix)]
fn lost_in(status: &str) -> u64 {
    let after = status.rsplit("lost ").next().unwrap_or("");
    let digits: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// Proves a late echo of a datagram too short for its whole sequence number
/// counts as late, not as duplicated: against the real server, frozen
/// (SIGSTOP) while the client sends 1-byte datagrams, 128 in flight, with a
/// 10 ms `--echo-timeout`, until more than 1,000 are lost; thawed, the
/// server echoes what its socket kept, long after the client moved on to
/// newer datagrams with the same low byte. Those echoes count late; none
/// counts duplicated, and the run (tolerating every loss) passes.
#[cfg(unix)]
#[test]
fn late_echoes_of_short_datagrams_are_late_not_duplicated() {
    let server = Binary::start(&["--udp", "--udp-rate", "0"]);
    let mut client = StressArgs::to(server.addr)
        .udp()
        .json()
        .conns(1)
        .size(1)
        .pipeline(128)
        .echo_timeout(0.01)
        .flag("--max-loss", 100)
        .secs(4.0)
        .spawn();
    let before = lost_in(&client.process.stderr.wait_for("datagrams/s"));
    server.signal(libc::SIGSTOP);
    // Frozen until the client has given up on many datagrams and sent
    // newer ones in their place: then the kept ones come back late.
    while lost_in(&client.process.stderr.wait_for("datagrams/s")) < before + 1000 {}
    server.signal(libc::SIGCONT);
    let run = client.finish(RUN_LIMIT);
    run.assert_exit(0);
    let report = run.report();
    let u = report.udp();
    assert_eq!(u.duplicated, 0, "{}", run.stdout);
    assert!(u.late > 0, "{}", run.stdout);
    assert!(u.echoed > 0, "{}", run.stdout);
}

/// Proves ICMP errors are counted for real: every datagram sent to a
/// closed UDP port draws a port unreachable, which the report counts (the
/// text names them too), and the run, with nothing echoed, fails. Linux
/// and Windows tell an unconnected socket of them; the test runs on Linux.
#[cfg(target_os = "linux")]
#[test]
fn closed_port_counts_icmp_errors_and_fails() {
    let closed = {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("local_addr")
    };
    let flags = ["-c", "2", "-k", "1", "-n", "10", "--echo-timeout", "50ms"];
    let (run, j) = udp_json(closed, &flags);
    run.assert_exit(1);
    assert_eq!(j.udp().echoed, 0, "{}", run.stdout);
    assert!(j.udp().icmp_errors > 0, "{}", run.stdout);
    let addr = closed.to_string();
    let mut argv = vec!["--udp", "--addr", &addr];
    argv.extend_from_slice(&flags);
    let text = stress(&argv);
    text.assert_exit(1);
    assert!(!text.stdout.contains(" 0 ICMP errors"), "{}", text.stdout);
    assert!(text.stdout.contains(" ICMP errors"), "{}", text.stdout);
}
