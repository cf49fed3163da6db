//! Counters: what the server has done, readable while it runs.
//!
//! Every counter is listed once, in the `counters!` invocation below; the
//! snapshot type [`Stats`], the live cells, the `Counter` names the loop
//! updates them by, the log line and [`Stats::FIELDS`] (names, kinds,
//! descriptions and Prometheus series, for exporters) are all generated from
//! that list. Adding a counter is one entry.
//!
//! # One writer
//!
//! The loop's thread is the only writer, so each update is a plain load and
//! store (no locked read-modify-write on the hot path): `Counters::add` and
//! the other updates are *not* atomic as a whole, and two threads updating
//! the same counter would lose counts. Everything that writes goes through
//! the loop; readers on other threads (a [`Handle`](crate::Handle), the
//! tests, the stats line) take a [`Stats`] snapshot. Each field is exact; a
//! snapshot taken while the loop runs may mix two moments, which a
//! monitoring read tolerates.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Whether a counter only grows or goes up and down: what an exporter
/// needs to know (a Prometheus counter or gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows.
    Counter,
    /// Goes up and down: a level, not a total.
    Gauge,
}

/// One counter as exporters see it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The field's name in [`Stats`] and in the log line.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// What it counts (the field's doc comment).
    pub help: &'static str,
    /// Its Prometheus series, without the `echoloop_` prefix: a metric name
    /// and, for counters that split one family by reason, its labels.
    pub metric: &'static str,
}

macro_rules! counters {
    ($( $(#[doc = $doc:expr])* $field:ident: $Name:ident, $kind:ident, $metric:literal; )*) => {
        /// A snapshot of the server's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        /// One counter, by name: what the loop updates.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Counter {
            $( $(#[doc = $doc])* $Name, )*
        }

        /// The live counters, shared between the loop (sole writer) and
        /// handles.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( $(#[doc = $doc])* $field: AtomicU64, )*
        }

        impl Counters {
            /// The cell behind `counter`.
            fn cell(&self, counter: Counter) -> &AtomicU64 {
                match counter {
                    $( Counter::$Name => &self.$field, )*
                }
            }

            /// Reads every counter.
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $( $field: self.$field.load(Relaxed), )* }
            }
        }

        impl Stats {
            /// Every counter, in declaration order.
            pub const FIELDS: &'static [Field] = &[
                $( Field {
                    name: stringify!($field),
                    kind: Kind::$kind,
                    help: concat!($($doc),*),
                    metric: $metric,
                }, )*
            ];

            /// The counters' values, in the order of [`Stats::FIELDS`].
            pub fn values(&self) -> Vec<u64> {
                vec![$( self.$field, )*]
            }
        }
    };
}

