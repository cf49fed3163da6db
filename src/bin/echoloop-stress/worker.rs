//! One event loop: a `mio::Poll` on its own thread, owning a share of the
//! connections, driving them with the same readiness technique as the server.
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
//!   read), WRITABLE only while output is pending.
//! - No allocation per message: a connection is a handful of counters (see
//!   `conn::Slot`) plus `pipeline` send timestamps in one flat table.
//!
//! Timers (connect timeouts, open-loop send times, connect pacing, the run
//! deadline) all feed the `poll` timeout, so an idle loop sleeps in the
//! kernel rather than spinning. Connect timeouts are one uniform delay, so a
//! FIFO in attempt order is already sorted by deadline; open-loop send times
//! are per connection, so they live in a binary heap.
//!
//! This file is the loop and its dispatch; the rest is by concern:
//! `connect.rs` (starting connects, pacing, connect timeouts), `traffic.rs`
//! (issuing, sending, reading and verifying), `phase.rs` (the stages of a
//! run and the stall watchdog) and `end.rs` (how a connection ended, and
//! what that counts as).

mod connect;
mod end;
mod phase;
mod traffic;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::cli::Mode;
use crate::conn::{Slot, State};
use crate::counts::{Counts, Samples};
use crate::live::Live;
use crate::plan::Plan;
use crate::record::{LoopRecording, Timeline};

use self::phase::Phase;
pub(crate) use self::traffic::LOOKAHEAD_NS;

/// The token of the loop's `mio::Waker` (Ctrl-C); connection slots use
/// their index, which never gets this high.
pub const WAKER: Token = Token(usize::MAX);

/// The loop's one read buffer: large, so a bulk echo (16 KiB messages,
/// several in flight) comes in with few `read` calls.
const READ_BUFFER: usize = 256 * 1024;

/// Events taken from the kernel per `poll`.
const EVENTS_PER_POLL: usize = 1024;

/// How often a loop folds its latencies into the shared histogram that the
/// status line reads (and publishes its counters).
pub(crate) const PUBLISH_EVERY_NS: u64 = 250_000_000;

/// What the loops share with the main thread.
#[derive(Debug)]
pub struct Shared {
    /// Set by Ctrl-C: every loop stops at its next turn.
    pub stop: AtomicBool,
    /// Every loop's recordings, by interval and in total; the status line
    /// reads its p99, the interval log and the plot its intervals, the
    /// final report its total.
    pub timeline: Mutex<Timeline>,
}

impl Shared {
    /// Nothing stopped, nothing recorded yet, for `loops` loops.
    pub fn new(loops: usize) -> Self {
        Shared {
            stop: AtomicBool::new(false),
            timeline: Mutex::new(Timeline::new(loops)),
        }
    }
}

/// What a loop hands back when it ends.
#[derive(Debug)]
pub struct Outcome {
    /// Its counts.
    pub counts: Counts,
    /// The first error of each kind it saw.
    pub samples: Samples,
    /// Whether Ctrl-C ended it.
    pub interrupted: bool,
}

/// One loop and everything it owns.
#[derive(Debug)]
pub struct Worker {
    /// This loop's number; its connections are `id`, `id + threads`, …
    id: u64,
    /// The run.
    plan: Arc<Plan>,
    /// State shared with the other loops and the main thread.
    shared: Arc<Shared>,
    /// Counters the status line reads.
    live: Arc<Live>,
    /// Time zero of the run, common to all loops.
    epoch: Instant,
    /// This loop's readiness queue.
    poll: Poll,
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
    /// Open loop: (wake time, slot, generation) of connections waiting for
    /// their next send time, earliest first.
    rate_timers: BinaryHeap<Reverse<(u64, usize, u32)>>,
    /// The stage of the run; whether new messages may be issued follows
    /// from it ([`Worker::sending`]).
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
    /// What this loop timed, and when it publishes it to the timeline.
    rec: LoopRecording,
    /// What this loop counted.
    counts: Counts,
    /// First error of each kind.
    samples: Samples,
}

impl Worker {
    /// A loop for thread `id`, with its connections queued to connect.
    pub fn new(
        id: u64,
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        live: Arc<Live>,
        poll: Poll,
        epoch: Instant,
    ) -> Self {
        let threads = plan.threads;
        let slot_count = ((plan.connections - id).div_ceil(threads)) as usize;
        let budget = match (plan.mode, plan.messages) {
            (Mode::Churn, Some(total)) => total / threads + u64::from(id < total % threads),
            (Mode::Churn, None) => u64::MAX,
            _ => slot_count as u64,
        };
        Worker {
            id,
            shared,
            live,
            epoch,
            poll,
            slots: (0..slot_count).map(|_| Slot::new()).collect(),
            sent_at: vec![0; slot_count * plan.pipeline as usize],
            sent_actual: match plan.rate_interval_ns {
                Some(_) => vec![0; slot_count * plan.pipeline as usize],
                None => Vec::new(),
            },
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            queue: (0..slot_count).collect(),
            budget,
            launched: 0,
            // Loops take turns: loop t's first connect waits t intervals.
            next_connect_at: plan.connect_interval_ns.map_or(0, |g| g.saturating_mul(id)),
            connect_interval_ns: plan.connect_interval_ns.map(|g| g.saturating_mul(threads)),
            connect_deadlines: VecDeque::new(),
            rate_timers: BinaryHeap::new(),
            phase: Phase::Run,
            open: 0,
            connecting: 0,
            outstanding: 0,
            next_stall_check: 0,
            waiting_since: 0,
            rec: LoopRecording::new(id as usize, plan.interval_ns, PUBLISH_EVERY_NS),
            counts: Counts::default(),
            samples: Samples::default(),
            plan,
        }
    }

