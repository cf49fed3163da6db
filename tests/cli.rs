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

/// Flags that are each in range but clash together are a usage error too
/// (exit 2, one line), not a start-up failure: `--max-per-source` counts
/// TCP connections, so with `--udp-rate 0` UDP would have no per-source
/// limit; a metrics address that is also a listen address.
#[test]
fn clashing_flags_are_a_usage_error() {
    let udp = ["--listen", "127.0.0.1:0", "--udp", "--udp-rate", "0"];
    let per_source = [&udp[..], &["--max-per-source", "4"]].concat();
    let metrics = ["--listen", "127.0.0.1:7878", "--metrics", "127.0.0.1:7878"];
    for (args, names) in [
        (&per_source[..], "max_per_source"),
        (&metrics[..], "metrics"),
    ] {
        let line = echoloop(args).assert_usage_error(&args.join(" "));
        assert!(line.contains(names), "{args:?}: {line}");
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

/// The `ECHOLOOP_LISTEN` value of the shipped systemd unit,
/// docs/echoloop.service, as written there.
fn unit_file_listen() -> String {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/echoloop.service");
    let text = std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Environment=ECHOLOOP_LISTEN="))
        .unwrap_or_else(|| panic!("{unit} sets no ECHOLOOP_LISTEN"))
        .to_string()
}

/// `listen` (comma-separated `host:port`s) with every port replaced by
/// `port`.
fn with_port(listen: &str, port: u16) -> String {
    let addrs: Vec<String> = listen
        .split(',')
        .map(|a| {
            let (host, _) = a.trim().rsplit_once(':').expect("host:port");
            format!("{host}:{port}")
        })
        .collect();
    addrs.join(",")
}

/// The real binary started with `ECHOLOOP_LISTEN=listen` (and `args`),
/// once its start-up log is complete; if a port was in use, what it said.
fn start_from_env(listen: &str, args: &[&str]) -> Result<Process, String> {
    let mut server = Process::spawn(
        "echoloop",
        Command::new(ECHOLOOP)
            .args(args)
            .env("ECHOLOOP_LISTEN", listen)
            .env("RUST_LOG", "info"),
    );
    wait_until("the start-up log or an exit", TIMEOUT, || {
        server.stderr.contains("admission:") || matches!(server.child.try_wait(), Ok(Some(_)))
    });
    if server.stderr.contains("admission:") {
        return Ok(server);
    }
    let exit = server.finish(TIMEOUT);
    let stderr = exit.stderr_text();
    assert!(stderr.contains("in use"), "failed to start: {stderr}");
    Err(stderr)
}

/// One datagram to `server` from a fresh socket on `ip` comes back whole.
#[track_caller]
fn assert_udp_echo(ip: &str, server: std::net::SocketAddr, data: &[u8]) {
    let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind a UDP client");
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send_to(data, server).expect("send_to");
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).expect("a UDP echo in time");
    assert_eq!(&buf[..n], data, "from {from}");
}

/// The shipped systemd unit's own `ECHOLOOP_LISTEN` (`0.0.0.0:7,[::]:7`,
/// read from docs/echoloop.service) starts the real server, with and
/// without `--udp`, and it echoes over IPv4 and IPv6: the IPv6 sockets are
/// IPv6-only, so the two families bind the same port side by side instead
/// of failing with "Address already in use" (Linux's default
/// `bindv6only = 0`). Port 7 is privileged and may be taken, so the unit's
/// port is replaced with one free here (another program may take that one
/// between our check and the server's bind: then a new one is tried).
#[test]
fn the_unit_files_dual_stack_listen_serves_both_families() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback ([::1]; see `ip -6 addr show lo`)");
        return;
    }
    let listen = unit_file_listen();
    assert!(
        listen.contains("0.0.0.0:") && listen.contains("[::]:"),
        "{listen}"
    );
    for args in [&[][..], &["--udp", "--udp-rate", "0"][..]] {
        let mut last = String::new();
        let (port, server) = (0..8)
            .find_map(|_| {
                let port = std::net::TcpListener::bind("0.0.0.0:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                match start_from_env(&with_port(&listen, port), args) {
                    Ok(server) => Some((port, server)),
                    Err(said) => {
                        last = said;
                        None
                    }
                }
            })
            .unwrap_or_else(|| {
                panic!("{listen} {args:?}: 8 free ports, all \"in use\" at bind: {last}")
            });
        for ip in ["127.0.0.1", "::1"] {
            let addr = std::net::SocketAddr::new(ip.parse().unwrap(), port);
            assert_echo(&connect(addr), format!("tcp over {ip} {args:?}").as_bytes());
            if !args.is_empty() {
                assert_udp_echo(ip, addr, format!("udp over {ip}").as_bytes());
            }
        }
        drop(server);
    }
}

