//! `--udp`: the UDP engine of a loop (`engine.rs` is the loop itself): a
//! share of the client sockets, driven with the same readiness technique
//! as the TCP engine (`tcp.rs`).
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
//!   elsewhere one `send_to` each (`udp/wire.rs`, over `udp/batch.rs` or
//!   `udp/portable.rs`). A send that would block
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

pub mod datagram;
mod expiry;
mod flow;
mod icmp;
mod jitter;
mod open;
mod report;
mod traffic;
mod wire;

#[cfg(linux_batch)]
mod batch;
#[cfg(not(linux_batch))]
mod portable;

/// This platform's socket calls: `batch.rs` (Linux's epoll) and
/// `portable.rs` (everywhere else) offer the same functions; the switch
/// between them (`linux_batch`, named in `build.rs`) is written once, here.
#[cfg(linux_batch)]
use batch as platform;
#[cfg(not(linux_batch))]
use portable as platform;

use mio::event::Event;

use crate::engine::{Core, Engine};

use self::datagram::Shape;
use self::flow::Flow;

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

/// The UDP side of one loop: its sockets and their datagrams.
#[derive(Debug)]
pub struct Udp {
    /// The sockets; the index is the token.
    flows: Vec<Flow>,
    /// The datagrams' size and header.
    shape: Shape,
    /// Where the loop receives: `None` only while a receive is using it.
    inbox: Option<platform::Inbox>,
    /// The loop's one send buffer: a burst of datagrams.
    out: Box<[u8]>,
    /// Datagrams a socket issues and sends together (`platform::burst`).
    burst: usize,
    /// Whether a burst may go as one GSO message: off for good once the
    /// kernel refuses one (and always off where calls are not batched).
    gso: bool,
    /// Sockets whose drain the receive budget stopped: served next turn.
    ready: Vec<usize>,
    /// The stage of the run.
    stage: Stage,
    /// Sockets not done yet.
    active: usize,
    /// Sockets open now.
    open: usize,
    /// When the expiry look is next due.
    next_expiry: u64,
    /// `--stages`: the active count the sockets were last started up to
    /// (a socket that comes into the count is pumped once to begin).
    started_below: u64,
}

/// `--stages`: how often a loop looks whether the count has risen.
const STAGE_TICK_NS: u64 = 10_000_000;

impl Udp {
    /// The sockets of the loop on `core`, not yet opened.
    pub fn new(core: &Core) -> Self {
        let plan = &core.plan;
        let burst = platform::burst(plan.message_size, plan.pipeline);
        let flows = (0..core.share() as u64)
            .map(|i| {
                let index = core.id + i * plan.threads;
                let start = crate::payload::Payload::start_of(index);
                Flow::new(index, start, plan.quota(index), plan.udp_window)
            })
            .collect();
        Udp {
            flows,
            shape: Shape::new(plan.message_size as usize),
            inbox: Some(platform::inbox()),
            out: vec![0; burst * plan.message_size as usize].into_boxed_slice(),
            burst,
            gso: burst > 1,
            ready: Vec::new(),
            stage: Stage::Run,
            active: 0,
            open: 0,
            next_expiry: 0,
            started_below: 0,
        }
    }

    /// `--stages`: starts the sockets that came into the count since the
    /// last look, their open-loop schedule from now (not from the start,
    /// which would make every datagram missed meanwhile late).
    fn start_risen(&mut self, core: &mut Core, now: u64) {
        let (below, was) = (core.active, self.started_below);
        self.started_below = below;
        if below <= was || self.stage != Stage::Run {
            return;
        }
        for s in 0..self.flows.len() {
            let index = self.flows[s].index;
            if (was..below).contains(&index) {
                if let Some(interval) = core.plan.rate_interval_ns {
                    let flow = &mut self.flows[s];
                    let behind = flow.next.saturating_mul(interval);
                    flow.rate_origin = core.send_origin(index, now).saturating_sub(behind);
                }
                self.pump(core, s);
            }
        }
    }
}

impl Engine for Udp {
    /// Opens the sockets and sends the first datagrams.
    fn start(&mut self, core: &mut Core) {
        self.open_all(core);
    }

    /// Fires whatever is due: the expiry look and the end of the run.
    fn on_timers(&mut self, core: &mut Core, now: u64) {
        self.expire(core, now);
        if core.plan.stages.is_some() {
            self.start_risen(core, now);
        }
        self.advance_stage(core, now);
    }

    /// Open loop: the socket's next send time has come.
    fn on_send_timer(&mut self, core: &mut Core, s: usize, _generation: u32) {
        self.flows[s].timer_armed = false;
        self.pump(core, s);
    }

    /// Done when every socket is.
    fn finished(&self, _core: &Core) -> bool {
        self.active == 0
    }

    /// The earliest time something is due, for the `poll` timeout.
    fn next_wake(&self, core: &Core, now: u64) -> u64 {
        let end = match self.stage {
            Stage::Run => {
                let deadline = core.plan.deadline.unwrap_or(u64::MAX);
                match core.plan.stages {
                    Some(_) => deadline.min(now.saturating_add(STAGE_TICK_NS)),
                    None => deadline,
                }
            }
            Stage::Drain { until } => until,
        };
        self.next_expiry.min(end)
    }

    /// Sockets the receive budget stopped last turn are served again.
    fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Serves the sockets the budget stopped last turn.
    fn begin_turn(&mut self, core: &mut Core, turn: u64) {
        for s in std::mem::take(&mut self.ready) {
            self.flows[s].queued = false;
            self.receive(core, s, turn);
            self.pump(core, s);
        }
    }

    /// Receives on the event's socket and sends what is due. An error or
    /// a writable event also gets a receive: the call says what happened,
    /// and costs at most one WouldBlock.
    fn on_event(&mut self, core: &mut Core, event: &Event, turn: u64) {
        let s = event.token().0;
        if s < self.flows.len() {
            self.receive(core, s, turn);
            self.pump(core, s);
        }
    }

    /// Sockets open; no stall watch (a datagram not back is lost).
    fn status(&self) -> (u64, u64) {
        (self.open as u64, 0)
    }

    /// Takes in the echoes waiting (unless interrupted) and closes.
    fn close(&mut self, core: &mut Core, interrupted: bool) {
        self.close_all(core, interrupted);
        for flow in &self.flows {
            flow.jitter.add_to(&mut core.counts.udp);
        }
    }
}
