//! The binary's command line: flags with defaults, and start-up errors that
//! name what failed.

pub mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// `--help` lists every flag with its default, so an operator never has to
/// read the source to learn one.
#[test]
fn help_lists_every_flag_with_defaults() {
    let help = help();
    for flag in [
        "--listen",
        "--max-connections",
        "--max-pending",
        "--read-buffer",
        "--idle-timeout",
        "--shutdown-grace",
        "--stats-interval",
        "--backlog",
        "--tcp-keepalive",
        "--no-nodelay",
        "--udp",
        "--udp-rate",
        "--metrics",
        "--allow",
        "--deny",
        "--max-per-source",
        "--man",
        "--completions",
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
    let out = run_to_exit(
        Command::new(ECHOLOOP)
            .args(["--listen", &addr])
            .env("RUST_LOG", "off"),
    );
    assert!(!out.status.success());
    let stderr = out.stderr_text();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got:\n{stderr}"
    );
    assert!(stderr.contains(&format!("bind {addr}")), "{stderr}");
}

/// `--help` says what happens without `--tcp-keepalive`: TCP alone waits
/// two hours, if it probes at all.
#[test]
fn help_states_the_keepalive_default() {
    let help = help();
    let flag = help
        .split("--tcp-keepalive")
        .nth(1)
        .and_then(|rest| rest.split("\n      --").next())
        .unwrap_or_else(|| panic!("no --tcp-keepalive in:\n{help}"));
    assert!(flag.contains("two hours"), "{flag}");
}

/// `--tcp-keepalive` values the socket options cannot express — zero, one
/// second, fractions, beyond 65,000 s, not a number — are usage errors
/// (exit 2) that name the value and the range, not a panic or a silent
/// clamp; a value in range starts the server.
#[test]
fn absurd_tcp_keepalive_is_a_usage_error() {
    for bad in ["0", "1", "2.5", "65001", "18446744073709551616", "soon"] {
        let out = echoloop(&["--listen", "127.0.0.1:0", "--tcp-keepalive", bad]);
        assert_eq!(out.status.code(), Some(2), "--tcp-keepalive {bad}");
        let stderr = out.stderr_text();
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("'{bad}'")) && first.contains("from 2 to 65000"),
            "--tcp-keepalive {bad}: {stderr}"
        );
    }
    let mut server = Binary::start(&["--tcp-keepalive", "65000"]);
    assert_echo(&connect(server.addr), b"kept alive");
    server.child.kill().unwrap();
}

/// The library refuses what the flag refuses: `Server::bind` with a
/// keepalive the socket options cannot express is an `InvalidInput` error
/// that says so, at start-up rather than on every accept.
#[test]
fn library_rejects_an_absurd_keepalive_at_bind() {
    for bad in [0.0, 0.5, 1.0, 2.5, 1e6] {
        let config = echoloop::Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            tcp_keepalive: Some(std::time::Duration::from_secs_f64(bad)),
            ..echoloop::Config::default()
        };
        let err = echoloop::Server::bind(config).expect_err("absurd keepalive accepted");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}: {err}");
        assert!(err.to_string().contains("tcp_keepalive"), "{err}");
    }
}

