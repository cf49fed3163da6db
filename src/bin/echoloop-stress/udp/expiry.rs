//! Losses and endings: the look that counts datagrams lost when their
//! `--echo-timeout` is up, the drain after a timed run, when a socket is
//! done, a socket that fails, and the end of the loop.

use super::traffic::lost_story;
use super::{Stage, Udp};
use crate::counts::Samples;
use crate::engine::Core;

impl Udp {
    /// How often the expiry look may run: an eighth of `--echo-timeout`
    /// (1 ms to 100 ms). Each look visits every socket, so it must not run
    /// for each datagram's deadline; a loss is counted at most this late.
    fn expiry_every(&self, core: &Core) -> u64 {
        (core.plan.echo_timeout_ns / 8).clamp(1_000_000, 100_000_000)
    }

    /// When due: counts as lost every datagram whose `--echo-timeout` is
    /// up, sends what that frees, and sets when to look next.
    pub(super) fn expire(&mut self, core: &mut Core, now: u64) {
        if now < self.next_expiry {
            return;
        }
        let timeout = core.plan.echo_timeout_ns;
        // A datagram sent from now on expires after this.
        let mut next = now.saturating_add(timeout);
        for s in 0..self.flows.len() {
            if self.flows[s].in_flight == 0 {
                continue;
            }
            let found = self.flows[s].expire(now, timeout);
            if let Some(deadline) = found.next_deadline {
                next = next.min(deadline);
            }
            if found.lost > 0 {
                core.counts.udp.lost += found.lost;
                let (index, seq) = (self.flows[s].index, found.first.unwrap_or(0));
                Samples::keep(&mut core.samples.udp.lost, || {
                    lost_story(index, seq, timeout)
                });
                self.pump(core, s);
            }
        }
        self.next_expiry = next.max(now.saturating_add(self.expiry_every(core)));
    }

    /// Moves on when the run's time is up, and ends the drain.
    pub(super) fn advance_stage(&mut self, core: &mut Core, now: u64) {
        match self.stage {
            Stage::Run if core.plan.deadline.is_some_and(|d| now >= d) => {
                self.begin_drain(core, now)
            }
            Stage::Drain { until } if now >= until => {
                // Everything still in flight went out before the drain
                // began: its timeout is up.
                self.next_expiry = 0;
                self.expire(core, now);
            }
            _ => {}
        }
    }

    /// A timed run is over: nothing new goes out (a datagram held back is
    /// taken back: it was never sent); what is in flight has until its
    /// `--echo-timeout` to come back.
    fn begin_drain(&mut self, core: &mut Core, now: u64) {
        self.stage = Stage::Drain {
            until: now.saturating_add(core.plan.echo_timeout_ns),
        };
        for s in 0..self.flows.len() {
            self.flows[s].unissue();
            self.check_done(s);
        }
    }

    /// Socket `s` is done once it has nothing more to send and nothing in
    /// flight; it stays open, to count late and duplicate echoes.
    pub(super) fn check_done(&mut self, s: usize) {
        let flow = &mut self.flows[s];
        if flow.done || flow.in_flight > 0 {
            return;
        }
        if flow.next >= flow.quota || matches!(self.stage, Stage::Drain { .. }) {
            flow.done = true;
            self.active -= 1;
        }
    }

    /// Socket `s` failed (an I/O error other than `WouldBlock`): it is
    /// closed, counted as an unexpected close, and what it had in flight is
    /// unresolved.
    pub(super) fn fail(&mut self, core: &mut Core, s: usize, message: String) {
        let flow = &mut self.flows[s];
        if flow.socket.take().is_none() {
            return;
        }
        self.open -= 1;
        core.counts.udp.unresolved += flow.abandon();
        if !flow.done {
            flow.done = true;
            self.active -= 1;
        }
        core.counts.unexpected_closes += 1;
        let index = flow.index;
        Samples::keep(&mut core.samples.unexpected, || {
            format!("socket {index}: {message}")
        });
    }

    /// The loop is over: unless interrupted, takes in the echoes already
    /// waiting (late and duplicate ones among them); then closes every
    /// socket, counting what was still in flight as unresolved.
    pub(super) fn close_all(&mut self, core: &mut Core, interrupted: bool) {
        let now = core.now();
        for s in 0..self.flows.len() {
            if !interrupted {
                self.receive(core, s, now);
            }
            let flow = &mut self.flows[s];
            if flow.socket.take().is_some() {
                self.open -= 1;
            }
            core.counts.udp.unresolved += flow.abandon();
        }
        self.ready.clear();
    }
}
