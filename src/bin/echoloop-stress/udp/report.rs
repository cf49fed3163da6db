//! The report of a `--udp` run: its verdict and its text (the JSON form
//! is `json.rs`, with the same counts).

use std::fmt::Write as _;

use super::icmp;
use crate::conn::FailReason;
use crate::record::Series;
use crate::report::{failed_by_reason, group, percentiles_text, Report};

impl Report {
    /// Why a `--udp` run failed, or `None` when it passed. Corruption and
    /// duplication always fail it (an echo server must not alter or invent
    /// datagrams); reordering never does; loss above `--max-loss` does.
    pub fn udp_verdict(&self) -> Option<String> {
        let c = &self.counts;
        let u = &c.udp;
        if u.corrupted > 0 {
            return Some(format!(
                "{} echo(es) corrupted (wrong bytes, wrong length, another socket's or a \
                 sequence never sent)",
                group(u.corrupted)
            ));
        }
        if u.duplicated > 0 {
            return Some(format!(
                "{} datagram(s) echoed more than once",
                group(u.duplicated)
            ));
        }
        if u.echoed == 0 {
            return Some("no datagram was echoed and verified: nothing was tested".into());
        }
        let max_loss = self.setup.max_loss.unwrap_or(0.0);
        if u.loss_percent() > max_loss {
            return Some(format!(
                "{} of {} datagrams lost ({:.3} %) > --max-loss {max_loss} %",
                group(u.lost),
                group(u.sent),
                u.loss_percent()
            ));
        }
        let failures = c.failures(self.setup.mode.workload);
        if failures > self.setup.max_failures {
            return Some(format!(
                "{failures} failure(s) (sockets that did not open + socket errors) > \
                 --max-failures {}",
                self.setup.max_failures
            ));
        }
        None
    }

    /// The text report's body for a `--udp` run (between the first line
    /// and the result).
    pub fn udp_text(&self, out: &mut String) {
        let c = &self.counts;
        let u = &c.udp;
        let _ = writeln!(
            out,
            "sockets:      {} opened of {}, {} failed to open ({}), {} failed later",
            group(c.established),
            group(c.attempted),
            group(c.failed_total()),
            failed_by_reason(c),
            group(c.unexpected_closes),
        );
        let _ = writeln!(
            out,
            "datagrams:    {} sent, {} echoed in {:.3} s = {} datagrams/s, {:.2} MiB/s echoed",
            group(u.sent),
            group(u.echoed),
            self.secs(),
            group(self.msgs_per_sec().round() as u64),
            self.mib_per_sec(),
        );
        let _ = writeln!(
            out,
            "lost:         {} ({:.3} % of sent; --max-loss {} %), {} of them late; {} unresolved",
            group(u.lost),
            u.loss_percent(),
            self.setup.max_loss.unwrap_or(0.0),
            group(u.late),
            group(u.unresolved),
        );
        // Where unconnected sockets are never told of ICMP errors, their
        // count is unknown, not 0 (`icmp.rs`).
        let icmp = if icmp::KNOWN {
            format!(", {} ICMP errors", group(u.icmp_errors))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "echoes:       {} duplicated, {} reordered, {} corrupted, {} from other \
             addresses{icmp}",
            group(u.duplicated),
            group(u.reordered),
            group(u.corrupted),
            group(u.foreign),
        );
        for (label, series) in [
            ("latency:     ", Series::Rtt),
            ("uncorrected: ", Series::RttUncorrected),
        ] {
            if self.setup.series().contains(&series) {
                let h = self.rec.get(series);
                let _ = writeln!(out, "{label} {}", percentiles_text(h, &self.percentiles));
            }
        }
        let jitter = u.jitter_ns().map_or_else(
            || "- (no two echoes on a socket)".to_string(),
            |ns| format!("{:.1} us", ns / 1000.0),
        );
        let _ = writeln!(
            out,
            "jitter:       {jitter} (RFC 3550 inter-arrival, every socket's over its {} samples \
             together; worst socket {:.1} us)",
            group(u.jitter_samples),
            u.jitter_max_socket_ns.0 as f64 / 1000.0,
        );
        self.udp_first_errors(out);
    }

    /// The first trouble of each kind.
    fn udp_first_errors(&self, out: &mut String) {
        let s = &self.samples;
        let failed = FailReason::ALL
            .iter()
            .map(|r| (r.name(), &s.failed[r.index()]));
        let others = [
            ("socket error", &s.unexpected),
            ("corrupted", &s.udp.corrupted),
            ("duplicated", &s.udp.duplicated),
            ("lost", &s.udp.lost),
        ];
        for (name, m) in failed.chain(others) {
            if let Some(m) = m {
                let _ = writeln!(out, "first error:  {name}: {m}");
            }
        }
        // Not failures, but worth a look.
        for (name, m) in [
            ("reordered", &s.udp.reordered),
            ("other address", &s.udp.foreign),
        ] {
            if let Some(m) = m {
                let _ = writeln!(out, "first seen:   {name}: {m}");
            }
        }
    }
}
