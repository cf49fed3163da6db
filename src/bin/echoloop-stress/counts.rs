//! What the loops count, and the first message of each kind of error.
//!
//! Every count is listed once, in the `tally!` invocations below, with its
//! name in the JSON report: the struct the loops update, its serde form
//! (the report's fields, which `merge` reads back), the loops' totals
//! ([`Counts::add`]) and `merge`'s overflow-checked sums
//! ([`Counts::checked_add`]) are all generated from that list, so adding a
//! count is one entry (and a line of the text report, which a test checks
//! it has). Per-reason counts are [`PerReason`] arrays, sized by
//! [`FailReason::ALL`].

use crate::cli::Mode;
use crate::conn::FailReason;
use crate::keyed::keyed_array;

keyed_array!(
    /// One value per connect failure reason, by [`FailReason::index`]; in
    /// JSON an object keyed by [`FailReason::name`].
    PerReason,
    FailReason,
    name
);

/// A value the loops' (and runs') values add into: a count sums, a first
/// message keeps the earliest one there is.
pub trait Tally {
    /// Adds `other` into this (a loop's totals: a count saturates rather
    /// than wrap, which no real run reaches).
    fn add(&mut self, other: &Self);
    /// Adds `other` into this, failing where a count would not fit in 64
    /// bits: `Err` names the field (empty: the caller names it).
    fn checked_add(&mut self, other: &Self) -> Result<(), &'static str>;
    /// Calls `f` with every count in this and its JSON name (`name` for a
    /// bare count).
    fn each_count(&mut self, name: &'static str, f: &mut dyn FnMut(&'static str, &mut u64));
}

impl Tally for u64 {
    fn add(&mut self, other: &u64) {
        *self = self.saturating_add(*other);
    }

    fn checked_add(&mut self, other: &u64) -> Result<(), &'static str> {
        *self = u64::checked_add(*self, *other).ok_or("")?;
        Ok(())
    }

    fn each_count(&mut self, name: &'static str, f: &mut dyn FnMut(&'static str, &mut u64)) {
        f(name, self);
    }
}

impl Tally for Option<String> {
    fn add(&mut self, other: &Option<String>) {
        if self.is_none() {
            self.clone_from(other);
        }
    }

    fn checked_add(&mut self, other: &Option<String>) -> Result<(), &'static str> {
        Tally::add(self, other);
        Ok(())
    }

    fn each_count(&mut self, _: &'static str, _: &mut dyn FnMut(&'static str, &mut u64)) {}
}

impl<T: Tally> Tally for PerReason<T> {
    fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.iter_mut().zip(other.iter()) {
            mine.add(theirs);
        }
    }

    fn checked_add(&mut self, other: &Self) -> Result<(), &'static str> {
        for (mine, theirs) in self.iter_mut().zip(other.iter()) {
            mine.checked_add(theirs)?;
        }
        Ok(())
    }

    fn each_count(&mut self, name: &'static str, f: &mut dyn FnMut(&'static str, &mut u64)) {
        for value in self.iter_mut() {
            value.each_count(name, f);
        }
    }
}

