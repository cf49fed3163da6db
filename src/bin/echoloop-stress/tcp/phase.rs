//! The stages of a run — connecting and sending, holding (idle mode), the
//! final verification (idle mode), the drain after a timed run — and the
//! stall watchdog that ends connections owed an echo that does not come.

use std::time::Duration;

use super::end::End;
use super::{Phase, Tcp};
use crate::cli::Mode;
use crate::conn::State;
use crate::engine::Core;
use crate::shared::PUBLISH_EVERY_NS;

impl Tcp {
    /// Whether new messages may be issued: while the run runs (not in idle
    /// mode, which holds its connections silent), and for idle mode's final
    /// verification.
    pub(super) fn sending(&self, core: &Core) -> bool {
        match self.phase {
            Phase::Run => core.plan.workload != Mode::Idle,
            Phase::Verify => true,
            Phase::Hold { .. } | Phase::Drain { .. } => false,
        }
    }

    /// Moves to the next stage when its time has come.
    pub(super) fn advance_phase(&mut self, core: &mut Core, now: u64) {
        match self.phase {
            Phase::Run => {
                if core.plan.deadline.is_some_and(|d| now >= d) {
                    self.begin_drain(core, now);
                } else if core.plan.workload == Mode::Idle
                    && self.connecting == 0
                    && !self.connects_left()
                {
                    self.phase = Phase::Hold {
                        until: now.saturating_add(core.plan.hold_ns),
                    };
                }
            }
            Phase::Hold { until } if now >= until => self.begin_verify(core, now),
            Phase::Drain { until } if now >= until => self.end_stalled(core, now, true),
            _ => {}
        }
    }

    /// A timed run is over: stop sending and connecting; close what has
    /// nothing in flight, and let the rest drain for up to `--echo-timeout`.
    fn begin_drain(&mut self, core: &mut Core, now: u64) {
        self.phase = Phase::Drain {
            until: now.saturating_add(core.plan.echo_timeout_ns),
        };
        self.never_attempted(core);
        // A connect the stages' ramp began just before the end is the
        // ramp's norm, not a connection owed: cut, not counted aborted.
        let cut = if core.plan.stages.is_some() {
            || End::Cut
        } else {
            || End::Aborted
        };
        for s in 0..self.slots.len() {
            let slot = &self.slots[s];
            match slot.state {
                State::Connecting => self.end(core, s, cut()),
                State::Open if slot.outstanding() == 0 => self.end(core, s, End::Done),
                _ => {}
            }
        }
    }

    /// Idle mode: the hold is over; send one message on every survivor
    /// (its time to first byte counts from now).
    fn begin_verify(&mut self, core: &mut Core, now: u64) {
        self.phase = Phase::Verify;
        core.counts.idle_held = self.open as u64;
        for s in 0..self.slots.len() {
            if self.slots[s].state == State::Open {
                self.slots[s].first_byte_from = now;
                self.pump(core, s);
            }
        }
    }

    /// Runs the stall watchdog when it is due.
    pub(super) fn watch_stalls(&mut self, core: &mut Core, now: u64) {
        if now >= self.next_stall_check {
            self.next_stall_check = now.saturating_add(self.stall_check_every(core));
            self.end_stalled(core, now, false);
        }
    }

    /// How often the stall watchdog looks: often enough that a stall is
    /// seen within a quarter of `--echo-timeout` of happening.
    fn stall_check_every(&self, core: &Core) -> u64 {
        (core.plan.echo_timeout_ns / 4).clamp(1_000_000, PUBLISH_EVERY_NS)
    }

    /// Ends every open connection that is owed an echo and has received no
    /// byte of it for `--echo-timeout`: stalled. With `run_over` (the drain
    /// after a timed run has run out), the others owed an echo end too, as
    /// unfinished: still progressing, not stalled.
    fn end_stalled(&mut self, core: &mut Core, now: u64, run_over: bool) {
        let timeout = core.plan.echo_timeout_ns;
        self.waiting_since = 0;
        for s in 0..self.slots.len() {
            let slot = &self.slots[s];
            if slot.state != State::Open || slot.outstanding() == 0 {
                continue;
            }
            let quiet = now.saturating_sub(slot.last_progress);
            if quiet < timeout && !run_over {
                let since = slot.last_progress.max(1);
                self.waiting_since = match self.waiting_since {
                    0 => since,
                    oldest => oldest.min(since),
                };
                continue;
            }
            let story = format!(
                "connection {}: {} of {} sent bytes came back, the last {:.3} s ago",
                slot.index,
                slot.received,
                slot.sent,
                quiet as f64 / 1e9
            );
            if quiet >= timeout {
                let message = format!(
                    "{story}: no echo byte for {:?} (--echo-timeout)",
                    Duration::from_nanos(timeout)
                );
                self.end(core, s, End::Stalled(message));
            } else {
                let message = format!("{story}: still echoing when the drain ended");
                self.end(core, s, End::Unfinished(message));
            }
        }
    }
}
