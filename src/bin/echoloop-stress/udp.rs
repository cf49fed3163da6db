//! `--udp`: one event loop of UDP client sockets, driven with the same
//! readiness technique as the TCP loops (`worker.rs`).
//!
//! - Each loop is one `mio::Poll`; every socket is registered READABLE.
//!   On an event we receive until `WouldBlock` (on Linux's epoll, until a
//!   short `recvmmsg` batch) into the loop's buffers (64 KiB each: no
//!   datagram is ever truncated), within a budget per socket and turn; a
//!   socket the budget stopped is remembered and served again next turn
//!   without an event (rule 1 of `echoloop::rules`).
//! - Datagrams are built in one send buffer per loop from the payload table
//!   (`udp/datagram.rs`), a burst at a time: on Linux's epoll the
//!   datagrams a socket may send at once go out as one GSO message,
//!   elsewhere one `send_to` each (`udp/wire.rs`). A send that would block
//!   is not dropped — then the loss count would blame the server for our
//!   own sends — but kept due, and WRITABLE is registered only while any is
//!   held back (rule 3).
//! - Each socket keeps its datagrams in flight in a bounded ring with their
//!   send times (`udp/flow.rs`): `--pipeline` in flight, the next sent as
//!   one comes back (closed loop) or on its schedule (`--rate`, latency
//!   from the schedule as for TCP). One not back within `--echo-timeout`
//!   is lost, found by a look over the sockets (`udp/expiry.rs`) at most
//!   an eighth of the timeout after it expired; an echo after its timeout
//!   is late, whenever it is seen.
//! - Each echo is checked and sorted into echoed, late, duplicated and
//!   corrupted (reordered beside echoed); `udp/traffic.rs`.
//!
//! Timers (open-loop send times, the expiry look, the run deadline) feed
//! the `poll` timeout, as in the TCP loops.

mod datagram;
mod expiry;
mod flow;
mod icmp;
mod open;
mod report;
mod traffic;
mod wire;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::counts::{Counts, Samples};
use crate::live::Live;
use crate::plan::Plan;
use crate::record::LoopRecording;
use crate::worker::{Outcome, Shared, PUBLISH_EVERY_NS, WAKER};

use self::datagram::Shape;
use self::flow::Flow;

/// Events taken from the kernel per `poll`.
const EVENTS_PER_POLL: usize = 1024;

/// The ring entries of each socket for datagrams of `size` bytes and
/// `pipeline` in flight: a power of two, at least twice the pipeline and
/// 64; or why that pipeline cannot be told apart in datagrams so short.
pub fn window(size: u64, pipeline: u64) -> Result<usize, String> {
    let bits = Shape::new(size as usize).seq_bits();
    let ring = pipeline.saturating_mul(2).max(64).next_power_of_two();
    if bits >= 64 {
        return Ok(ring as usize);
    }
    let span = 1u64 << bits;
    if pipeline.saturating_mul(2) > span {
        return Err(format!(
            "--pipeline {pipeline}: {size}-byte datagrams carry their sequence number modulo \
             {span}, so at most {} may be in flight",
            span / 2
        ));
    }
    Ok(ring.min(span) as usize)
}

/// Where a UDP loop is in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sending.
    Run,
    /// A timed run is over: no new datagrams; waiting for those in flight
    /// to be echoed or lost.
    Drain {
        /// When every datagram still in flight has passed its timeout.
        until: u64,
    },
}

/// One UDP loop and everything it owns.
#[derive(Debug)]
pub struct UdpWorker {
    /// This loop's number; its sockets are `id`, `id + threads`, …
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
    /// The sockets; the index is the token.
    flows: Vec<Flow>,
    /// The datagrams' size and header.
    shape: Shape,
    /// Where the loop receives: `None` only while a receive is using it.
    inbox: Option<wire::Inbox>,
    /// The loop's one send buffer: a burst of datagrams.
    out: Box<[u8]>,
    /// Datagrams a socket issues and sends together (`wire::burst`).
    burst: usize,
    /// Whether a burst may go as one GSO message: off for good once the
    /// kernel refuses one (and always off where calls are not batched).
    gso: bool,
    /// Sockets whose drain the receive budget stopped: served next turn.
    ready: Vec<usize>,
    /// Open loop: (wake time, socket) of sockets waiting for their next
    /// send time, earliest first.
    rate_timers: BinaryHeap<Reverse<(u64, usize)>>,
    /// The stage of the run.
    stage: Stage,
    /// Sockets not done yet.
    active: usize,
    /// Sockets open now.
    open: usize,
    /// When the expiry look is next due.
    next_expiry: u64,
    /// What this loop timed, and when it publishes it to the timeline.
    rec: LoopRecording,
    /// What this loop counted.
    counts: Counts,
    /// First trouble of each kind.
    samples: Samples,
}