/// Declares a struct of tallies from one list of `field: Type => "json
/// name"` entries (doc comments and serde attributes pass through), with
/// its serde form under those names and its [`Tally`] sums, field by field.
macro_rules! tally {
    (
        $(#[$attr:meta])*
        pub struct $Name:ident {
            $( $(#[$field_attr:meta])* $field:ident: $Type:ty => $json:literal, )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct $Name {
            $( $(#[$field_attr])* #[serde(rename = $json)] pub $field: $Type, )*
        }

        impl $Name {
            /// Adds another loop's values to these.
            #[allow(dead_code)]
            pub fn add(&mut self, other: &$Name) {
                Tally::add(self, other);
            }

            /// Adds a whole report's values to these, as `merge` does:
            /// `Err` names the field whose sum would not fit in 64 bits
            /// (these are then part added).
            #[allow(dead_code)]
            pub fn checked_add(&mut self, other: &$Name) -> Result<(), &'static str> {
                Tally::checked_add(self, other)
            }
        }

        impl Tally for $Name {
            fn add(&mut self, other: &$Name) {
                $( Tally::add(&mut self.$field, &other.$field); )*
            }

            fn checked_add(&mut self, other: &$Name) -> Result<(), &'static str> {
                $(
                    Tally::checked_add(&mut self.$field, &other.$field)
                        .map_err(|inner| if inner.is_empty() { $json } else { inner })?;
                )*
                Ok(())
            }

            fn each_count(
                &mut self,
                _: &'static str,
                f: &mut dyn FnMut(&'static str, &mut u64),
            ) {
                $( self.$field.each_count($json, f); )*
            }
        }
    };
}

tally! {
    /// Everything one loop counts; the loops' counts are added up at the
    /// end. In the JSON report each is a top-level field of the name given.
    pub struct Counts {
        /// `connect` calls made.
        attempted: u64 => "connections_attempted",
        /// Connects that completed the handshake.
        established: u64 => "connections_established",
        /// Connects that failed, by [`FailReason::index`].
        failed: PerReason<u64> => "failed_by_reason",
        /// Connects still in progress when the run ended or was interrupted:
        /// connections never established, so never tested (failures, except in
        /// churn mode, where connects in flight at the end are the norm).
        aborted: u64 => "connections_aborted",
        /// Load and idle mode: connections still waiting for their turn to
        /// connect when the run ended (never attempted, never tested).
        never_attempted: u64 => "connections_never_attempted",
        /// Connections the server closed or reset before we were done with them.
        unexpected_closes: u64 => "unexpected_closes",
        /// Of those, the ones closed before they echoed a single byte: typically
        /// a server refusing connections over its limit (accept, then close).
        closed_before_echo: u64 => "closed_before_echo",
        /// Connections that received no echo byte for `--echo-timeout` while
        /// owed one.
        stalled: u64 => "stalled",
        /// Connections whose echoes were still arriving when the drain after a
        /// timed run ended: slow, not stalled, and not a failure.
        unfinished: u64 => "unfinished",
        /// Connections whose echo differed from what was sent (each is closed at
        /// its first wrong byte, since nothing after it can be trusted).
        verification_errors: u64 => "verification_errors",
        /// Messages whose echo arrived complete and verified.
        messages: u64 => "messages",
        /// Echoed bytes received and verified (one direction).
        bytes: u64 => "bytes",
        /// Churn mode: connect-echo-close cycles completed.
        cycles: u64 => "churn_cycles",
        /// Idle mode: connections still open when the hold ended.
        idle_held: u64 => "idle_held",
        /// Idle mode: of those, the ones whose final echo verified.
        idle_survived: u64 => "idle_survived",
        /// `--udp`: what became of the datagrams (sockets are counted above
        /// as connections: opened as attempted and established, failures to
        /// open by reason, a socket error as an unexpected close; echoed
        /// datagrams as messages and bytes). In JSON only in UDP reports,
        /// at the top level (see `json.rs`).
        #[serde(skip)]
        udp: UdpCounts => "udp",
    }
}

tally! {
    /// What became of the datagrams of a `--udp` run; in the JSON report each
    /// is a top-level field of this name (the benchmark reads them).
    pub struct UdpCounts {
        /// Datagrams the kernel took (`send_to` succeeded).
        sent: u64 => "sent",
        /// Datagrams whose echo came back whole and right within
        /// `--echo-timeout` (the same as `messages`).
        echoed: u64 => "echoed",
        /// Datagrams not echoed within `--echo-timeout`, counted when it expired.
        lost: u64 => "lost",
        /// Echoes of lost datagrams that arrived after all: not echoed.
        late: u64 => "late",
        /// Echoes of a datagram already echoed (or late): the server invented a copy.
        duplicated: u64 => "duplicated",
        /// Echoes that came after the echo of a later datagram of the same
        /// socket: reported, not a failure (UDP does not promise order).
        reordered: u64 => "reordered",
        /// Echoes with wrong bytes, a wrong length, another socket's header or
        /// a sequence never sent.
        corrupted: u64 => "corrupted",
        /// Datagrams from an address other than the server's: not echoes, not
        /// looked at.
        foreign: u64 => "foreign",
        /// Receive errors that report an ICMP error for an earlier datagram
        /// (port unreachable: `ConnectionRefused`, Windows' `WSAECONNRESET`);
        /// the datagram itself is counted lost when its time is up.
        icmp_errors: u64 => "icmp_errors",
        /// Datagrams still in flight when the run was interrupted or their
        /// socket failed: neither echoed nor lost.
        unresolved: u64 => "unresolved",
        /// RFC 3550 jitter (`udp/jitter.rs`): the sum over every socket's
        /// samples of its running estimate, in ns. (These three read as 0
        /// from a report written before they were: it still merges.)
        #[serde(default)]
        jitter_sum_ns: u64 => "jitter_sum_ns",
        /// The samples of that sum: arrivals after each socket's first.
        #[serde(default)]
        jitter_samples: u64 => "jitter_samples",
        /// The largest socket's own jitter (its mean), in ns.
        #[serde(default)]
        jitter_max_socket_ns: Max => "jitter_max_socket_ns",
    }
}

/// A value that tallies as the largest of its parts, not their sum (the
/// worst socket's jitter). In JSON a bare number.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Max(pub u64);

impl Tally for Max {
    fn add(&mut self, other: &Max) {
        self.0 = self.0.max(other.0);
    }

    fn checked_add(&mut self, other: &Max) -> Result<(), &'static str> {
        Tally::add(self, other);
        Ok(())
    }

    fn each_count(&mut self, name: &'static str, f: &mut dyn FnMut(&'static str, &mut u64)) {
        f(name, &mut self.0);
    }
}

tally! {
    /// The first message of each kind of error: the counts say how many,
    /// these say why. In the JSON report each is a top-level field of the
    /// name given.
    pub struct Samples {
        /// First failed connect of each reason, by [`FailReason::index`].
        failed: PerReason<Option<String>> => "first_failed_by_reason",
        /// First unexpected close.
        unexpected: Option<String> => "first_unexpected_close",
        /// First stalled connection.
        stalled: Option<String> => "first_stall",
        /// First connection still echoing when the drain ended.
        unfinished: Option<String> => "first_unfinished",
        /// First wrong byte: connection, stream offset, expected and received.
        verification: Option<String> => "first_verification_error",
        /// `--udp`: the first datagram of each kind of trouble; in JSON only
        /// in UDP reports (see `json.rs`).
        #[serde(skip)]
        udp: UdpSamples => "udp",
    }
}

tally! {
    /// The first datagram of each kind of trouble in a `--udp` run: socket,
    /// sequence and what was wrong.
    pub struct UdpSamples {
        /// First lost datagram.
        lost: Option<String> => "first_lost",
        /// First duplicated echo.
        duplicated: Option<String> => "first_duplicated",
        /// First reordered echo.
        reordered: Option<String> => "first_reordered",
        /// First corrupted echo.
        corrupted: Option<String> => "first_corrupted",
        /// First datagram from another address.
        foreign: Option<String> => "first_foreign",
    }
}

impl UdpCounts {
    /// The run's jitter (ns): the mean of every socket's estimate over all
    /// their samples (`udp/jitter.rs`); `None` without a sample.
    pub fn jitter_ns(&self) -> Option<f64> {
        (self.jitter_samples > 0).then(|| self.jitter_sum_ns as f64 / self.jitter_samples as f64)
    }

    /// Lost datagrams as a percentage of those sent (0 with none sent).
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.sent as f64
        }
    }
}

