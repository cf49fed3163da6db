//! Echo over TLS (`--tls-listen`): byte-exact with either half-close, from
//! a client that is not ours (Python's `ssl`); handshakes held to their
//! deadline, plaintext and bad client certificates refused and counted by
//! reason, resumption counted apart; memory bounded for a reader that
//! stops; bad certificate files fail start-up in one line.

pub mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::tls::*;
use support::*;

/// 1 MiB from Python's `ssl` module (OpenSSL) comes back exactly, whether
/// the client ends with `close_notify` or with a bare FIN, and the server
/// ends with its own `close_notify` after the last byte. (Unix: under
/// Wine the test is a Windows program and Python a Linux one.)
#[cfg(unix)]
#[test]
fn python_client_gets_one_mib_back_exactly_with_either_half_close() {
    let pki = Pki::new("python");
    let (server, addr) = start_tls(&pki, false, |_| {});
    for ending in ["close_notify", "fin"] {
        let Some(verdict) = python_client("tls python", addr, &pki.file("ca.pem"), 1 << 20, ending)
        else {
            return;
        };
        assert!(
            verdict.starts_with("echoed 1048576 bytes exactly; server close_notify: yes"),
            "{ending}: {verdict}"
        );
    }
    let stats = server.stop();
    assert_eq!(stats.tls_handshakes, 2, "{stats}");
    assert_eq!(stats.closed_by_peer, 2, "{stats}");
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (2 << 20, 2 << 20),
        "{stats}"
    );
}

/// 500 clients that connect and never finish the handshake (half send
/// nothing, half the start of a ClientHello) are all closed once the
/// handshake deadline passes and counted as timeouts, while a client that
/// came after them is served before and after.
#[test]
fn stalled_handshakes_are_closed_at_the_deadline_while_others_are_served() {
    let _serial = serial();
    let pki = Pki::new("stalled");
    let (server, addr) = start_tls(&pki, false, |c| {
        c.tls_handshake_timeout = Duration::from_secs(2);
    });
    let stalled: Vec<std::net::TcpStream> = (0..500)
        .map(|i| {
            let mut s = connect(addr);
            if i % 2 == 1 {
                // A record header and the first bytes of a ClientHello.
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            }
            s
        })
        .collect();
    let client = pki.client_config(false);
    let mut good = connect_tls(addr, &client).unwrap();
    tls_round_trip(&mut good, b"served while 500 stall");
    for mut s in stalled {
        let mut buf = [0; 64];
        // The deadline closes it: end of stream (or a reset); never data.
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("a stalled client got {n} bytes"),
        }
    }
    let handle = server.handle.clone();
    wait_until("500 timeouts counted", TIMEOUT, || {
        handle.stats().tls_failed_timeout == 500
    });
    tls_round_trip(&mut good, b"and still served after");
    drop(good);
    let stats = server.stop();
    assert_eq!(stats.tls_failed_timeout, 500, "{stats}");
    assert_eq!(stats.tls_handshakes, 1, "{stats}");
}

/// Plaintext on the TLS port is answered with an alert and closed at
/// once, counted as `not_tls`; the plain port beside it echoes as ever.
#[test]
fn plaintext_on_the_tls_port_is_closed_and_counted() {
    let pki = Pki::new("plaintext");
    let (server, addr) = start_tls(&pki, false, |_| {});
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = read_until_closed(&s);
    assert!(!got.starts_with(b"GET"), "plaintext echoed: {got:?}");
    round_trip(&connect(server.addr), b"plain beside TLS");
    let handle = server.handle.clone();
    wait_until("the failure counted", TIMEOUT, || {
        handle.stats().tls_failed_not_tls == 1
    });
    let stats = server.stop();
    assert_eq!(stats.tls_handshakes, 0, "{stats}");
    assert_eq!(stats.errored, 1, "{stats}");
}

