//! What the loops count, and the first message of each kind of error.

use crate::cli::Mode;

/// Everything one loop counts; the loops' counts are added up at the end.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// `connect` calls made.
    pub attempted: u64,
    /// Connects that completed the handshake.
    pub established: u64,
    /// Connects that failed, by [`FailReason::index`](crate::conn::FailReason::index).
    pub failed: [u64; 5],
    /// Connects still in progress when the run ended or was interrupted:
    /// connections never established, so never tested (failures, except in
    /// churn mode, where connects in flight at the end are the norm).
    pub aborted: u64,
    /// Load and idle mode: connections still waiting for their turn to
    /// connect when the run ended (never attempted, never tested).
    pub never_attempted: u64,
    /// Connections the server closed or reset before we were done with them.
    pub unexpected_closes: u64,
    /// Of those, the ones closed before they echoed a single byte: typically
    /// a server refusing connections over its limit (accept, then close).
    pub closed_before_echo: u64,
    /// Connections that received no echo byte for `--echo-timeout` while
    /// owed one.
    pub stalled: u64,
    /// Connections whose echoes were still arriving when the drain after a
    /// timed run ended: slow, not stalled, and not a failure.
    pub unfinished: u64,
    /// Connections whose echo differed from what was sent (each is closed at
    /// its first wrong byte, since nothing after it can be trusted).
    pub verification_errors: u64,
    /// Messages whose echo arrived complete and verified.
    pub messages: u64,
    /// Echoed bytes received and verified (one direction).
    pub bytes: u64,
    /// Churn mode: connect-echo-close cycles completed.
    pub cycles: u64,
    /// Idle mode: connections still open when the hold ended.
    pub idle_held: u64,
    /// Idle mode: of those, the ones whose final echo verified.
    pub idle_survived: u64,
    /// `--udp`: what became of the datagrams (sockets are counted above
    /// as connections: opened as attempted and established, failures to
    /// open by reason, a socket error as an unexpected close; echoed
    /// datagrams as messages and bytes).
    pub udp: UdpCounts,
}

/// What became of the datagrams of a `--udp` run; in the JSON report each
/// is a top-level field of this name (the benchmark reads them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UdpCounts {
    /// Datagrams the kernel took (`send_to` succeeded).
    pub sent: u64,
    /// Datagrams whose echo came back whole and right within
    /// `--echo-timeout` (the same as `messages`).
    pub echoed: u64,
    /// Datagrams not echoed within `--echo-timeout`, counted when it expired.
    pub lost: u64,
    /// Echoes of lost datagrams that arrived after all: not echoed.
    pub late: u64,
    /// Echoes of a datagram already echoed (or late): the server invented a copy.
    pub duplicated: u64,
    /// Echoes that came after the echo of a later datagram of the same
    /// socket: reported, not a failure (UDP does not promise order).
    pub reordered: u64,
    /// Echoes with wrong bytes, a wrong length, another socket's header or
    /// a sequence never sent.
    pub corrupted: u64,
    /// Datagrams from an address other than the server's: not echoes, not
    /// looked at.
    pub foreign: u64,
    /// Receive errors that report an ICMP error for an earlier datagram
    /// (port unreachable: `ConnectionRefused`, Windows' `WSAECONNRESET`);
    /// the datagram itself is counted lost when its time is up.
    pub icmp_errors: u64,
    /// Datagrams still in flight when the run was interrupted or their
    /// socket failed: neither echoed nor lost.
    pub unresolved: u64,
}

impl UdpCounts {
    /// Adds another loop's counts to these.
    pub fn add(&mut self, o: &UdpCounts) {
        self.sent += o.sent;
        self.echoed += o.echoed;
        self.lost += o.lost;
        self.late += o.late;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.corrupted += o.corrupted;
        self.foreign += o.foreign;
        self.icmp_errors += o.icmp_errors;
        self.unresolved += o.unresolved;
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
    /// Adds another loop's counts to these.
    pub fn add(&mut self, other: &Counts) {
        self.attempted += other.attempted;
        self.established += other.established;
        for (mine, theirs) in self.failed.iter_mut().zip(other.failed) {
            *mine += theirs;
        }
        self.aborted += other.aborted;
        self.never_attempted += other.never_attempted;
        self.unfinished += other.unfinished;
        self.unexpected_closes += other.unexpected_closes;
        self.closed_before_echo += other.closed_before_echo;
        self.stalled += other.stalled;
        self.verification_errors += other.verification_errors;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.cycles += other.cycles;
        self.idle_held += other.idle_held;
        self.idle_survived += other.idle_survived;
        self.udp.add(&other.udp);
    }

    /// Failed connects, all reasons.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// Connections the run meant to test and never established: aborted
    /// and never-attempted connects (not counted in churn mode).
    pub fn untested(&self, mode: Mode) -> u64 {
        match mode {
            Mode::Churn => 0,
            Mode::Load | Mode::Idle => self.aborted + self.never_attempted,
        }
    }

    /// What `--max-failures` is compared with: failed connects, unexpected
    /// closes, stalls and connections never established.
    pub fn failures(&self, mode: Mode) -> u64 {
        self.failed_total() + self.unexpected_closes + self.stalled + self.untested(mode)
    }
}

/// The first message of each kind of error: the counts say how many, these
/// say why.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// First failed connect of each reason, by [`FailReason::index`](crate::conn::FailReason::index).
    pub failed: [Option<String>; 5],
    /// First unexpected close.
    pub unexpected: Option<String>,
    /// First stalled connection.
    pub stalled: Option<String>,
    /// First connection still echoing when the drain ended.
    pub unfinished: Option<String>,
    /// First wrong byte: connection, stream offset, expected and received.
    pub verification: Option<String>,
    /// `--udp`: the first datagram of each kind of trouble.
    pub udp: UdpSamples,
}

/// The first datagram of each kind of trouble in a `--udp` run: socket,
/// sequence and what was wrong.
#[derive(Debug, Default, Clone)]
pub struct UdpSamples {
    /// First lost datagram.
    pub lost: Option<String>,
    /// First duplicated echo.
    pub duplicated: Option<String>,
    /// First reordered echo.
    pub reordered: Option<String>,
    /// First corrupted echo.
    pub corrupted: Option<String>,
    /// First datagram from another address.
    pub foreign: Option<String>,
}

impl UdpSamples {
    /// Fills the kinds this set lacks from another loop's samples.
    pub fn add(&mut self, o: UdpSamples) {
        self.lost = self.lost.take().or(o.lost);
        self.duplicated = self.duplicated.take().or(o.duplicated);
        self.reordered = self.reordered.take().or(o.reordered);
        self.corrupted = self.corrupted.take().or(o.corrupted);
        self.foreign = self.foreign.take().or(o.foreign);
    }
}

impl Samples {
    /// Keeps `message` in `slot` unless an earlier one is there.
    pub fn keep(slot: &mut Option<String>, message: impl FnOnce() -> String) {
        if slot.is_none() {
            *slot = Some(message());
        }
    }

    /// Fills the kinds this set lacks from another loop's samples.
    pub fn add(&mut self, other: Samples) {
        for (mine, theirs) in self.failed.iter_mut().zip(other.failed) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.unexpected = self.unexpected.take().or(other.unexpected);
        self.stalled = self.stalled.take().or(other.stalled);
        self.unfinished = self.unfinished.take().or(other.unfinished);
        self.verification = self.verification.take().or(other.verification);
        self.udp.add(other.udp);
    }
}