counters! {
    /// Connections accepted and admitted (refused ones are not counted here).
    accepted: Accepted, Counter, "connections_accepted_total";
    /// Connections open right now.
    active: Active, Gauge, "connections_active";
    /// The largest `active` seen.
    peak_active: PeakActive, Gauge, "connections_active_peak";
    /// Connections accepted and closed at once because `--max-connections`
    /// were open.
    refused: Refused, Counter, r#"connections_refused_total{reason="max_connections"}"#;
    /// Connections accepted and closed at once because their source is
    /// denied (`--deny`, or not in `--allow`).
    refused_denied: RefusedDenied, Counter, r#"connections_refused_total{reason="denied"}"#;
    /// Connections accepted and closed at once because their source already
    /// had `--max-per-source` open.
    refused_per_source: RefusedPerSource, Counter,
        r#"connections_refused_total{reason="per_source"}"#;
    /// Connections that ended cleanly: the peer shut down its side and
    /// everything it sent was echoed.
    closed_by_peer: ClosedByPeer, Counter, r#"connections_closed_total{reason="peer"}"#;
    /// Connections closed by an error: reset by the peer, broken pipe, …
    errored: Errored, Counter, r#"connections_closed_total{reason="error"}"#;
    /// Connections closed for being idle longer than `--idle-timeout`.
    timed_out: TimedOut, Counter, r#"connections_closed_total{reason="idle"}"#;
    /// Connections closed because the peer stopped answering (`ETIMEDOUT`):
    /// keepalive probes, or echo sent to it, went unacknowledged for
    /// `--tcp-keepalive` (or, without it, for the OS's retransmission limit).
    /// A peer that vanished, not one that reset: those count as `errored`.
    vanished: Vanished, Counter, r#"connections_closed_total{reason="vanished"}"#;
    /// Connections closed by shutdown (still open when the server stopped).
    shut_down: ShutDown, Counter, r#"connections_closed_total{reason="shutdown"}"#;
    /// Bytes read from clients.
    bytes_in: BytesIn, Counter, "received_bytes_total";
    /// Bytes written back to clients.
    bytes_out: BytesOut, Counter, "sent_bytes_total";
    /// Echoed bytes held right now for peers that have not taken them (each
    /// connection holds at most `--max-pending`).
    pending_bytes: PendingBytes, Gauge, "pending_bytes";
    /// UDP datagrams received (`--udp`).
    udp_datagrams_in: UdpDatagramsIn, Counter, "udp_received_datagrams_total";
    /// UDP datagrams echoed back to their source.
    udp_datagrams_out: UdpDatagramsOut, Counter, "udp_sent_datagrams_total";
    /// Bytes of the UDP datagrams received.
    udp_bytes_in: UdpBytesIn, Counter, "udp_received_bytes_total";
    /// Bytes of the UDP datagrams echoed.
    udp_bytes_out: UdpBytesOut, Counter, "udp_sent_bytes_total";
    /// UDP datagrams dropped because the socket's send buffer was full (UDP
    /// promises nothing, and queueing them would be unbounded memory).
    udp_dropped_would_block: UdpDroppedWouldBlock, Counter,
        r#"udp_dropped_datagrams_total{reason="would_block"}"#;
    /// UDP datagrams dropped for exceeding `--udp-rate` from their source.
    udp_dropped_rate_limited: UdpDroppedRateLimited, Counter,
        r#"udp_dropped_datagrams_total{reason="rate_limited"}"#;
    /// UDP datagrams dropped because their source is denied (`--deny`, or
    /// not in `--allow`): the rules TCP applies at accept.
    udp_dropped_denied: UdpDroppedDenied, Counter,
        r#"udp_dropped_datagrams_total{reason="denied"}"#;
    /// UDP errors: ICMP errors reported on the socket (an earlier echo's
    /// destination was unreachable), failed sends, unexpected receive errors.
    udp_errors: UdpErrors, Counter, "udp_errors_total";
}

impl Counters {
    /// Adds `n` to a counter. Loop thread only: see the module docs.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let cell = self.cell(counter);
        cell.store(cell.load(Relaxed) + n, Relaxed);
    }

    /// Takes `n` from a gauge. Loop thread only: see the module docs.
    pub(crate) fn sub(&self, counter: Counter, n: u64) {
        let cell = self.cell(counter);
        cell.store(cell.load(Relaxed) - n, Relaxed);
    }

    /// Records the number of open connections, and the peak. Loop thread
    /// only: see the module docs.
    pub(crate) fn set_active(&self, active: usize) {
        let active = active as u64;
        self.cell(Counter::Active).store(active, Relaxed);
        let peak = self.cell(Counter::PeakActive);
        if active > peak.load(Relaxed) {
            peak.store(active, Relaxed);
        }
    }
}

impl fmt::Display for Stats {
    /// `accepted=3 active=1 …`: every counter as `name=value`, in order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, value)) in Stats::FIELDS.iter().zip(self.values()).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={value}", field.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log line names every counter once, in order, with its value;
    /// and every field has a description for exporters.
    #[test]
    fn display_and_fields_follow_the_list() {
        let counters = Counters::default();
        counters.add(Counter::BytesIn, 5);
        counters.add(Counter::PendingBytes, 3);
        counters.sub(Counter::PendingBytes, 1);
        counters.set_active(2);
        let line = counters.snapshot().to_string();
        assert!(
            line.starts_with("accepted=0 active=2 peak_active=2 "),
            "{line}"
        );
        assert!(line.contains(" bytes_in=5 "), "{line}");
        assert!(line.contains(" pending_bytes=2 "), "{line}");
        assert!(line.ends_with(" udp_errors=0"), "{line}");
        assert_eq!(line.split(' ').count(), Stats::FIELDS.len());
        assert!(Stats::FIELDS.iter().all(|f| !f.help.trim().is_empty()));
    }
}
