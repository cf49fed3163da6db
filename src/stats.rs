//! Counters: what the server has done, readable while it runs.
//!
//! Every counter is listed once, in the `counters!` invocation below; the
//! snapshot type [`Stats`], the live cells, the `Counter` names the loop
//! updates them by, the log line and [`Stats::FIELDS`] (names, kinds,
//! descriptions and Prometheus series, for exporters) are all generated from
//! that list. Adding a counter is one entry.
//!
//! # One writer per slot
//!
//! Each loop owns one slot of counters and is its only writer, so each
//! update is a plain load and store (no locked read-modify-write on the hot
//! path). The type system holds it to that: the writer, `Counters`, is made
//! once per slot, is neither `Clone` nor `Sync` (so no second thread can
//! write through a shared reference either), and moves into its loop.
//! Everyone else — a [`Handle`](crate::Handle), the metrics endpoint, the
//! tests — holds a `Reader` of the slot and takes a [`Stats`] snapshot; with
//! several slots, [`Stats::sum`] adds them up. Each field is exact; a
//! snapshot taken while the loop runs may mix two moments, which a
//! monitoring read tolerates.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

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

        /// One counter, by name: what the loop updates. (Without the `tls`
        /// feature nothing updates the TLS ones.)
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(not(feature = "tls"), allow(dead_code))]
        pub(crate) enum Counter {
            $( $(#[doc = $doc])* $Name, )*
        }

        /// One loop's live counters: written through its [`Counters`] only,
        /// read through any number of [`Reader`]s.
        #[derive(Debug, Default)]
        struct Slot {
            $( $(#[doc = $doc])* $field: AtomicU64, )*
        }

        impl Slot {
            /// The cell behind `counter`.
            fn cell(&self, counter: Counter) -> &AtomicU64 {
                match counter {
                    $( Counter::$Name => &self.$field, )*
                }
            }

            /// Reads every counter.
            fn snapshot(&self) -> Stats {
                Stats { $( $field: self.$field.load(Relaxed), )* }
            }
        }

        impl Stats {
            /// The field-by-field sum of several snapshots (one per loop's
            /// slot): the server's totals. Levels add up too (`active`,
            /// `pending_bytes`); `peak_active` becomes the sum of the loops'
            /// peaks, at least the true peak, exact with one loop.
            pub fn sum(all: impl IntoIterator<Item = Stats>) -> Stats {
                let mut total = Stats::default();
                for one in all {
                    $( total.$field += one.$field; )*
                }
                total
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
    /// `--proxy-protocol`: balancers' connections whose header named a
    /// client (v1 TCP4/TCP6, v2 PROXY over IPv4/IPv6), then judged as it.
    proxy_proxied: ProxyProxied, Counter, r#"proxy_headers_total{kind="proxied"}"#;
    /// `--proxy-protocol`: v2 LOCAL headers, the balancer's own connections
    /// (health checks), served as the balancer.
    proxy_local: ProxyLocal, Counter, r#"proxy_headers_total{kind="local"}"#;
    /// `--proxy-protocol`: headers with no address used here (v1 UNKNOWN;
    /// v2 AF_UNSPEC, AF_UNIX or a datagram), served as the balancer.
    proxy_unknown: ProxyUnknown, Counter, r#"proxy_headers_total{kind="unknown"}"#;
    /// `--proxy-protocol`: balancers' connections closed because they did
    /// not begin with a PROXY header.
    proxy_not_proxy: ProxyNotProxy, Counter, r#"proxy_rejected_total{reason="not_proxy"}"#;
    /// `--proxy-protocol`: closed on a header that breaks the specification.
    proxy_malformed: ProxyMalformed, Counter, r#"proxy_rejected_total{reason="malformed"}"#;
    /// `--proxy-protocol`: closed on a header longer than the bound (107
    /// bytes in v1, 4 KiB in v2).
    proxy_oversized: ProxyOversized, Counter, r#"proxy_rejected_total{reason="oversized"}"#;
    /// `--proxy-protocol`: closed for not delivering the header within
    /// `--proxy-header-timeout`.
    proxy_timeout: ProxyTimeout, Counter, r#"proxy_rejected_total{reason="timeout"}"#;
    /// `--proxy-protocol`: closed before the header ended (by the balancer,
    /// an error, the idle timeout or shutdown).
    proxy_incomplete: ProxyIncomplete, Counter, r#"proxy_rejected_total{reason="incomplete"}"#;
    /// `--proxy-protocol`: balancers' connections whose header is still
    /// being read (not yet `active`: nobody knows yet whom they are for).
    proxy_pending: ProxyPending, Gauge, "proxy_headers_pending";
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
    /// TLS handshakes finished in full (`--tls-listen`).
    tls_handshakes: TlsHandshakes, Counter, r#"tls_handshakes_total{kind="full"}"#;
    /// TLS handshakes that resumed an earlier session (a ticket or the
    /// session cache): no certificate, no signature.
    tls_handshakes_resumed: TlsHandshakesResumed, Counter,
        r#"tls_handshakes_total{kind="resumed"}"#;
    /// TLS handshakes not finished within `--tls-handshake-timeout`.
    tls_failed_timeout: TlsFailedTimeout, Counter,
        r#"tls_handshake_failures_total{reason="timeout"}"#;
    /// TLS handshakes whose first bytes were not TLS (plaintext on the TLS
    /// port) or whose records were malformed.
    tls_failed_not_tls: TlsFailedNotTls, Counter,
        r#"tls_handshake_failures_total{reason="not_tls"}"#;
    /// TLS handshakes with no protocol version, cipher suite or group in
    /// common.
    tls_failed_incompatible: TlsFailedIncompatible, Counter,
        r#"tls_handshake_failures_total{reason="incompatible"}"#;
    /// TLS handshakes refused for the client's certificate: none sent, or
    /// not signed by `--tls-client-ca`.
    tls_failed_client_certificate: TlsFailedClientCertificate, Counter,
        r#"tls_handshake_failures_total{reason="client_certificate"}"#;
    /// TLS handshakes the client ended with an alert (it did not trust our
    /// certificate, typically).
    tls_failed_peer_alert: TlsFailedPeerAlert, Counter,
        r#"tls_handshake_failures_total{reason="peer_alert"}"#;
    /// TLS handshakes cut off by the client closing or resetting.
    tls_failed_closed: TlsFailedClosed, Counter,
        r#"tls_handshake_failures_total{reason="closed"}"#;
    /// TLS handshakes failed for any other reason rustls gave.
    tls_failed_other: TlsFailedOther, Counter,
        r#"tls_handshake_failures_total{reason="other"}"#;
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

/// The one writer of a slot of counters: owned by its loop (see the module
/// docs). Not `Clone`; not `Sync`, so `&Counters` cannot cross threads
/// either; `Send`, so it can move to the loop's thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// The slot it writes.
    slot: Arc<Slot>,
    /// Makes the writer `!Sync` (a `Cell` is not `Sync`): the plain load and
    /// store in [`Counters::add`] are safe only with one thread writing.
    _one_thread: PhantomData<Cell<()>>,
}

/// A read-only view of one slot of counters, for any thread.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    /// The slot it reads.
    slot: Arc<Slot>,
}

impl Reader {
    /// Reads every counter of the slot.
    pub(crate) fn snapshot(&self) -> Stats {
        self.slot.snapshot()
    }
}

impl Counters {
    /// A view of this slot for readers on other threads.
    pub(crate) fn reader(&self) -> Reader {
        Reader {
            slot: Arc::clone(&self.slot),
        }
    }

    /// Adds `n` to a counter.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let cell = self.slot.cell(counter);
        cell.store(cell.load(Relaxed) + n, Relaxed);
    }

    /// Takes `n` from a gauge.
    pub(crate) fn sub(&self, counter: Counter, n: u64) {
        let cell = self.slot.cell(counter);
        cell.store(cell.load(Relaxed) - n, Relaxed);
    }

    /// Records the number of open connections, and the peak.
    pub(crate) fn set_active(&self, active: usize) {
        let active = active as u64;
        self.slot.cell(Counter::Active).store(active, Relaxed);
        let peak = self.slot.cell(Counter::PeakActive);
        if active > peak.load(Relaxed) {
            peak.store(active, Relaxed);
        }
    }
}

// The writer must stay single: this fails to compile if `Counters` ever
// becomes `Clone` or `Sync` (two impls would then apply and `_` would be
// ambiguous). The same trick as the `static_assertions` crate, in six lines.
trait AmbiguousIfShareable<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfShareable<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfShareable<u8> for T {}
impl<T: Clone> AmbiguousIfShareable<u16> for T {}
const _: fn() = || <Counters as AmbiguousIfShareable<_>>::check();

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
        let line = counters.reader().snapshot().to_string();
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

    /// The totals of several slots are their field-by-field sum, and a
    /// reader sees what the slot's writer wrote.
    #[test]
    fn slots_sum_field_by_field() {
        let (a, b) = (Counters::default(), Counters::default());
        a.add(Counter::BytesIn, 5);
        b.add(Counter::BytesIn, 7);
        b.set_active(3);
        let (ra, rb) = (a.reader(), b.reader());
        let total = Stats::sum([ra.snapshot(), rb.snapshot()]);
        assert_eq!(total.bytes_in, 12);
        assert_eq!(total.active, 3);
        assert_eq!(total.peak_active, 3);
        assert_eq!(Stats::sum([ra.snapshot()]), ra.snapshot());
    }
}
