//! How a connection ended, and what each ending counts as: the one place a
//! slot is closed, so the counts of open and connecting sockets, messages
//! outstanding and every failure counter stay in step.

use super::{Phase, Tcp};
use crate::cli::Mode;
use crate::conn::{FailReason, State};
use crate::counts::Samples;
use crate::engine::Core;

/// How a connection ended; each counts differently.
#[derive(Debug)]
pub(super) enum End {
    /// It did what it was asked (or was drained cleanly).
    Done,
    /// The connect failed.
    Failed(FailReason, String),
    /// The server closed or reset it, or an I/O call failed, too early.
    Unexpected(String),
    /// It echoed a wrong byte.
    Verification(String),
    /// No echo byte for `--echo-timeout` while one was owed.
    Stalled(String),
    /// Echoes were still arriving when the drain after a timed run ended:
    /// slow, not stalled.
    Unfinished(String),
    /// A connect still in progress when the run ended.
    Aborted,
    /// An open connection closed because the run was interrupted.
    Cut,
}

impl Tcp {
    /// Closes slot `s` and counts how it ended; in churn mode, queues the
    /// slot for its next connection.
    pub(super) fn end(&mut self, core: &mut Core, s: usize, how: End) {
        let slot = &mut self.slots[s];
        let was = slot.state;
        slot.stream = None;
        slot.state = State::Closed;
        slot.generation = slot.generation.wrapping_add(1);
        slot.timer_armed = false;
        self.outstanding -= slot.outstanding();
        if let Some(wire) = self.wires.get_mut(s) {
            wire.clear();
        }
        let (done, received) = (slot.done, slot.received);
        match was {
            State::Connecting => self.connecting -= 1,
            State::Open => self.open -= 1,
            State::Queued | State::Closed => {}
        }
        let churn_again = self.count(core, how, done, received);
        if churn_again && self.phase == Phase::Run && self.budget > 0 {
            if core.plan.workload == Mode::Churn {
                self.slots[s].state = State::Queued;
                self.queue.push_back(s);
            } else if core.plan.stages.is_some() {
                // The queue stays in slot order: the lowest numbers connect
                // first as the stages' count rises.
                self.slots[s].state = State::Queued;
                let at = self.queue.partition_point(|&q| q < s);
                self.queue.insert(at, s);
            }
        }
    }

    /// Counts one ending of a connection that echoed `done` messages and
    /// `received` bytes; returns whether, in churn mode, its slot may go
    /// round again.
    fn count(&mut self, core: &mut Core, how: End, done: u64, received: u64) -> bool {
        let counts = &mut core.counts;
        let samples = &mut core.samples;
        match how {
            End::Done => {
                if core.plan.workload == Mode::Churn && done > 0 {
                    counts.cycles += 1;
                }
                if self.phase == Phase::Verify && done > 0 {
                    counts.idle_survived += 1;
                }
                true
            }
            End::Failed(reason, message) => {
                counts.failed[reason.index()] += 1;
                Samples::keep(&mut samples.failed[reason.index()], || message);
                true
            }
            End::Unexpected(message) => {
                counts.unexpected_closes += 1;
                if received == 0 {
                    counts.closed_before_echo += 1;
                }
                Samples::keep(&mut samples.unexpected, || message);
                true
            }
            End::Verification(message) => {
                counts.verification_errors += 1;
                Samples::keep(&mut samples.verification, || message);
                true
            }
            End::Stalled(message) => {
                counts.stalled += 1;
                Samples::keep(&mut samples.stalled, || message);
                true
            }
            End::Unfinished(message) => {
                counts.unfinished += 1;
                Samples::keep(&mut samples.unfinished, || message);
                false
            }
            End::Aborted => {
                counts.aborted += 1;
                false
            }
            End::Cut => false,
        }
    }

    /// Gives up on the connections still waiting for their turn to connect
    /// (load and idle mode: each is a connection the run never tested).
    pub(super) fn never_attempted(&mut self, core: &mut Core) {
        let queued = std::mem::take(&mut self.queue);
        // Churn's and the stages' queued slots are no connection owed.
        if core.plan.workload != Mode::Churn && core.plan.stages.is_none() {
            core.counts.never_attempted += queued.len() as u64;
        }
        for s in queued {
            self.slots[s].state = State::Closed;
        }
    }

    /// Ctrl-C: close everything now.
    pub(super) fn stop_all(&mut self, core: &mut Core) {
        self.never_attempted(core);
        for s in 0..self.slots.len() {
            match self.slots[s].state {
                State::Connecting => self.end(core, s, End::Aborted),
                State::Open => self.end(core, s, End::Cut),
                State::Queued | State::Closed => {}
            }
        }
    }
}
