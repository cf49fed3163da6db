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
    }
}
