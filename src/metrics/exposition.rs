//! The Prometheus text exposition format, version 0.0.4: every counter of
//! [`Stats`] — the server's total, unlabelled, then each loop's series
//! labelled `loop="i"` — the limits in force, and (Linux) the standard
//! `process_*` metrics. (Sum the labelled series or read the unlabelled
//! one; summing a family whole counts everything twice.)
//!
//! Written by hand, not with `prometheus-client`: the counters already live
//! in [`Stats`] with their names, kinds and descriptions ([`Stats::FIELDS`]),
//! so an encoder is a loop over that list — about as long as the code that
//! would copy each counter into that crate's registry on every scrape, and
//! without the ten-odd crates (a proc-macro among them) it would add to the
//! library's seven.

use std::fmt::Write as _;

use super::process;
use crate::stats::{Kind, Stats};

/// Every metric name starts with this.
const PREFIX: &str = "echoloop_";

/// HELP for the families that one counter per reason makes up (the other
/// metrics take their field's own description).
const FAMILY_HELP: &[(&str, &str)] = &[
    (
        "connections_refused_total",
        "Connections accepted and closed at once, by reason: max_connections \
         (--max-connections open), denied (--allow/--deny), per_source \
         (--max-per-source).",
    ),
    (
        "connections_closed_total",
        "Connections closed, by reason: peer (end of stream, all echoed), error, idle \
         (--idle-timeout), vanished (the peer stopped answering), shutdown.",
    ),
    (
        "tls_handshakes_total",
        "TLS handshakes finished (--tls-listen), by kind: full, resumed (a ticket or the \
         session cache).",
    ),
    (
        "tls_handshake_failures_total",
        "TLS handshakes failed, by reason: timeout (--tls-handshake-timeout), not_tls \
         (plaintext on the TLS port), incompatible (nothing in common), client_certificate \
         (missing or not signed by --tls-client-ca), peer_alert (the client refused us), \
         closed (the client left), other. Each connection is also counted as \
         connections_closed_total{reason=\"error\"}.",
    ),
    (
        "proxy_headers_total",
        "PROXY headers read from --proxy-protocol balancers, by kind: proxied (a client \
         named), local (the balancer's own connection), unknown (no usable address).",
    ),
    (
        "proxy_rejected_total",
        "--proxy-protocol balancers' connections closed for their header, by reason: \
         not_proxy, malformed, oversized, timeout (--proxy-header-timeout), incomplete \
         (closed before it ended).",
    ),
    (
        "udp_dropped_datagrams_total",
        "UDP datagrams dropped, by reason: would_block (send buffer full), rate_limited \
         (--udp-rate), denied (--allow/--deny).",
    ),
];

/// One gauge of the limits in force: name (without prefix), help, value.
pub(crate) type Limit = (&'static str, &'static str, f64);

/// The whole `/metrics` body, from each loop's counters.
pub(crate) fn render(per_loop: &[Stats], limits: &[Limit]) -> String {
    let mut out = String::with_capacity(8 * 1024 * (1 + per_loop.len()));
    let values = Stats::sum(per_loop.iter().copied()).values();
    let each: Vec<Vec<u64>> = per_loop.iter().map(Stats::values).collect();
    let mut family_done: Vec<&str> = Vec::new();
    for (i, field) in Stats::FIELDS.iter().enumerate() {
        let family = field.metric.split('{').next().unwrap_or(field.metric);
        if !family_done.contains(&family) {
            family_done.push(family);
            let help = FAMILY_HELP
                .iter()
                .find(|(name, _)| *name == family)
                .map_or(field.help, |(_, help)| help);
            header(&mut out, &format!("{PREFIX}{family}"), help, field.kind);
            // A family's members follow it at once: the format wants them
            // together, and the list keeps them together.
            for (j, member) in Stats::FIELDS.iter().enumerate().skip(i) {
                if member.metric.split('{').next() == Some(family) {
                    let _ = writeln!(out, "{PREFIX}{} {}", member.metric, values[j]);
                    for (l, loop_values) in each.iter().enumerate() {
                        let series = labelled(member.metric, l);
                        let _ = writeln!(out, "{PREFIX}{series} {}", loop_values[j]);
                    }
                }
            }
        }
    }
    for (name, help, value) in limits {
        header(&mut out, &format!("{PREFIX}{name}"), help, Kind::Gauge);
        let _ = writeln!(out, "{PREFIX}{name} {value}");
    }
    for (name, help, kind, value) in process::metrics() {
        header(&mut out, name, help, kind);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// `metric` (`name` or `name{labels}`) with the label `loop="l"` added.
fn labelled(metric: &str, l: usize) -> String {
    match metric.strip_suffix('}') {
        Some(open) => format!("{open},loop=\"{l}\"}}"),
        None => format!("{metric}{{loop=\"{l}\"}}"),
    }
}

/// `# HELP` and `# TYPE` lines; the help text on one line, escaped.
fn header(out: &mut String, name: &str, help: &str, kind: Kind) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each family is announced once, before its members, which stay
    /// together; every counter ends in `_total`; limits are gauges.
    #[test]
    fn families_are_announced_once_and_kept_together() {
        let text = render(
            &[Stats::default(); 2],
            &[("max_connections", "The cap.", 5.0)],
        );
        let typed: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut names: Vec<&str> = typed.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a family announced twice:\n{text}");
        for line in &typed {
            if line.ends_with(" counter") {
                assert!(line.contains("_total "), "{line}");
            }
        }
        assert!(text.contains("echoloop_connections_refused_total{reason=\"per_source\"} 0\n"));
        assert!(text
            .contains("echoloop_connections_refused_total{reason=\"per_source\",loop=\"1\"} 0\n"));
        assert!(text.contains("echoloop_received_bytes_total{loop=\"0\"} 0\n"));
        assert!(
            text.contains("# TYPE echoloop_max_connections gauge\necholoop_max_connections 5\n")
        );
    }
}
