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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Poll, Token};

use echoloop::rules;

use crate::cli::Mode;
use crate::conn::{self, FailReason, Slot, State};
use crate::payload::{Payload, PERIOD};
use crate::report::{new_histogram, Counts, Live, Samples};

/// The token of the loop's `mio::Waker` (Ctrl-C); connection slots use
/// their index, which never gets this high.
pub const WAKER: Token = Token(usize::MAX);

/// The loop's one read buffer: large, so a bulk echo (16 KiB messages,
/// several in flight) comes in with few `read` calls.
const READ_BUFFER: usize = 256 * 1024;

/// Events taken from the kernel per `poll`.
const EVENTS_PER_POLL: usize = 1024;

/// Connects started per loop turn at most, so a ramp of thousands of
/// connections does not starve the ones already open.
const MAX_CONNECTS_PER_TURN: usize = 256;

/// How often a loop folds its latencies into the shared histogram that the
/// status line reads (and publishes its counters).
const PUBLISH_EVERY_NS: u64 = 250_000_000;

/// Open loop: how early a message may go out. `poll` sleeps in whole
/// milliseconds (mio rounds up), so waiting for the exact send time would
/// send up to 1 ms late and add that to the latency. We wake up to 1 ms
/// before, send what is due by then, and time an early message from its
/// real send time (a late one, always from its schedule).
const LOOKAHEAD_NS: u64 = 1_000_000;

/// The run, as every loop needs it; shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// The echo server.
    pub addr: SocketAddr,
    /// What the connections do.
    pub mode: Mode,
    /// Connections over all loops (churn: concurrent cycles).
    pub connections: u64,
    /// Number of loops; connection `i` belongs to loop `i mod threads`.
    pub threads: u64,
    /// Bytes per message.
    pub message_size: u64,
    /// Messages in flight per connection.
    pub pipeline: u64,
    /// Total messages (load) or cycles (churn) when the run is counted.
    pub messages: Option<u64>,
    /// Load and churn: end of a timed run, in ns since the epoch.
    pub deadline: Option<u64>,
    /// Idle: how long to hold the connections, in ns.
    pub hold_ns: u64,
    /// Open loop: ns between two messages of one connection.
    pub rate_interval_ns: Option<u64>,
    /// Ramp-up pacing: ns between two connects over all loops.
    pub connect_interval_ns: Option<u64>,
    /// How long a connect may take.
    pub connect_timeout_ns: u64,
    /// How long an outstanding echo may take before the connection is stalled.
    pub echo_timeout_ns: u64,
    /// Source addresses to bind to, round robin by connection index.
    pub source_addrs: Vec<IpAddr>,
    /// The bytes every connection sends.
    pub payload: Payload,
    /// Spin on `poll` with a zero timeout instead of sleeping in it.
    pub busy_poll: bool,
}

impl Plan {
    /// Messages connection `index` is to echo before closing.
    fn quota(&self, index: u64) -> u64 {
        match (self.mode, self.messages) {
            (Mode::Load, Some(total)) => {
                total / self.connections + u64::from(index < total % self.connections)
            }
            (Mode::Load, None) => u64::MAX,
            (Mode::Churn | Mode::Idle, _) => 1,
        }
    }
}

/// What the loops share with the main thread.
#[derive(Debug)]
pub struct Shared {
    /// Set by Ctrl-C: every loop stops at its next turn.
    pub stop: AtomicBool,
    /// Latencies of every loop so far; the status line reads its p99, the
    /// final report all of it.
    pub latency: Mutex<Histogram<u64>>,
}

/// What a loop hands back when it ends.
#[derive(Debug)]
pub struct Outcome {
    /// Its counts.
    pub counts: Counts,
    /// The first error of each kind it saw.
    pub samples: Samples,
    /// Its connect latencies.
    pub connect_latency: Histogram<u64>,
    /// Whether Ctrl-C ended it.
    pub interrupted: bool,
}

/// The stage of the run a loop is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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

