//! Step 5's last part: a graceful shutdown. Stop accepting, flush the echo
//! of what was read, send FIN, close what owes nothing, and give up on the
//! rest when the grace period is over.

use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Close, EventLoop};
use crate::connection::Hints;
use crate::sys;

/// During shutdown, how often connections whose peers keep their side open
/// are checked for whether everything we sent was acknowledged (which
/// raises no event) — and how long a peer must have been quiet to be
/// closed. Short against the grace period (5 s by default); long enough
/// that a peer still sending, if slowly or from a busy machine, is not cut
/// off with a reset.
const LINGER_CHECK: Duration = Duration::from_millis(500);

impl EventLoop {
    /// Starts shutdown when asked, and finishes it when everything is flushed
    /// or the grace period is over. Returns `false` once the server stopped.
    pub(super) fn shutdown_step(&mut self) -> bool {
        if self.shutdown_deadline.is_none() {
            if !self.shared.shutting_down() {
                return true;
            }
            // Stop accepting: closing the listeners makes the kernel refuse
            // new clients instead of queueing them. But closing one resets
            // whoever waits in its queue (with SO_REUSEPORT, each loop's
            // own queue): take them all in first, to be served like the rest.
            // A queue holds at most the backlog, so that many accepts empty
            // it, and a flood of new clients cannot hold shutdown up.
            let queued = usize::try_from(self.shared.config.backlog).unwrap_or(usize::MAX);
            for i in 0..self.listeners.len() {
                self.accept(i, queued.saturating_add(1));
            }
            self.listeners.clear();
            if self.shared.handing_off && self.index == 0 {
                self.shared.close_accepting();
            }
            // UDP owes nobody anything: its sockets close at once.
            self.udp.clear();
            // From now, not from the start of the turn: the grace is a promise to the
            // operator, and a turn may have begun well before the signal.
            self.shutdown_deadline = Some(Instant::now() + self.shared.config.shutdown_grace);
            info!(
                "shutting down: {} connections, flushing for up to {:?}",
                self.conns.len(),
                self.shared.config.shutdown_grace
            );
            // Serve each connection once more without reading: those that owe
            // nothing close now; the rest flush on their writable events.
            let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                self.serve(key, Hints::default());
            }
            self.next_linger_check = sys::SEES_UNACKNOWLEDGED.then(|| self.now + LINGER_CHECK);
        }
        let out_of_time = self.shutdown_deadline.is_some_and(|at| self.now >= at);
        if out_of_time && !self.conns.is_empty() {
            warn!("shutdown grace over: closing {}", self.owed_summary());
            let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                self.close(key, Close::Shutdown);
            }
        } else if self.next_linger_check.is_some_and(|at| self.now >= at) {
            // Peers that took every byte, have gone quiet, but keep their
            // side open: nothing says so by an event, so look now and then.
            let done: Vec<usize> = (self.conns.iter_mut())
                .filter_map(|(key, conn)| conn.owes_nothing().then_some(key))
                .collect();
            for key in done {
                self.close(key, Close::Shutdown);
            }
            self.next_linger_check = Some(self.now + LINGER_CHECK);
        }
        // Where loop 0 hands off, the others stay until it has closed its
        // listeners (what it took from its queue may be theirs), then take
        // in what it handed them last.
        if self.waits_for_loop_0() {
            if !self.shared.accepting_over() {
                return true;
            }
            self.hand_off_over = true;
            self.take_handed();
        }
        !self.conns.is_empty()
    }

    /// Where loop 0 hands off: whether this loop (another) must still wait
    /// for it to close its listeners before it may finish.
    pub(super) fn waits_for_loop_0(&self) -> bool {
        self.shared.handing_off && self.index != 0 && !self.hand_off_over
    }

    /// What the connections still open at the end of the grace period are
    /// owed, in words: "3 connections: 2 still owed output (…), 1 owed
    /// nothing but its peer had not closed".
    fn owed_summary(&self) -> String {
        let (mut owed, mut held, mut in_kernel, mut unknown) = (0, 0, 0, 0);
        for (_, conn) in &self.conns {
            let kernel = conn.unacknowledged();
            match (conn.pending_len(), kernel) {
                (0, Some(0)) => {}
                (0, None) => unknown += 1,
                (here, kernel) => {
                    owed += 1;
                    held += here;
                    in_kernel += kernel.unwrap_or(0);
                }
            }
        }
        let total = self.conns.len();
        let done = total - owed - unknown;
        let mut parts = Vec::new();
        if owed > 0 {
            parts.push(format!(
                "{owed} still owed output ({held} bytes held here, {in_kernel} sent but \
                 unacknowledged)"
            ));
        }
        if unknown > 0 {
            parts.push(format!(
                "{unknown} owed nothing here but had not closed (this OS does not say \
                 whether the peer took what the kernel sent)"
            ));
        }
        if done > 0 {
            parts.push(format!(
                "{done} owed nothing (their peers were still sending)"
            ));
        }
        let s = if total == 1 { "" } else { "s" };
        format!("{total} connection{s}: {}", parts.join(", "))
    }
}
