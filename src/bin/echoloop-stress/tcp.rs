//! The TCP engine of a loop (`engine.rs` is the loop itself): a share of
//! the connections, driven with the same readiness technique as the server.
//!
//! - Every socket is non-blocking and registered edge-triggered. On an event
//!   we read until `WouldBlock` into ONE read buffer per loop (256 KiB) and
//!   verify the bytes in place against the payload table: nothing is copied.
//! - Sends are `write`s straight out of the payload table. WRITABLE interest
//!   is registered only while a connection has output the socket would not
//!   take (and while connecting); a connection with nothing pending raises no
//!   events.
//! - Reads, writes and interest follow the library's `echoloop::rules`, the
//!   same as the server's: drain to `WouldBlock` (or, on epoll, a short
//!   read), WRITABLE only while output is pending. Every byte goes through
//!   the library's transport seam (`echoloop::transport::Transport`), which
//!   also says whether a short read proves the socket drained: plain TCP
//!   keeps the epoll shortcut, a transport with bytes of its own would not.
//! - No allocation per message: a connection is a handful of counters (see
//!   `conn::Slot`) plus `pipeline` send timestamps in one flat table.
//!
//! Timers (connect timeouts, open-loop send times, connect pacing, the run
//! deadline) all feed the `poll` timeout, so an idle loop sleeps in the
//! kernel rather than spinning. Connect timeouts are one uniform delay, so a
//! FIFO in attempt order is already sorted by deadline; open-loop send times
//! are per connection, so they live in a binary heap.
//!
//! This file is the engine's state and its dispatch; the rest is by concern:
//! `connect.rs` (starting connects, pacing, connect timeouts), `traffic.rs`
//! (issuing, sending, reading and verifying), `phase.rs` (the stages of a
//! run and the stall watchdog) and `end.rs` (how a connection ended, and
//! what that counts as).

mod connect;
mod end;
mod phase;
mod request;
mod traffic;

use std::collections::VecDeque;

use mio::event::Event;

use crate::cli::Mode;
use crate::conn::{Slot, State};
use crate::engine::{Core, Engine};

/// `--stages`: how often a loop whose next connect waits for the count to
/// rise looks again (the ramp's resolution).
const STAGE_TICK_NS: u64 = 10_000_000;

/// The loop's one read buffer: large, so a bulk echo (16 KiB messages,
/// several in flight) comes in with few `read` calls.
const READ_BUFFER: usize = 256 * 1024;

/// The stage of the run a loop is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting and (except in idle mode) sending.
    Run,
    /// Idle mode: every connect has settled; holding until the given time.
    Hold {
        /// End of the hold, in ns since the epoch.
        until: u64,
    },
    /// Idle mode: one message per surviving connection, then done.
    Verify,
    /// A timed run is over: no new messages, waiting for echoes in flight.
    Drain {
        /// When whatever is still outstanding counts as stalled.
        until: u64,
    },
}

/// The TCP side of one loop: its connections and what they are doing.
#[derive(Debug)]
pub struct Tcp {
    /// Connection slots; the index is the token.
    slots: Vec<Slot>,
    /// Send timestamp (ns since the epoch) of each message in flight:
    /// `pipeline` entries per slot, message `i` at `i mod pipeline`. One flat
    /// table, allocated once. In the open loop, the scheduled time.
    sent_at: Vec<u64>,
    /// Open loop only (else empty): the actual send time of each message in
    /// flight, laid out as `sent_at`, for the uncorrected latency.
    sent_actual: Vec<u64>,
    /// The loop's one read buffer.
    buf: Box<[u8]>,
    /// Any-server mode (`--send`) only (else empty): each slot's requests
    /// and responses in flight, by slot.
    wires: Vec<request::Wire>,
    /// Slots waiting for their turn to connect, in order.
    queue: VecDeque<usize>,
    /// Connects this loop may still start (load, idle: one per slot; churn:
    /// its share of `--messages`, or unlimited).
    budget: u64,
    /// Connects started so far: the next connection's index is
    /// `id + launched × threads`.
    launched: u64,
    /// Pacing: when the next connect may start (ns since the epoch).
    next_connect_at: u64,
    /// Pacing: ns between two connects of this loop.
    connect_interval_ns: Option<u64>,
    /// (deadline, slot, generation) of every connect in progress, oldest first.
    connect_deadlines: VecDeque<(u64, usize, u32)>,
    /// The stage of the run; whether new messages may be issued follows
    /// from it ([`Tcp::sending`]).
    phase: Phase,
    /// Connections open now.
    open: usize,
    /// Connects in progress now.
    connecting: usize,
    /// Messages issued and not yet echoed, over all connections.
    outstanding: u64,
    /// When the stall watchdog next looks at every connection.
    next_stall_check: u64,
    /// What the watchdog last saw: the oldest `last_progress` among the
    /// connections owed an echo (0 if none), for the status line.
    waiting_since: u64,
}

