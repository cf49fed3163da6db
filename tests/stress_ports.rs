//! Ephemeral ports: a new user's second big run against 127.0.0.1 used to
//! lose connects to the first run's TIME_WAIT sockets, reported only as
//! `addr-not-available`. Tested in a network namespace of its own (the fault
//! lab, [`support::netns`]) whose ephemeral port range is cut down to 8
//! ports, so exhaustion takes 30 connections, not 30,000 — and no other
//! test's sockets are near.
//!
//! Linux as root only: elsewhere the test says why it skipped, and under CI
//! on Linux as root a skip is a failure.

pub mod support;

/// Off Linux there are no network namespaces to build the lab from.
#[cfg(not(target_os = "linux"))]
#[test]
fn ports_lab_needs_linux() {
    eprintln!("stress_ports: skipped: the lab needs Linux (network namespaces)");
}

#[cfg(target_os = "linux")]
mod lab {
    use std::time::Duration;

    use crate::support::netns::Lab;

    /// Longest a stress run here may take.
    const LIMIT: Duration = Duration::from_secs(30);

    /// Proves both halves: with no `--source-addrs`, 30 connections to the
    /// loopback server are spread over 127.0.0.1-127.0.0.16 by default and
    /// all connect, where one source address and its 8 ports cannot hold
    /// them; and then, with `--source-addrs 127.0.0.1`, the connects that
    /// find no port make the report (JSON and text) and the live line say
    /// "ephemeral ports exhausted (TIME_WAIT)" and name `--source-addrs`.
    #[test]
    fn exhausted_ports_are_named_and_loopback_sources_spread_by_default() {
        let Some(lab) = Lab::new("stress_ports") else {
            return;
        };
        lab.exec(
            "sh",
            &[
                "-c",
                "echo '40000 40007' > /proc/sys/net/ipv4/ip_local_port_range",
            ],
        );
        // A listening port outside the range, which connects could not share.
        let server = lab.server(&["--listen", "127.0.0.1:7000"]);
        let addr = server.addr.to_string();
        let base = [
            "--addr",
            &addr,
            "-c",
            "30",
            "-d",
            "1.5",
            "--max-failures",
            "30",
        ];

        let mut spread_args = base.to_vec();
        spread_args.push("--json");
        let spread = lab.stress(&spread_args, LIMIT);
        assert!(spread.status.success(), "{}", spread.describe());
        assert_eq!(
            spread.report().connections_established,
            30,
            "{}",
            spread.describe()
        );
        assert!(
            spread.stdout.contains("\"advice\": null"),
            "{}",
            spread.describe()
        );

        assert_exhaustion_named(&lab, &base);
    }

    /// Runs `base` with one source address, and asserts the connects
    /// short of ports are counted and named, with the cure.
    #[track_caller]
    fn assert_exhaustion_named(lab: &Lab, base: &[&str]) {
        let mut args = base.to_vec();
        args.extend(["--source-addrs", "127.0.0.1", "--json"]);
        let short = lab.stress(&args, LIMIT);
        assert!(
            short.report().failed_by_reason.addr_not_available >= 20,
            "{}",
            short.describe()
        );
        assert!(
            short.report().connections_established <= 8,
            "{}",
            short.describe()
        );
        for needle in ["ephemeral ports exhausted (TIME_WAIT)", "--source-addrs"] {
            assert!(short.stdout.contains(needle), "{}", short.describe());
            assert!(
                short.stderr.iter().any(|line| line.text.contains(needle)),
                "no live line says {needle:?}: {}",
                short.describe()
            );
        }
        let mut text_args = base.to_vec();
        text_args.extend(["--source-addrs", "127.0.0.1"]);
        let text = lab.stress(&text_args, LIMIT);
        assert!(
            text.stdout
                .contains("ports:        ephemeral ports exhausted (TIME_WAIT)"),
            "{}",
            text.describe()
        );
    }
}