/// With client certificates required, a client with one signed by the CA
/// is served; one without, and one whose certificate another CA signed,
/// are refused in the handshake and counted as `client_certificate`.
#[test]
fn mutual_tls_serves_a_signed_client_and_refuses_the_others() {
    let pki = Pki::new("mutual");
    let (server, addr) = start_tls(&pki, true, |_| {});
    let mut with = connect_tls(addr, &pki.client_config(true)).unwrap();
    tls_round_trip(&mut with, b"signed by the CA");
    // TLS 1.3: the client's handshake ends before the server checked its
    // (absent) certificate; the refusal comes as the first read's alert.
    let stranger = Pki::new("mutual-stranger");
    for (what, config) in [
        ("no certificate", pki.client_config(false)),
        ("another CA's", pki.client_config_as(Some(&stranger.client))),
    ] {
        let refused = connect_tls(addr, &config).and_then(|mut s| {
            s.write_all(b"x")?;
            s.read(&mut [0; 8])
        });
        assert!(refused.is_err(), "served with {what}: {refused:?}");
    }
    let handle = server.handle.clone();
    wait_until("the refusals counted", TIMEOUT, || {
        handle.stats().tls_failed_client_certificate == 2
    });
    drop(with);
    let stats = server.stop();
    assert_eq!(stats.tls_handshakes, 1, "{stats}");
}

/// A client that comes back with the ticket of its first session resumes
/// it, and the server counts it as resumed, not full.
#[test]
fn resumed_handshakes_are_counted_apart() {
    let pki = Pki::new("resume");
    let (server, addr) = start_tls(&pki, false, |_| {});
    let client = pki.client_config(false);
    for _ in 0..3 {
        // The echo makes the client read, and so take the tickets the
        // server sent after its handshake.
        let mut s = connect_tls(addr, &client).unwrap();
        tls_round_trip(&mut s, b"ticket, please");
    }
    let handle = server.handle.clone();
    wait_until("three handshakes counted", TIMEOUT, || {
        let s = handle.stats();
        s.tls_handshakes + s.tls_handshakes_resumed == 3
    });
    let stats = server.stop();
    assert_eq!(
        (stats.tls_handshakes, stats.tls_handshakes_resumed),
        (1, 2),
        "{stats}"
    );
}