impl UdpWorker {
    /// A loop for thread `id`, with its sockets not yet opened.
    pub fn new(
        id: u64,
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        live: Arc<Live>,
        poll: Poll,
        epoch: Instant,
    ) -> Self {
        let threads = plan.threads;
        let burst = wire::burst(plan.message_size, plan.pipeline);
        let count = (plan.connections - id).div_ceil(threads) as usize;
        let flows = (0..count as u64)
            .map(|i| {
                let index = id + i * threads;
                let start = crate::payload::Payload::start_of(index);
                Flow::new(index, start, plan.quota(index), plan.udp_window)
            })
            .collect();
        UdpWorker {
            id,
            shared,
            live,
            epoch,
            poll,
            flows,
            shape: Shape::new(plan.message_size as usize),
            inbox: Some(wire::inbox()),
            out: vec![0; burst * plan.message_size as usize].into_boxed_slice(),
            burst,
            gso: burst > 1,
            ready: Vec::new(),
            rate_timers: BinaryHeap::new(),
            stage: Stage::Run,
            active: 0,
            open: 0,
            next_expiry: 0,
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
        self.open_all();
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut interrupted = false;
        loop {
            let now = self.now();
            if self.shared.stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            self.on_timers(now);
            if self.active == 0 {
                break;
            }
            self.publish_counters();
            let timeout = if self.plan.busy_poll || !self.ready.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.next_wake(now).saturating_sub(now))
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("echoloop-stress: poll: {e}");
                    break;
                }
            }
            self.dispatch(&events);
        }
        self.close_all(interrupted);
        self.rec.finish(&self.shared.timeline);
        self.publish_counters();
        Outcome {
            counts: self.counts,
            samples: self.samples,
            interrupted,
        }
    }

    /// Serves the sockets the budget stopped last turn, then each event's.
    fn dispatch(&mut self, events: &Events) {
        // Echoes are timed at the moment the kernel reported them.
        let turn = self.now();
        self.rec.tick(turn, &self.shared.timeline);
        for s in std::mem::take(&mut self.ready) {
            self.flows[s].queued = false;
            self.receive(s, turn);
            self.pump(s);
        }
        for event in events.iter() {
            let s = event.token().0;
            if event.token() == WAKER || s >= self.flows.len() {
                continue;
            }
            // An error or a writable event also gets a receive: the call
            // says what happened, and costs at most one WouldBlock.
            self.receive(s, turn);
            self.pump(s);
        }
    }

    /// The earliest time something is due, for the `poll` timeout.
    fn next_wake(&self, now: u64) -> u64 {
        let mut wake = self.rec.next_due().min(self.next_expiry);
        if let Some(Reverse((at, _))) = self.rate_timers.peek() {
            wake = wake.min(*at);
        }
        let end = match self.stage {
            Stage::Run => self.plan.deadline.unwrap_or(u64::MAX),
            Stage::Drain { until } => until,
        };
        wake.min(end).max(now)
    }

    /// Fires whatever is due: open-loop sends, the expiry look, the
    /// publish tick and the end of the run.
    fn on_timers(&mut self, now: u64) {
        self.rec.tick(now, &self.shared.timeline);
        self.fire_rate_timers(now);
        self.expire(now);
        self.advance_stage(now);
    }

    /// Mirrors this loop's counters into its `Live` for the status line.
    fn publish_counters(&self) {
        self.live.publish(&self.counts, self.open as u64, 0);
    }
}