/// `--help` says what `[::]` alone serves (IPv6 only), and that `--metrics`
/// is not filtered by `--allow`/`--deny`.
#[test]
fn help_states_ipv6_only_and_the_unfiltered_metrics_port() {
    let help = help();
    let flag = |name: &str| {
        help.split(&format!("--{name} "))
            .nth(1)
            .and_then(|rest| rest.split("\n      --").next())
            .unwrap_or_else(|| panic!("no --{name} in:\n{help}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(flag("listen").contains("IPv6-only"), "{}", flag("listen"));
    assert!(
        flag("metrics").contains("do NOT apply"),
        "{}",
        flag("metrics")
    );
    assert!(help.contains("TCP and UDP echo server"), "{help}");
}

/// A bad value from an `ECHOLOOP_…` variable is one line that names the
/// variable (the operator never typed the flag) and the value; a bad value
/// of the flag itself, which wins over the variable, names the flag only;
/// a bad on/off value lists the words accepted.
#[test]
fn environment_errors_name_the_variable() {
    let run = |env: (&str, &str), args: &[&str]| {
        let out = run_to_exit(Command::new(ECHOLOOP).args(args).env(env.0, env.1));
        out.assert_usage_error(&format!("{}={} {args:?}", env.0, env.1))
    };
    let line = run(("ECHOLOOP_MAX_CONNECTIONS", "lots"), &[]);
    assert!(
        line.contains("'lots' for ECHOLOOP_MAX_CONNECTIONS (--max-connections <N>)"),
        "{line}"
    );
    let line = run(
        ("ECHOLOOP_MAX_CONNECTIONS", "5"),
        &["--max-connections", "lots"],
    );
    assert!(
        line.contains("'--max-connections <N>'") && !line.contains("ECHOLOOP"),
        "{line}"
    );
    let line = run(("ECHOLOOP_UDP", "maybe"), &[]);
    assert!(
        line.contains("ECHOLOOP_UDP") && line.contains("yes/no"),
        "{line}"
    );
    let line = run(("ECHOLOOP_LISTEN", "127.0.0.1:0, nowhere"), &[]);
    assert!(
        line.contains("ECHOLOOP_LISTEN") && line.contains("nowhere"),
        "{line}"
    );
}

/// On/off variables take 1/0, yes/no, on/off and true/false in any case:
/// `ECHOLOOP_UDP` turns UDP echo on or leaves it off accordingly, and
/// `ECHOLOOP_NO_NODELAY` is accepted in the same spellings.
#[test]
fn on_off_variables_take_the_usual_spellings() {
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("TRUE", true),
        ("On", true),
        ("0", false),
        ("no", false),
        ("False", false),
        ("OFF", false),
    ] {
        let mut server = Binary::start_with(
            Command::new(ECHOLOOP)
                .env("ECHOLOOP_UDP", value)
                .env("ECHOLOOP_NO_NODELAY", value),
        );
        server.stderr.wait_for("admission:");
        assert_eq!(
            server.stderr.contains("udp echo on"),
            on,
            "ECHOLOOP_UDP={value}"
        );
        assert_echo(&connect(server.addr), value.as_bytes());
    }
}

/// Spaces around the commas of a listed variable are ignored: the server
/// listens on both addresses of `ECHOLOOP_LISTEN="127.0.0.1:0, 127.0.0.1:0"`
/// and echoes on each, and `ECHOLOOP_ALLOW`/`ECHOLOOP_DENY` with spaces
/// are taken whole (the start-up log shows every range) and applied.
#[test]
fn listed_variables_ignore_spaces_around_commas() {
    let mut server = Process::spawn(
        "echoloop",
        Command::new(ECHOLOOP)
            .env("ECHOLOOP_LISTEN", "127.0.0.1:0, 127.0.0.1:0 ")
            .env("ECHOLOOP_ALLOW", "10.0.0.0/8, 127.0.0.1")
            .env("ECHOLOOP_DENY", " 192.0.2.0/24 ,::2")
            .env("RUST_LOG", "info"),
    );
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let line = server.stderr.wait_for("listening on");
        addrs.push(Binary::listening_addr(&line));
    }
    let rules = server.stderr.wait_for("admission:");
    assert!(
        rules.contains("allow 10.0.0.0/8,127.0.0.1/32; deny 192.0.2.0/24,::2/128;"),
        "{rules}"
    );
    for addr in addrs {
        assert_echo(&connect(addr), b"allowed");
    }
}

/// The start-up log shows the admission rules in force in one line: a flag
/// given replaces its variable (`--deny` wins over `ECHOLOOP_DENY`, which
/// is then not in force), and with `--metrics` the line says the rules do
/// not apply to the metrics port.
#[test]
fn start_up_log_shows_the_rules_in_force() {
    let mut server = Binary::start_with(
        Command::new(ECHOLOOP)
            .env("ECHOLOOP_DENY", "10.0.0.0/8")
            .args(["--deny", "192.0.2.0/24", "--max-per-source", "3"])
            .args(["--metrics", "127.0.0.1:0"]),
    );
    let rules = server.stderr.wait_for("admission:");
    assert!(
        rules.contains("allow all; deny 192.0.2.0/24; max per source 3")
            && rules.contains("not applied to the metrics port"),
        "{rules}"
    );
    assert!(!rules.contains("10.0.0.0/8"), "{rules}");
}

/// Every stdout output of `echoloop` — the man page, each shell's
/// completions, `--help`, `--version` — into a pipe whose reader is gone
/// is one line on stderr and a non-zero exit, never a panic (before,
/// `--completions` panicked inside clap_complete, exit 101).
#[cfg(unix)]
#[test]
fn closed_stdout_is_one_line_not_a_panic() {
    for args in [
        &["--completions", "zsh"][..],
        &["--completions", "bash"],
        &["--completions", "fish"],
        &["--man"],
        &["--help"],
        &["--version"],
    ] {
        let out = run_with_closed_stdout(Command::new(ECHOLOOP).args(args));
        assert_closed_stdout_reported(&out, &format!("{args:?}"));
    }
}

/// The stress client's outputs to stdout — a run's report, text or JSON,
/// and `merge`'s — into a pipe whose reader is gone: one line, a non-zero
/// exit, never a panic (`merge` panicked in `println!`).
#[cfg(unix)]
#[test]
fn stress_client_closed_stdout_is_one_line_not_a_panic() {
    let server = TestServer::start(|_| {});
    let addr = server.addr.to_string();
    let run = ["--addr", &addr, "-c", "1", "--messages", "20"];
    for extra in [&[][..], &["--json"]] {
        let out = run_with_closed_stdout(Command::new(STRESS).args(run).args(extra));
        assert_closed_stdout_reported(&out, &format!("run {extra:?}"));
    }
    let report = Stress::spawn(Command::new(STRESS).args(run).arg("--json")).finish(TIMEOUT);
    assert_eq!(
        report.exit.status.code(),
        Some(0),
        "{}",
        report.exit.stderr_text()
    );
    let file = std::env::temp_dir().join(format!("echoloop-cli-{}.json", std::process::id()));
    std::fs::write(&file, &report.exit.stdout).unwrap();
    let out = run_with_closed_stdout(Command::new(STRESS).arg("merge").arg(&file));
    let _ = std::fs::remove_file(&file);
    assert_closed_stdout_reported(&out, "merge");
}

/// `out` failed to write stdout and said so in one line, without a panic.
#[cfg(unix)]
#[track_caller]
fn assert_closed_stdout_reported(out: &Exit, what: &str) {
    let stderr = out.stderr_text();
    let failure = out.status.code().is_some_and(|c| c != 0 && c != 101);
    assert!(failure, "{what}: {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("stdout")).collect();
    assert_eq!(lines.len(), 1, "{what}: {stderr}");
    assert!(lines[0].contains("write to stdout"), "{what}: {stderr}");
}
