//! `echoloop-stress --tls`: load over TLS, every byte verified, against our
//! server and against one that is not ours (socat with OpenSSL); a
//! certificate that fails verification fails the run with the reason;
//! `--tls-resume` makes churn's handshakes resumed ones.

pub mod support;

use support::tls::*;
use support::*;

/// Against `socat OPENSSL-LISTEN:…,fork EXEC:cat` (OpenSSL, not rustls, on
/// the server side), 20 connections of 16 KiB messages are echoed and
/// verified, the certificate checked against the test CA.
#[cfg(unix)]
#[test]
fn stress_over_tls_passes_against_socat() {
    let Some(socat) = tools::program("stress tls socat", "socat", "socat") else {
        return;
    };
    let pki = Pki::new("socat");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
        pki.file("server.pem"),
        pki.file("server.key")
    );
    let _socat = Process::spawn(
        "socat",
        std::process::Command::new(socat).args([&listen, "EXEC:cat"]),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("socat to listen", TIMEOUT, || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let run = StressArgs::to(addr)
        .switch("--tls")
        .flag("--tls-ca", pki.file("ca.pem"))
        .flag("--tls-sni", "localhost")
        .conns(20)
        .size(16 * 1024)
        .secs(1.0)
        .json()
        .run(TIMEOUT);
    let json = run.json();
    assert_eq!(
        run.exit.status.code(),
        Some(0),
        "{}",
        run.exit.stderr_text()
    );
    assert!(json["messages"].as_u64().unwrap_or(0) > 0, "{json}");
}

/// A certificate for other names fails the run (exit 1) with the reason,
/// never a silent pass; `--tls-insecure` accepts it, and says so.
#[test]
fn a_wrong_name_certificate_fails_the_stress_run() {
    let pki = Pki::new("wrong-name");
    let (server, addr) = start_tls(&pki, false, |_| {});
    let base = || {
        StressArgs::to(addr)
            .switch("--tls")
            .flag("--tls-sni", "not-this-server.example")
            .conns(2)
            .messages(10)
    };
    let run = base().flag("--tls-ca", pki.file("ca.pem")).run(TIMEOUT);
    let out = format!("{}{}", run.exit.stdout, run.exit.stderr_text());
    assert_eq!(run.exit.status.code(), Some(1), "{out}");
    assert!(out.contains("certificate"), "{out}");
    let run = base().switch("--tls-insecure").run(TIMEOUT);
    let out = format!("{}{}", run.exit.stdout, run.exit.stderr_text());
    assert_eq!(run.exit.status.code(), Some(0), "{out}");
    assert!(run.exit.stderr_text().contains("NOT verified"), "{out}");
    server.stop();
}

/// Churn over TLS: without `--tls-resume` every handshake is full; with
/// it, the connections after the first resume, and the server counts them
/// apart.
#[test]
fn churn_over_tls_resumes_with_tls_resume() {
    let pki = Pki::new("stress-resume");
    let (server, addr) = start_tls(&pki, false, |_| {});
    let churn = |resume: bool| {
        let mut args = StressArgs::to(addr)
            .switch("--tls")
            .flag("--tls-ca", pki.file("ca.pem"))
            .flag("--tls-sni", "localhost")
            .mode("churn")
            .conns(2)
            .threads(1)
            .messages(20);
        if resume {
            args = args.switch("--tls-resume");
        }
        let run = args.run(TIMEOUT);
        assert_eq!(
            run.exit.status.code(),
            Some(0),
            "{}",
            run.exit.stderr_text()
        );
        server.handle.stats()
    };
    let full = churn(false);
    assert_eq!(full.tls_handshakes_resumed, 0, "{full}");
    let after = churn(true);
    let resumed = after.tls_handshakes_resumed;
    assert!(resumed > 0, "{after}");
    server.stop();
}

/// Mutual TLS from the stress client: with `--tls-cert`/`--tls-key`
/// signed by the server's `--tls-client-ca` the run passes; without, the
/// server refuses every connection and the run fails.
#[test]
fn stress_presents_a_client_certificate_for_mutual_tls() {
    let pki = Pki::new("stress-mutual");
    let (server, addr) = start_tls(&pki, true, |_| {});
    let base = || {
        StressArgs::to(addr)
            .switch("--tls")
            .flag("--tls-ca", pki.file("ca.pem"))
            .flag("--tls-sni", "localhost")
            .conns(2)
            .messages(10)
    };
    let with = base()
        .flag("--tls-cert", pki.file("client.pem"))
        .flag("--tls-key", pki.file("client.key"))
        .run(TIMEOUT);
    assert_eq!(with.exit.status.code(), Some(0), "{}", with.exit.stdout);
    let without = base().run(TIMEOUT);
    assert_eq!(
        without.exit.status.code(),
        Some(1),
        "{}",
        without.exit.stdout
    );
    let stats = server.stop();
    assert_eq!(stats.tls_handshakes, 2, "{stats}");
    assert_eq!(stats.tls_failed_client_certificate, 2, "{stats}");
}