    /// Nanoseconds since the epoch.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs the loop to the end of the run (or Ctrl-C).
    pub fn run(mut self) -> Outcome {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut interrupted = false;
        loop {
            let now = self.now();
            if self.shared.stop.load(Ordering::Relaxed) {
                interrupted = true;
                self.stop_all();
                break;
            }
            self.on_timers(now);
            if self.finished() {
                break;
            }
            self.publish_counters();
            let timeout = if self.plan.busy_poll {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.next_wake(now).saturating_sub(now))
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("echoloop-stress: poll: {e}");
                    self.stop_all();
                    break;
                }
            }
            self.dispatch(&events);
        }
        self.rec.finish(&self.shared.timeline);
        self.publish_counters();
        Outcome {
            counts: self.counts,
            samples: self.samples,
            interrupted,
        }
    }

    /// Hands each event of one `poll` to its connection.
    fn dispatch(&mut self, events: &Events) {
        // Echoes are timed at the moment the kernel reported them.
        let turn = self.now();
        self.rec.tick(turn, &self.shared.timeline);
        for event in events.iter() {
            let token = event.token();
            if token == WAKER || token.0 >= self.slots.len() {
                continue;
            }
            // Data and FIN can arrive in one event, and urgent data stops a
            // read at its mark: then a short read does not mean drained, and
            // the reads after it must still be made (see `read`).
            let unproven = echoloop::rules::short_read_unproven(event);
            let readable = event.is_readable() || unproven;
            self.drive(token.0, readable, unproven, turn);
        }
    }

    /// Handles a readiness event for slot `s`.
    fn drive(&mut self, s: usize, readable: bool, unproven: bool, turn: u64) {
        match self.slots[s].state {
            State::Connecting => self.finish_connect(s, turn),
            State::Open => {
                if readable && !self.read(s, unproven, turn) {
                    return;
                }
                self.pump(s);
            }
            // A stale event for a socket closed earlier in this batch.
            State::Queued | State::Closed => {}
        }
    }

    /// Whether connects remain to be started by this loop.
    fn connects_left(&self) -> bool {
        self.budget > 0 && !self.queue.is_empty()
    }

    /// Whether this loop has nothing left to do.
    fn finished(&self) -> bool {
        let nothing_left = self.connecting == 0 && self.open == 0 && !self.connects_left();
        match self.phase {
            // Idle mode moves on to Hold instead (see `advance_phase`).
            Phase::Run => self.plan.mode != Mode::Idle && nothing_left,
            Phase::Hold { .. } => self.open == 0,
            Phase::Verify | Phase::Drain { .. } => nothing_left,
        }
    }

    /// The earliest time something is due, for the `poll` timeout.
    fn next_wake(&self, now: u64) -> u64 {
        let mut wake = self.rec.next_due();
        if self.phase == Phase::Run && self.connects_left() {
            wake = wake.min(if self.connect_interval_ns.is_some() {
                self.next_connect_at
            } else {
                now
            });
        }
        if let Some(&(deadline, _, _)) = self.connect_deadlines.front() {
            wake = wake.min(deadline);
        }
        if let Some(Reverse((at, _, _))) = self.rate_timers.peek() {
            wake = wake.min(*at);
        }
        if self.outstanding > 0 {
            wake = wake.min(self.next_stall_check);
        }
        match self.phase {
            Phase::Run => self.plan.deadline.map_or(wake, |d| wake.min(d)),
            Phase::Hold { until } | Phase::Drain { until } => wake.min(until),
            Phase::Verify => wake,
        }
    }

    /// Fires whatever is due: connect timeouts, open-loop sends, paced
    /// connects, the publish tick, the stall watchdog and phase changes.
    fn on_timers(&mut self, now: u64) {
        self.rec.tick(now, &self.shared.timeline);
        self.expire_connects(now);
        self.fire_rate_timers(now);
        if self.phase == Phase::Run {
            self.start_due_connects(now);
        }
        self.watch_stalls(now);
        self.advance_phase(now);
    }

    /// Mirrors this loop's counters into its `Live` for the status line.
    fn publish_counters(&self) {
        let waiting = if self.outstanding > 0 {
            self.waiting_since
        } else {
            0
        };
        self.live.publish(&self.counts, self.open as u64, waiting);
    }
}