impl Tcp {
    /// The connections of the loop on `core`, queued to connect.
    pub fn new(core: &Core) -> Self {
        let (id, plan) = (core.id, &core.plan);
        let threads = plan.threads;
        let slot_count = core.share();
        let budget = match (plan.workload, plan.messages) {
            // A connection that falls out of the stages' count may come back.
            _ if plan.stages.is_some() => u64::MAX,
            (Mode::Churn, Some(total)) => total / threads + u64::from(id < total % threads),
            (Mode::Churn, None) => u64::MAX,
            _ => slot_count as u64,
        };
        Tcp {
            slots: (0..slot_count).map(|_| Slot::new()).collect(),
            sent_at: vec![0; slot_count * plan.pipeline as usize],
            sent_actual: match plan.rate_interval_ns {
                Some(_) => vec![0; slot_count * plan.pipeline as usize],
                None => Vec::new(),
            },
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            wires: match plan.exchange {
                Some(_) => (0..slot_count).map(|_| request::Wire::default()).collect(),
                None => Vec::new(),
            },
            queue: (0..slot_count).collect(),
            budget,
            launched: 0,
            // Loops take turns: loop t's first connect waits t intervals.
            next_connect_at: plan.connect_interval_ns.map_or(0, |g| g.saturating_mul(id)),
            connect_interval_ns: plan.connect_interval_ns.map(|g| g.saturating_mul(threads)),
            connect_deadlines: VecDeque::new(),
            phase: Phase::Run,
            open: 0,
            connecting: 0,
            outstanding: 0,
            next_stall_check: 0,
            waiting_since: 0,
        }
    }

    /// Whether connects remain to be started by this loop.
    fn connects_left(&self) -> bool {
        self.budget > 0 && !self.queue.is_empty()
    }

    /// `--stages`: whether the next queued connect must wait for the
    /// count to rise.
    fn next_connect_inactive(&self, core: &Core) -> bool {
        core.plan.stages.is_some() && self.queue.front().is_some_and(|&s| !core.active(s))
    }
}

impl Engine for Tcp {
    /// Fires whatever is due: connect timeouts, paced connects, the stall
    /// watchdog and phase changes.
    fn on_timers(&mut self, core: &mut Core, now: u64) {
        self.expire_connects(core, now);
        if self.phase == Phase::Run {
            self.start_due_connects(core, now);
        }
        self.watch_stalls(core, now);
        self.advance_phase(core, now);
    }

    /// Open loop: pumps the connection if the timer is its own.
    fn on_send_timer(&mut self, core: &mut Core, s: usize, generation: u32) {
        let slot = &mut self.slots[s];
        if slot.generation == generation && slot.state == State::Open {
            slot.timer_armed = false;
            self.pump(core, s);
        }
    }

    /// Whether this loop has nothing left to do.
    fn finished(&self, core: &Core) -> bool {
        let nothing_left = self.connecting == 0 && self.open == 0 && !self.connects_left();
        match self.phase {
            // Idle mode moves on to Hold instead (see `advance_phase`).
            Phase::Run => core.plan.workload != Mode::Idle && nothing_left,
            Phase::Hold { .. } => self.open == 0,
            Phase::Verify | Phase::Drain { .. } => nothing_left,
        }
    }

    /// The earliest time something is due, for the `poll` timeout.
    fn next_wake(&self, core: &Core, now: u64) -> u64 {
        let mut wake = u64::MAX;
        if self.phase == Phase::Run && self.connects_left() {
            wake = wake.min(if self.next_connect_inactive(core) {
                now.saturating_add(STAGE_TICK_NS)
            } else if self.connect_interval_ns.is_some() {
                self.next_connect_at
            } else {
                now
            });
        }
        if let Some(&(deadline, _, _)) = self.connect_deadlines.front() {
            wake = wake.min(deadline);
        }
        if self.outstanding > 0 {
            wake = wake.min(self.next_stall_check);
        }
        match self.phase {
            Phase::Run => core.plan.deadline.map_or(wake, |d| wake.min(d)),
            Phase::Hold { until } | Phase::Drain { until } => wake.min(until),
            Phase::Verify => wake,
        }
    }

    /// Hands a readiness event to its connection.
    fn on_event(&mut self, core: &mut Core, event: &Event, turn: u64) {
        let s = event.token().0;
        if s >= self.slots.len() {
            return;
        }
        // Data and FIN can arrive in one event, and urgent data stops a
        // read at its mark: then a short read does not mean drained, and
        // the reads after it must still be made (see `read`).
        let unproven = echoloop::rules::short_read_unproven(event);
        let readable = event.is_readable() || unproven;
        match self.slots[s].state {
            State::Connecting => self.finish_connect(core, s, turn),
            State::Open => {
                if readable && !self.read(core, s, unproven, turn) {
                    return;
                }
                self.pump(core, s);
            }
            // A stale event for a socket closed earlier in this batch.
            State::Queued | State::Closed => {}
        }
    }

    /// Connections open, and the oldest wait for an echo (0: none owed).
    fn status(&self) -> (u64, u64) {
        let waiting = if self.outstanding > 0 {
            self.waiting_since
        } else {
            0
        };
        (self.open as u64, waiting)
    }

    /// Closes what is still open or connecting (after Ctrl-C or a failed
    /// `poll`; at a normal end nothing is).
    fn close(&mut self, core: &mut Core, _interrupted: bool) {
        self.stop_all(core);
    }
}