/// A malformed address is rejected with a usage error, not a panic.
#[test]
fn bad_address_is_a_usage_error() {
    let out = echoloop(&["--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr_text().contains("not-an-address"));
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

/// Values that would overflow a deadline or an allocation, spin the loop or
/// starve the backlog are refused at start: exit 2 and one line naming the
/// flag — never accepted (the server would run, or panic later when a
/// client connects or a signal arrives).
#[test]
fn absurd_values_are_refused_with_one_line() {
    for (flag, value) in [
        ("--idle-timeout", "1e19"),
        ("--idle-timeout", "0"),
        ("--shutdown-grace", "1e19"),
        ("--stats-interval", "1e19"),
        ("--stats-interval", "0"),
        ("--stats-interval", "1e-12"),
        ("--max-pending", "1099511627776"),
        ("--max-pending", "18446744073709551615"),
        ("--send-buffer", "100"),
        ("--send-buffer", "1099511627776"),
        ("--read-buffer", "1099511627776"),
        ("--read-buffer", "18446744073709551615"),
        ("--backlog", "0"),
    ] {
        // Were the value accepted, the server would run on: run_to_exit
        // fails when it has not exited within the timeout.
        let out = echoloop(&["--listen", "127.0.0.1:0", flag, value]);
        let line = out.assert_usage_error(&format!("{flag} {value}"));
        assert!(line.contains(flag), "{flag} {value}: {line}");
    }
}

/// A configuration built in code gets the same checks as the flags:
/// `Server::bind` refuses, naming the field, what the command line would
/// refuse — so no library user can make the loop overflow a deadline.
#[test]
fn bind_refuses_what_the_flags_refuse() {
    for (field, tweak) in [
        (
            "idle_timeout",
            Box::new(|c: &mut echoloop::Config| c.idle_timeout = Some(Duration::MAX))
                as Box<dyn Fn(&mut echoloop::Config)>,
        ),
        (
            "shutdown_grace",
            Box::new(|c| c.shutdown_grace = Duration::MAX),
        ),
        (
            "stats_interval",
            Box::new(|c| c.stats_interval = Some(Duration::ZERO)),
        ),
        ("max_pending", Box::new(|c| c.max_pending = usize::MAX)),
        (
            "send_buffer",
            Box::new(|c| c.send_buffer = Some(usize::MAX)),
        ),
        ("reads_per_turn", Box::new(|c| c.reads_per_turn = 0)),
    ] {
        let mut config = echoloop::Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..echoloop::Config::default()
        };
        tweak(&mut config);
        let err = echoloop::Server::bind(config).expect_err(field);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{field}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

/// `--listen` takes host names, as `echoloop-stress --addr` does: the
/// server resolves `localhost` and listens first on what it names (a
/// loopback address), echoing there.
#[test]
fn listen_resolves_host_names() {
    let server = Binary::start_with(Command::new(ECHOLOOP).args(["--listen", "localhost:0"]));
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_echo(&connect(server.addr), b"resolved");
}

/// Every flag can come from its `ECHOLOOP_…` variable, and a flag given on
/// the command line wins: the server listens where the environment says,
/// takes a list from it, and refuses a bad value from it as from a flag.
#[test]
fn flags_come_from_the_environment_and_flags_win() {
    let server = Binary::start_with(
        Command::new(ECHOLOOP)
            .env("ECHOLOOP_LISTEN", "127.0.0.1:0,127.0.0.1:0")
            .env("ECHOLOOP_MAX_PENDING", "4096")
            .env("ECHOLOOP_UDP", "true"),
    );
    // Binary adds `--listen 127.0.0.1:0`, which wins over the two from the
    // environment: one listener.
    let mut server = server;
    let udp = server.stderr.wait_for("udp echo on");
    assert!(udp.contains(&server.addr.to_string()), "{udp}");
    assert_eq!(
        server
            .stderr
            .seen
            .iter()
            .filter(|l| l.text.contains("listening on"))
            .count(),
        1
    );
    assert_echo(&connect(server.addr), b"configured by the environment");

    let out = Command::new(ECHOLOOP)
        .env("ECHOLOOP_MAX_PENDING", "lots")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-pending") && stderr.contains("lots"),
        "{stderr}"
    );
}

/// The man page and the shell completions are generated from the same
/// clap definition and build: the man page is roff for `echoloop(1)`
/// naming every flag, and each completion script is accepted by its own
/// shell's syntax check (`bash -n`, `zsh -n`, `fish -n`; a missing shell
/// follows `support::tools`' rule: installed where it can be, else a
/// failure under CI and a skip elsewhere).
#[cfg(unix)]
#[test]
fn man_page_and_completions_build() {
    let run = |args: &[&str]| {
        let out = Command::new(ECHOLOOP).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let man = run(&["--man"]);
    assert!(man.contains(".TH echoloop 1"), "{man}");
    for flag in ["listen", "metrics", "udp\\-rate", "max\\-per\\-source"] {
        assert!(
            man.contains(&format!("\\-\\-{flag}")),
            "man page lacks --{flag}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let test = "man_page_and_completions_build";
        let Some(program) = support::tools::program(test, shell, shell) else {
            continue;
        };
        let script = run(&["--completions", shell]);
        assert!(script.contains("max-per-source"), "{shell}: {script}");
        let file = std::env::temp_dir().join(format!(
            "echoloop-completion-{}.{shell}",
            std::process::id()
        ));
        std::fs::write(&file, &script).unwrap();
        let checked = Command::new(program).arg("-n").arg(&file).output();
        let _ = std::fs::remove_file(&file);
        let out = checked.unwrap_or_else(|e| panic!("{shell} -n: {e}"));
        assert!(
            out.status.success(),
            "{shell} -n rejects the completion script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The binary run to its exit with `args`.
#[track_caller]
fn echoloop(args: &[&str]) -> Exit {
    run_to_exit(Command::new(ECHOLOOP).args(args))
}

/// What `--help` prints (it exits 0).
#[track_caller]
fn help() -> String {
    let out = echoloop(&["--help"]);
    assert!(out.status.success());
    out.stdout
}
