//! The binary's command line: flags with defaults, and start-up errors that
//! name what failed.

mod common;

use std::process::Command;

use common::*;

/// `--help` lists every flag with its default, so an operator never has to
/// read the source to learn one.
#[test]
fn help_lists_every_flag_with_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--max-connections",
        "--max-pending",
        "--read-buffer",
        "--idle-timeout",
        "--shutdown-grace",
        "--stats-interval",
        "--backlog",
        "--no-nodelay",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
    for default in [
        "[default: 127.0.0.1:7878]",
        "[default: 65536]",
        "[default: 5]",
        "[default: 4096]",
    ] {
        assert!(
            help.contains(default),
            "--help does not show {default}:\n{help}"
        );
    }
}

/// Binding an address already in use fails at start-up with one line that
/// names the address and the cause, and a non-zero exit code.
#[test]
fn bind_error_names_the_address_and_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(["--listen", &addr])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got:\n{stderr}"
    );
    assert!(stderr.contains(&format!("bind {addr}")), "{stderr}");
}

/// A malformed address is rejected with a usage error, not a panic.
#[test]
fn bad_address_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-address"));
}

/// Several `--listen` flags: the server listens on each (here two loopback
/// ports, and IPv6 loopback when the machine has it) and echoes on all.
#[test]
fn listens_on_every_address_given() {
    let server = TestServer::start(|c| {
        c.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ];
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            c.listen.push("[::1]:0".parse().unwrap());
        }
    });
    let addrs = server.addrs.clone();
    assert!(addrs.len() >= 2);
    for (i, addr) in addrs.iter().enumerate() {
        assert_echo(&connect(*addr), format!("via listener {i}").as_bytes());
    }
}