impl Counts {
    /// What `--max-failures` is compared with ([`Counts::checked_failures`];
    /// `u64::MAX` if that does not fit).
    pub fn failures(&self, mode: Mode) -> u64 {
        self.checked_failures(mode).unwrap_or(u64::MAX)
    }

    /// Failed connects, unexpected closes, stalls and connections never
    /// established (except in churn mode, where connects in flight at the
    /// end are the norm, and UDP); `None` if the sum does not fit in 64
    /// bits (only a report made up by hand gets there).
    pub fn checked_failures(&self, mode: Mode) -> Option<u64> {
        let untested = match mode {
            Mode::Churn => 0,
            Mode::Load | Mode::Idle => self.aborted.checked_add(self.never_attempted)?,
        };
        self.failed
            .iter()
            .copied()
            .chain([self.unexpected_closes, self.stalled, untested])
            .try_fold(0u64, u64::checked_add)
    }

    /// Failed connects, all reasons.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().fold(0, |sum, &n| sum.saturating_add(n))
    }

    /// Calls `f` with every count and its JSON name, the datagram counts
    /// included.
    #[allow(dead_code)]
    pub fn each_count(&mut self, f: &mut dyn FnMut(&'static str, &mut u64)) {
        Tally::each_count(self, "", f);
    }
}

/// `--warmup`: which counts start after the warm-up. The throughput's
/// counts (messages, bytes, churn cycles, echoed datagrams) are measured
/// from the warm-up's end; the connections, every error and, with
/// `--udp`, the fate of the datagrams sent (sent, lost, late, …) count
/// over the whole run, so an error or a loss during the warm-up still
/// fails it, and no datagram straddling the boundary is counted sent in
/// one window and lost in the other. The report shows the warm-up's own
/// messages and errors apart.
impl Counts {
    /// The traffic counts, which [`Counts::less_warmup`] subtracts.
    fn traffic(&mut self) -> [&mut u64; 4] {
        [
            &mut self.messages,
            &mut self.bytes,
            &mut self.cycles,
            &mut self.udp.echoed,
        ]
    }

    /// These counts (of the whole run) with the traffic of `warm` (the
    /// counts when the warm-up ended) taken out.
    pub fn less_warmup(mut self, warm: &Counts) -> Counts {
        let mut warm = warm.clone();
        for (total, before) in self.traffic().into_iter().zip(warm.traffic()) {
            *total = total.saturating_sub(*before);
        }
        self
    }

    /// The errors in these counts: verification errors, failures and
    /// corrupted or duplicated datagrams.
    pub fn errors(&self, mode: Mode) -> u64 {
        [
            self.verification_errors,
            self.failures(mode),
            self.udp.corrupted,
            self.udp.duplicated,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }
}

impl Samples {
    /// Keeps `message` in `slot` unless an earlier one is there.
    pub fn keep(slot: &mut Option<String>, message: impl FnOnce() -> String) {
        if slot.is_none() {
            *slot = Some(message());
        }
    }
}