/// `--tls-self-signed` needs no files: the server logs the SHA-256
/// fingerprint of the certificate it made, which is the one a client is
/// shown, and that certificate (trusted as it is) verifies for
/// `localhost` — Python's `ssl` gets 64 KiB back through it.
#[cfg(unix)]
#[test]
fn self_signed_certificate_is_logged_by_fingerprint_and_serves() {
    let Some(python) = tools::program("tls self-signed", "python3", "python3") else {
        return;
    };
    let mut server = Binary::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-self-signed",
        "--shutdown-grace",
        "0",
    ]);
    let logged = server.stderr.text();
    let logged = (logged.lines())
        .find_map(|l| l.split("SHA-256 fingerprint ").nth(1))
        .unwrap_or_else(|| panic!("no fingerprint logged: {logged}"))
        .trim()
        .to_string();
    let addr = tls_listening_addr(&server.stderr.wait_for("(TLS)"));
    let pem = run_tool(
        "ssl.get_server_certificate",
        std::process::Command::new(&python).args([
            "-c",
            &format!(
                "import ssl; print(ssl.get_server_certificate(('127.0.0.1', {})))",
                addr.port()
            ),
        ]),
    )
    .unwrap();
    use echoloop::tls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let shown = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(echoloop::tls::fingerprint(&shown), logged);
    let dir = std::env::temp_dir().join(format!("echoloop-self-signed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("shown.pem");
    std::fs::write(&ca, &pem).unwrap();
    let verdict = python_client("tls self-signed", addr, &ca.to_string_lossy(), 65536, "fin");
    let _ = std::fs::remove_dir_all(&dir);
    let verdict = verdict.unwrap();
    assert!(
        verdict.starts_with("echoed 65536 bytes exactly"),
        "{verdict}"
    );
    let last = server.stop();
    assert_eq!(stat(&last, "tls_handshakes"), 2, "{last}");
}

/// Bad certificate files are one line and exit 1, before anything is
/// bound (no "listening on"); TLS flags that do not fit together are a
/// usage error, exit 2.
#[test]
fn bad_certificate_files_fail_start_up_in_one_line() {
    let pki = Pki::new("badfiles");
    let other = Pki::new("badfiles-other");
    let (cert, key) = (pki.file("server.pem"), pki.file("server.key"));
    let missing = pki.file("missing.pem");
    let wrong_key = other.file("server.key");
    let not_pem = pki.file("ca.pem"); // a certificate where a key should be
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "missing cert",
            &["--tls-cert", &missing, "--tls-key", &key],
            "missing.pem",
        ),
        (
            "missing key",
            &["--tls-cert", &cert, "--tls-key", &missing],
            "--tls-key",
        ),
        (
            "key of another cert",
            &["--tls-cert", &cert, "--tls-key", &wrong_key],
            "does not match",
        ),
        (
            "no key in the file",
            &["--tls-cert", &cert, "--tls-key", &not_pem],
            "no private key",
        ),
    ];
    for (what, args, says) in cases {
        let exit = run_to_exit(
            std::process::Command::new(ECHOLOOP)
                .args(["--tls-listen", "127.0.0.1:0"])
                .args(args),
        );
        let stderr = exit.stderr_text();
        assert_eq!(exit.status.code(), Some(1), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert!(!stderr.contains("listening on"), "{what}: {stderr}");
    }
    let misuse: [(&str, &[&str]); 4] = [
        ("no certificate", &["--tls-listen", "127.0.0.1:0"]),
        (
            "cert without key",
            &["--tls-listen", "127.0.0.1:0", "--tls-cert", &cert],
        ),
        (
            "both sources",
            &[
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-self-signed",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
        ),
        (
            "cert without --tls-listen",
            &["--tls-cert", &cert, "--tls-key", &key],
        ),
    ];
    for (what, args) in misuse {
        run_to_exit(std::process::Command::new(ECHOLOOP).args(args)).assert_usage_error(what);
    }
}

/// Clients that send and never read stop being read once their echo
/// reaches `--max-pending`: the server's memory grows by at most that plus
/// what rustls may hold ([`echoloop::tls::BUFFERED_MAX`]) per connection,
/// though each client offers 4 MiB.
#[cfg(target_os = "linux")]
#[test]
fn a_reader_that_stops_keeps_memory_bounded() {
    const CLIENTS: usize = 8;
    const MAX_PENDING: usize = 64 * 1024;
    let _serial = serial();
    let pki = Pki::new("stopped-reader");
    let mut server = Binary::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &pki.file("server.pem"),
        "--tls-key",
        &pki.file("server.key"),
        "--max-pending",
        &MAX_PENDING.to_string(),
        "--send-buffer",
        "16384",
        "--stats-interval",
        "0.05",
        "--shutdown-grace",
        "0",
    ]);
    let addr = tls_listening_addr(&server.stderr.wait_for("(TLS)"));
    let client = pki.client_config(false);
    // Handshakes first, so the baseline holds their state.
    // Small kernel buffers on both sides, so the echo backs up into the
    // server soon.
    let small = |s: &socket2::Socket| s.set_recv_buffer_size(16 * 1024);
    let streams: Vec<TlsClient> = (0..CLIENTS)
        .map(|_| tls_over(connect_with(addr, small).unwrap(), &client).unwrap())
        .collect();
    wait_for_stats(&mut server, "handshakes", TIMEOUT, |l| {
        stat(l, "tls_handshakes") == CLIENTS as u64
    });
    let before = rss_kib(server.child.id());
    let writers: Vec<_> = (streams.into_iter())
        .map(|mut s| {
            std::thread::spawn(move || {
                let chunk = payload(1, 16 * 1024);
                // 64 MiB offered; the server stops reading long before.
                for _ in 0..4096 {
                    if send_only(&mut s, &chunk).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    let full = (CLIENTS * MAX_PENDING) as u64;
    wait_for_stats(&mut server, "every echo at the cap", TIMEOUT, |l| {
        stat(l, "pending_bytes") == full
    });
    let grown = rss_kib(server.child.id()).saturating_sub(before);
    let per_conn = (MAX_PENDING + echoloop::tls::BUFFERED_MAX) as u64 / 1024;
    let bound = CLIENTS as u64 * per_conn + 4096;
    assert!(grown <= bound, "grew {grown} KiB, bound {bound} KiB");
    server.stop();
    for w in writers {
        let _ = w.join();
    }
}

/// A graceful shutdown under TLS loses nothing: clients that sent and
/// were read get every byte back, then the server's `close_notify` (their
/// read ends cleanly, not with a truncation error), and each connection is
/// closed by the shutdown, none by an error.
#[test]
fn shutdown_under_tls_load_loses_nothing() {
    const CLIENTS: usize = 4;
    const LEN: usize = 200 * 1024;
    let pki = Pki::new("shutdown");
    let (server, addr) = start_tls(&pki, false, |c| {
        c.shutdown_grace = Duration::from_secs(30);
        // Room for every client's echo though none reads before shutdown.
        c.max_pending = 2 * LEN;
    });
    let client = pki.client_config(false);
    let mut streams: Vec<(TlsClient, Vec<u8>)> = (0..CLIENTS)
        .map(|i| {
            let mut s = connect_tls(addr, &client).unwrap();
            let data = payload(40 + i, LEN);
            send_only(&mut s, &data).unwrap();
            (s, data)
        })
        .collect();
    let handle = server.handle.clone();
    wait_until("every byte read by the server", TIMEOUT, || {
        handle.stats().bytes_in == (CLIENTS * LEN) as u64
    });
    handle.shutdown().unwrap();
    for (s, data) in &mut streams {
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("the echo, then close_notify");
        assert_same(&got, data);
    }
    drop(streams);
    let stats = server.stop();
    assert_eq!(stats.bytes_out, (CLIENTS * LEN) as u64, "{stats}");
    assert_eq!(
        stats.shut_down + stats.closed_by_peer,
        CLIENTS as u64,
        "{stats}"
    );
    assert_eq!(stats.errored, 0, "{stats}");
}

/// Behind a balancer (`--proxy-protocol`) the PROXY header comes before
/// the TLS handshake, on the bare connection: the server reads it from the
/// socket, not through TLS, then handshakes and echoes, and judges the
/// client the header names.
#[test]
fn a_proxy_header_comes_before_the_tls_handshake() {
    let pki = Pki::new("proxy");
    let (server, addr) = start_tls(&pki, false, |c| {
        c.proxy_protocol = vec!["127.0.0.1/32".parse().unwrap()];
    });
    let tcp = connect(addr);
    let header = format!("PROXY TCP4 10.1.2.3 127.0.0.1 5555 {}\r\n", addr.port());
    (&tcp).write_all(header.as_bytes()).unwrap();
    let mut tls = tls_over(tcp, &pki.client_config(false)).unwrap();
    tls_round_trip(&mut tls, b"after the header, over TLS");
    drop(tls);
    let stats = server.stop();
    assert_eq!(stats.tls_handshakes, 1, "{stats}");
    assert_eq!(stats.tls_failed_not_tls, 0, "{stats}");
}

/// A client with no cipher suite in common (Python's `ssl` offering only
/// TLS 1.2's `AES128-SHA`, which rustls does not speak) is refused in the
/// handshake with an alert and counted as `incompatible`.
#[cfg(unix)]
#[test]
fn a_client_with_no_common_cipher_is_refused_and_counted() {
    let Some(python) = tools::program("tls no common cipher", "python3", "python3") else {
        return;
    };
    let pki = Pki::new("cipher");
    let (server, addr) = start_tls(&pki, false, |_| {});
    let script = format!(
        "import ssl, socket\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
         c.check_hostname = False\n\
         c.verify_mode = ssl.CERT_NONE\n\
         c.maximum_version = ssl.TLSVersion.TLSv1_2\n\
         c.set_ciphers('AES128-SHA')\n\
         try:\n    c.wrap_socket(socket.create_connection(('127.0.0.1', {})))\n    \
         print('served')\n\
         except ssl.SSLError as e:\n    print('refused', e.reason)\n",
        addr.port()
    );
    let out = run_tool(
        "python ssl",
        std::process::Command::new(python).args(["-c", &script]),
    )
    .unwrap();
    assert!(out.starts_with("refused"), "{out}");
    let handle = server.handle.clone();
    wait_until("the refusal counted", TIMEOUT, || {
        handle.stats().tls_failed_incompatible == 1
    });
    let stats = server.stop();
    assert_eq!(stats.tls_handshakes, 0, "{stats}");
}

/// With `--loops 2` every loop serves TLS: clients from several source
/// addresses (steered to both loops, or handed from loop 0 where the kernel
/// does not steer) all handshake and echo, and the totals count each once.
#[test]
fn tls_is_served_by_every_loop() {
    let pki = Pki::new("loops");
    let (server, addr) = start_tls(&pki, false, |c| c.loops = 2);
    let config = pki.client_config(false);
    for i in 1..=8u8 {
        let tcp = connect_from(&format!("127.0.0.{i}"), addr);
        let mut tls = tls_over(tcp, &config).unwrap();
        tls_round_trip(&mut tls, &payload(i as usize, 20_000));
    }
    let stats = server.stop();
    assert_eq!(
        stats.tls_handshakes + stats.tls_handshakes_resumed,
        8,
        "{stats}"
    );
}