/// How a connection ended; each counts differently.
#[derive(Debug)]
enum End {
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
    /// table, allocated once.
    sent_at: Vec<u64>,
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
    /// The stage of the run.
    phase: Phase,
    /// Whether new messages may be issued.
    sending: bool,
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
    /// When latencies and counters are next published.
    next_publish: u64,
    /// Latencies since the last publish.
    latency: Histogram<u64>,
    /// Connect latencies, all run.
    connect_latency: Histogram<u64>,
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
        let connect_interval_ns = plan.connect_interval_ns.map(|g| g.saturating_mul(threads));
        Worker {
            id,
            shared,
            live,
            epoch,
            poll,
            slots: (0..slot_count).map(|_| Slot::new()).collect(),
            sent_at: vec![0; slot_count * plan.pipeline as usize],
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            queue: (0..slot_count).collect(),
            budget,
            launched: 0,
            // Loops take turns: loop t's first connect waits t intervals.
            next_connect_at: plan.connect_interval_ns.map_or(0, |g| g.saturating_mul(id)),
            connect_interval_ns,
            connect_deadlines: VecDeque::new(),
            rate_timers: BinaryHeap::new(),
            phase: Phase::Run,
            sending: plan.mode != Mode::Idle,
            open: 0,
            connecting: 0,
            outstanding: 0,
            next_stall_check: 0,
            waiting_since: 0,
            next_publish: PUBLISH_EVERY_NS,
            latency: new_histogram(),
            connect_latency: new_histogram(),
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
            // Echoes are timed at the moment the kernel reported them.
            let turn = self.now();
            for event in events.iter() {
                let token = event.token();
                if token == WAKER || token.0 >= self.slots.len() {
                    continue;
                }
                // Data and FIN can arrive in one event, and urgent data
                // stops a read at its mark: then a short read does not mean
                // drained, and the reads after it must still be made (see
                // `read`).
                let closing = event.is_read_closed() || event.is_error() || event.is_priority();
                let readable = event.is_readable() || closing;
                self.drive(token.0, readable, closing, turn);
            }
        }
        self.publish_latency();
        self.publish_counters();
        Outcome {
            counts: self.counts,
            samples: self.samples,
            connect_latency: self.connect_latency,
            interrupted,
        }
    }

    /// Whether this loop has nothing left to do.
    fn finished(&self) -> bool {
        let nothing_left =
            self.connecting == 0 && self.open == 0 && (self.queue.is_empty() || self.budget == 0);
        match self.phase {
            // Idle mode moves on to Hold instead (see `on_timers`).
            Phase::Run => self.plan.mode != Mode::Idle && nothing_left,
            Phase::Hold { .. } => self.open == 0,
            Phase::Verify | Phase::Drain { .. } => nothing_left,
        }
    }

    /// The earliest time something is due, for the `poll` timeout.
    fn next_wake(&self, now: u64) -> u64 {
        let mut wake = self.next_publish;
        if self.phase == Phase::Run && self.budget > 0 && !self.queue.is_empty() {
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
            Phase::Run => {
                if let Some(deadline) = self.plan.deadline {
                    wake = wake.min(deadline);
                }
            }
            Phase::Hold { until } | Phase::Drain { until } => wake = wake.min(until),
            Phase::Verify => {}
        }
        wake
    }

    /// Fires whatever is due: connect timeouts, open-loop sends, paced
    /// connects, the publish tick, the stall watchdog and phase changes.
    fn on_timers(&mut self, now: u64) {
        while let Some(&(deadline, s, generation)) = self.connect_deadlines.front() {
            if deadline > now {
                break;
            }
            self.connect_deadlines.pop_front();
            let slot = &self.slots[s];
            if slot.generation == generation && slot.state == State::Connecting {
                let message = format!(
                    "connect {}: no answer within {:?}",
                    self.plan.addr,
                    Duration::from_nanos(self.plan.connect_timeout_ns)
                );
                self.end(s, End::Failed(FailReason::Timeout, message));
            }
        }

        while let Some(&Reverse((at, s, generation))) = self.rate_timers.peek() {
            if at > now {
                break;
            }
            self.rate_timers.pop();
            let slot = &mut self.slots[s];
            if slot.generation == generation && slot.state == State::Open {
                slot.timer_armed = false;
                self.pump(s);
            }
        }

        if self.phase == Phase::Run {
            let mut started = 0;
            while started < MAX_CONNECTS_PER_TURN && self.budget > 0 {
                if self.connect_interval_ns.is_some() && self.next_connect_at > now {
                    break;
                }
                let Some(s) = self.queue.pop_front() else {
                    break;
                };
                if let Some(interval) = self.connect_interval_ns {
                    self.next_connect_at = self.next_connect_at.saturating_add(interval);
                }
                self.start_connect(s, now);
                started += 1;
            }
        }

        if now >= self.next_publish {
            self.publish_latency();
            self.next_publish = now + PUBLISH_EVERY_NS;
        }

        if now >= self.next_stall_check {
            self.next_stall_check = now.saturating_add(self.stall_check_every());
            self.end_stalled(now, false);
        }

        match self.phase {
            Phase::Run => {
                if self.plan.deadline.is_some_and(|d| now >= d) {
                    self.begin_drain(now);
                } else if self.plan.mode == Mode::Idle
                    && self.connecting == 0
                    && (self.queue.is_empty() || self.budget == 0)
                {
                    self.phase = Phase::Hold {
                        until: now.saturating_add(self.plan.hold_ns),
                    };
                }
            }
            Phase::Hold { until } if now >= until => self.begin_verify(),
            Phase::Drain { until } if now >= until => self.end_stalled(now, true),
            _ => {}
        }
    }

    /// Starts connecting slot `s` as the next connection of this loop.
    fn start_connect(&mut self, s: usize, now: u64) {
        self.budget -= 1;
        let index = self.id + self.launched * self.plan.threads;
        self.launched += 1;
        let quota = self.plan.quota(index);
        let slot = &mut self.slots[s];
        slot.index = index;
        slot.start = Payload::start_of(index);
        slot.quota = quota;
        slot.issued = 0;
        slot.done = 0;
        slot.sent = 0;
        slot.received = 0;
        slot.timer_armed = false;
        slot.writable = true;
        slot.connect_started = now;
        self.counts.attempted += 1;

        let sources = &self.plan.source_addrs;
        let source =
            (!sources.is_empty()).then(|| sources[(index % sources.len() as u64) as usize]);
        let mut stream = match conn::start(self.plan.addr, source) {
            Ok(stream) => stream,
            Err(e) => return self.end(s, End::Failed(e.reason, e.message)),
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(s), rules::interest(true))
        {
            return self.end(s, End::Failed(FailReason::Other, format!("register: {e}")));
        }
        let slot = &mut self.slots[s];
        slot.stream = Some(stream);
        slot.state = State::Connecting;
        self.connecting += 1;
        self.connect_deadlines.push_back((
            now.saturating_add(self.plan.connect_timeout_ns),
            s,
            slot.generation,
        ));
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

    /// A connecting socket became ready: did the connect succeed?
    fn finish_connect(&mut self, s: usize, turn: u64) {
        let Some(stream) = self.slots[s].stream.as_ref() else {
            return;
        };
        // mio's recipe: an error first, then "connected" means a peer address.
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected || conn::in_progress(&e) => {
                    Ok(false)
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(false) => {} // Not yet: a spurious event.
            Err(e) => {
                let message = format!("connect {}: {e}", self.plan.addr);
                self.end(s, End::Failed(FailReason::of(&e), message));
            }
            Ok(true) => {
                self.connecting -= 1;
                self.open += 1;
                self.counts.established += 1;
                let plan = &self.plan;
                let slot = &mut self.slots[s];
                slot.state = State::Open;
                self.connect_latency
                    .saturating_record(turn.saturating_sub(slot.connect_started).max(1));
                if let Some(interval) = plan.rate_interval_ns {
                    // Spread the connections' schedules evenly over one interval.
                    let phase = u128::from(interval) * u128::from(slot.index % plan.connections)
                        / u128::from(plan.connections);
                    slot.rate_origin = turn.saturating_add(phase as u64);
                }
                self.pump(s);
            }
        }
    }

    /// Reads slot `s` until drained, verifying and timing the echoes.
    /// `unproven`: the event said a short read proves nothing
    /// ([`rules::short_read_unproven`]), so read on until `WouldBlock` or
    /// the end of stream itself. Returns whether the connection is still
    /// open.
    fn read(&mut self, s: usize, unproven: bool, turn: u64) -> bool {
        let Worker {
            plan,
            slots,
            sent_at,
            buf,
            latency,
            counts,
            outstanding,
            ..
        } = self;
        let slot = &mut slots[s];
        let k = plan.pipeline;
        let base = s * k as usize;
        let ending: Option<End> = loop {
            let Some(stream) = slot.stream.as_mut() else {
                return false;
            };
            match stream.read(buf) {
                Ok(0) => {
                    break Some(End::Unexpected(format!(
                        "read {}: closed by the server with {} of {} sent bytes echoed",
                        plan.addr, slot.received, slot.sent
                    )));
                }
                Ok(n) => {
                    let got = &buf[..n];
                    if slot.received + n as u64 > slot.sent {
                        break Some(End::Verification(format!(
                            "connection {}: {} bytes echoed but only {} sent",
                            slot.index,
                            slot.received + n as u64,
                            slot.sent
                        )));
                    }
                    if let Some((i, want)) =
                        plan.payload.first_mismatch(slot.start, slot.received, got)
                    {
                        break Some(End::Verification(format!(
                            "connection {}: stream byte {} (message {}, byte {} of it) \
                             expected 0x{want:02x}, got 0x{:02x}",
                            slot.index,
                            slot.received + i as u64,
                            (slot.received + i as u64) / plan.message_size,
                            (slot.received + i as u64) % plan.message_size,
                            got[i]
                        )));
                    }
                    slot.received += n as u64;
                    counts.bytes += n as u64;
                    slot.last_progress = turn;
                    let complete = slot.received / plan.message_size;
                    while slot.done < complete {
                        let sent = sent_at[base + (slot.done % k) as usize];
                        latency.saturating_record(turn.saturating_sub(sent).max(1));
                        slot.done += 1;
                        *outstanding -= 1;
                        counts.messages += 1;
                    }
                    // Finished (the caller closes it), or drained.
                    if slot.done >= slot.quota || rules::read_proves_drained(n, buf.len(), unproven)
                    {
                        break None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(End::Unexpected(format!("read {}: {e}", plan.addr))),
            }
        };
        match ending {
            None => true,
            Some(how) => {
                self.end(s, how);
                false
            }
        }
    }

    /// Closes slot `s` if it is finished; otherwise issues what it may send
    /// and writes what is pending, adjusting WRITABLE interest.
    fn pump(&mut self, s: usize) {
        let draining = matches!(self.phase, Phase::Drain { .. });
        let slot = &self.slots[s];
        if slot.done >= slot.quota || (draining && slot.outstanding() == 0) {
            return self.end(s, End::Done);
        }
        if self.sending {
            self.issue(s);
        }
        let pending = match self.flush(s) {
            Ok(pending) => pending,
            Err(e) => {
                let message = format!("write {}: {e}", self.plan.addr);
                return self.end(s, End::Unexpected(message));
            }
        };
        let Worker { slots, poll, .. } = self;
        let slot = &mut slots[s];
        if let Some(stream) = slot.stream.as_mut() {
            let registry = poll.registry();
            if let Err(e) =
                rules::update_interest(registry, stream, Token(s), &mut slot.writable, pending)
            {
                self.end(s, End::Unexpected(format!("reregister: {e}")));
            }
        }
    }

    /// Hands slot `s` as many new messages as its window (pipeline), its
    /// quota and, in the open loop, its schedule allow.
    fn issue(&mut self, s: usize) {
        let now = self.now();
        let Worker {
            plan,
            slots,
            sent_at,
            rate_timers,
            outstanding,
            ..
        } = self;
        let slot = &mut slots[s];
        let k = plan.pipeline;
        let base = s * k as usize;
        while slot.issued < slot.quota && slot.issued < slot.done + k {
            let stamp = match plan.rate_interval_ns {
                None => now,
                Some(interval) => {
                    let due = slot
                        .rate_origin
                        .saturating_add(slot.issued.saturating_mul(interval));
                    if due > now.saturating_add(LOOKAHEAD_NS) {
                        if !slot.timer_armed {
                            rate_timers.push(Reverse((due - LOOKAHEAD_NS, s, slot.generation)));
                            slot.timer_armed = true;
                        }
                        break;
                    }
                    // Late (the window was full, or we were busy): timed from
                    // the schedule, so the delay counts against the server.
                    due.min(now)
                }
            };
            if slot.issued == slot.done {
                // Nothing was in flight: the wait for an echo starts now.
                slot.last_progress = now;
            }
            sent_at[base + (slot.issued % k) as usize] = stamp;
            slot.issued += 1;
            *outstanding += 1;
        }
    }

    /// Writes slot `s`'s pending stream bytes straight from the payload
    /// table. Returns whether some are still pending (the socket is full).
    fn flush(&mut self, s: usize) -> io::Result<bool> {
        let plan = &self.plan;
        let slot = &mut self.slots[s];
        let Some(stream) = slot.stream.as_mut() else {
            return Ok(false);
        };
        let target = slot.issued * plan.message_size;
        while slot.sent < target {
            let len = (target - slot.sent).min(PERIOD as u64) as usize;
            let n =
                rules::write_until_full(&*stream, plan.payload.slice(slot.start, slot.sent, len))?;
            slot.sent += n as u64;
            if n < len {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Closes slot `s` and counts how it ended; in churn mode, queues the
    /// slot for its next connection.
    fn end(&mut self, s: usize, how: End) {
        let slot = &mut self.slots[s];
        let was = slot.state;
        slot.stream = None;
        slot.state = State::Closed;
        slot.generation = slot.generation.wrapping_add(1);
        slot.timer_armed = false;
        self.outstanding -= slot.outstanding();
        let (done, received) = (slot.done, slot.received);
        match was {
            State::Connecting => self.connecting -= 1,
            State::Open => self.open -= 1,
            State::Queued | State::Closed => {}
        }
        let counts = &mut self.counts;
        let samples = &mut self.samples;
        let churn_again = match how {
            End::Done => {
                if self.plan.mode == Mode::Churn && done > 0 {
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
        };
        if churn_again
            && self.plan.mode == Mode::Churn
            && self.phase == Phase::Run
            && self.budget > 0
        {
            self.slots[s].state = State::Queued;
            self.queue.push_back(s);
        }
    }

    /// How often the stall watchdog looks: often enough that a stall is
    /// seen within a quarter of `--echo-timeout` of happening.
    fn stall_check_every(&self) -> u64 {
        (self.plan.echo_timeout_ns / 4).clamp(1_000_000, PUBLISH_EVERY_NS)
    }

    /// Ends every open connection that is owed an echo and has received no
    /// byte of it for `--echo-timeout`: stalled. With `run_over` (the drain
    /// after a timed run has run out), the others owed an echo end too, as
    /// unfinished: still progressing, not stalled.
    fn end_stalled(&mut self, now: u64, run_over: bool) {
        let timeout = self.plan.echo_timeout_ns;
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
                self.end(s, End::Stalled(message));
            } else if run_over {
                let message = format!("{story}: still echoing when the drain ended");
                self.end(s, End::Unfinished(message));
            }
        }
    }

    /// A timed run is over: stop sending and connecting; close what has
    /// nothing in flight, and let the rest drain for up to `--echo-timeout`.
    fn begin_drain(&mut self, now: u64) {
        self.phase = Phase::Drain {
            until: now.saturating_add(self.plan.echo_timeout_ns),
        };
        self.sending = false;
        self.never_attempted();
        for s in 0..self.slots.len() {
            let slot = &self.slots[s];
            match slot.state {
                State::Connecting => self.end(s, End::Aborted),
                State::Open if slot.outstanding() == 0 => self.end(s, End::Done),
                _ => {}
            }
        }
    }

    /// Idle mode: the hold is over; send one message on every survivor.
    fn begin_verify(&mut self) {
        self.phase = Phase::Verify;
        self.sending = true;
        self.counts.idle_held = self.open as u64;
        for s in 0..self.slots.len() {
            if self.slots[s].state == State::Open {
                self.pump(s);
            }
        }
    }

    /// Gives up on the connections still waiting for their turn to connect
    /// (load and idle mode: each is a connection the run never tested).
    fn never_attempted(&mut self) {
        let queued = std::mem::take(&mut self.queue);
        if self.plan.mode != Mode::Churn {
            self.counts.never_attempted += queued.len() as u64;
        }
        for s in queued {
            self.slots[s].state = State::Closed;
        }
    }

    /// Ctrl-C: close everything now.
    fn stop_all(&mut self) {
        self.never_attempted();
        for s in 0..self.slots.len() {
            match self.slots[s].state {
                State::Connecting => self.end(s, End::Aborted),
                State::Open => self.end(s, End::Cut),
                State::Queued | State::Closed => {}
            }
        }
    }

    /// Folds the latencies recorded since the last call into the shared
    /// histogram.
    fn publish_latency(&mut self) {
        if self.latency.is_empty() {
            return;
        }
        let mut shared = self
            .shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Same bounds on both sides, so adding cannot fail.
        let _ = shared.add(&self.latency);
        drop(shared);
        self.latency.reset();
    }

    /// Mirrors this loop's counters into its `Live` for the status line.
    fn publish_counters(&self) {
        let live = &self.live;
        let c = &self.counts;
        live.up.store(self.open as u64, Ordering::Relaxed);
        let waiting = if self.outstanding > 0 {
            self.waiting_since
        } else {
            0
        };
        live.waiting_since.store(waiting, Ordering::Relaxed);
        live.attempted.store(c.attempted, Ordering::Relaxed);
        live.messages.store(c.messages, Ordering::Relaxed);
        live.bytes.store(c.bytes, Ordering::Relaxed);
        live.errors.store(
            c.failed_total() + c.unexpected_closes + c.stalled + c.verification_errors,
            Ordering::Relaxed,
        );
    }
}
