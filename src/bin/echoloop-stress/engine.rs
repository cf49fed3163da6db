//! The loop core every client loop runs on, whatever its transport: one
//! `mio::Poll` on its own thread, its clock, the plan, the shared contract
//! (`shared.rs`), its live counters, its recorder and counts, and the
//! open loop's send schedule and timers. [`run`] drives it; the transport
//! is an [`Engine`]: TCP connections (`tcp.rs`) or UDP sockets (`udp.rs`).
//!
//! A turn of the loop, top to bottom:
//!
//! 1. Ctrl-C? Then stop.
//! 2. Fire what is due: the publish tick, the open loop's send timers,
//!    then the engine's own (connect timeouts, expiry, phases).
//! 3. Nothing left to do? Then stop.
//! 4. Publish the counters for the status line.
//! 5. Sleep in `poll` until the earliest thing due (or not at all: with
//!    `--busy-poll`, or while the engine has work without an event).
//! 6. Hand the engine each event, timed at the moment `poll` returned.
//!
//! At the end the engine closes what is left, the recorder hands in its
//! last histograms, and the loop's counts go back to the main thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll};

use crate::counts::{Counts, Samples};
use crate::live::Live;
use crate::plan::Plan;
use crate::record::LoopRecording;
use crate::shared::{Outcome, Shared, LOOKAHEAD_NS, PUBLISH_EVERY_NS, WAKER};

/// Events taken from the kernel per `poll`.
const EVENTS_PER_POLL: usize = 1024;

/// What one loop owns besides its sockets, the same for every transport.
#[derive(Debug)]
pub struct Core {
    /// This loop's number; its sockets are `id`, `id + threads`, …
    pub id: u64,
    /// The run.
    pub plan: Arc<Plan>,
    /// State shared with the other loops and the main thread.
    pub shared: Arc<Shared>,
    /// Counters the status line reads.
    live: Arc<Live>,
    /// Time zero of the run, common to all loops.
    epoch: Instant,
    /// This loop's readiness queue.
    pub poll: Poll,
    /// Open loop: (wake time, socket, generation) of the sockets waiting
    /// for their next send time, earliest first. The generation tells a
    /// timer of a socket's earlier connection (TCP churn) from its own.
    rate_timers: BinaryHeap<Reverse<(u64, usize, u32)>>,
    /// What this loop timed, and when it publishes it to the timeline.
    pub rec: LoopRecording,
    /// What this loop counted.
    pub counts: Counts,
    /// `--warmup`: its counts when the warm-up ended (`None` until then,
    /// and without one).
    warm: Option<Counts>,
    /// `--stages`: connections numbered below this carry traffic now
    /// (`u64::MAX` without stages); set once a turn.
    pub active: u64,
    /// `--stages`: the stage the run is in.
    stage: usize,
    /// `--stages`: messages echoed in each stage so far.
    stage_messages: Vec<u64>,
    /// `--stages`: `counts.messages` when the current stage began.
    stage_mark: u64,
    /// First trouble of each kind.
    pub samples: Samples,
}

/// A transport's side of a loop: its sockets and what it does with them.
/// The core calls these in the order its turn lists (`engine.rs`).
pub trait Engine {
    /// Before the first turn (UDP opens its sockets; TCP connects as its
    /// timers say).
    fn start(&mut self, _core: &mut Core) {}
    /// Fires what of the engine's own is due at `now`.
    fn on_timers(&mut self, core: &mut Core, now: u64);
    /// The open loop's send timer of socket `s` (set in `generation`) fired.
    fn on_send_timer(&mut self, core: &mut Core, s: usize, generation: u32);
    /// Whether the loop has nothing left to do.
    fn finished(&self, core: &Core) -> bool;
    /// The earliest time the engine has something due.
    fn next_wake(&self, core: &Core, now: u64) -> u64;
    /// Whether it has work that needs no event (`poll` must not sleep).
    fn has_ready(&self) -> bool {
        false
    }
    /// Before the events of a turn that began at `turn`.
    fn begin_turn(&mut self, _core: &mut Core, _turn: u64) {}
    /// One readiness event, of a turn that began at `turn`.
    fn on_event(&mut self, core: &mut Core, event: &Event, turn: u64);
    /// For the status line: sockets open, and (while echoes are owed) when
    /// the longest-waiting one last made progress (0: none owed).
    fn status(&self) -> (u64, u64);
    /// The loop is over (`interrupted`: by Ctrl-C): closes what is left.
    fn close(&mut self, core: &mut Core, interrupted: bool);
}

impl Core {
    /// The core of loop `id`, nothing counted yet.
    pub fn new(
        id: u64,
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        live: Arc<Live>,
        poll: Poll,
        epoch: Instant,
    ) -> Self {
        Core {
            id,
            shared,
            live,
            epoch,
            poll,
            rate_timers: BinaryHeap::new(),
            rec: LoopRecording::new(
                id as usize,
                plan.interval_ns,
                PUBLISH_EVERY_NS,
                plan.warmup_ns,
            ),
            counts: Counts::default(),
            warm: None,
            active: if plan.stages.is_some() { 0 } else { u64::MAX },
            stage: 0,
            stage_messages: vec![0; plan.stages.as_ref().map_or(0, |s| s.0.len())],
            stage_mark: 0,
            samples: Samples::default(),
            plan,
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sockets this loop drives: `id`, `id + threads`, … below
    /// `--connections`.
    pub fn share(&self) -> usize {
        (self.plan.connections - self.id).div_ceil(self.plan.threads) as usize
    }

    /// Open loop: when message 0 of socket number `index` is due, if its
    /// schedule starts at `at`: the sockets' schedules spread evenly over
    /// one interval. (Closed loop: `at`; unused.)
    pub fn send_origin(&self, index: u64, at: u64) -> u64 {
        let Some(interval) = self.plan.rate_interval_ns else {
            return at;
        };
        let connections = self.plan.connections;
        let phase =
            u128::from(interval) * u128::from(index % connections) / u128::from(connections);
        at.saturating_add(phase as u64)
    }

    /// The time message `n` of socket `s` is timed from, if it may go out
    /// at `now`: in the closed loop `now`; in the open loop its schedule
    /// (`origin + n × interval`), or, if that is more than [`LOOKAHEAD_NS`]
    /// away, `None`, with a send timer set for it (once: `armed`).
    ///
    /// A late message is timed from its schedule, so the delay counts
    /// against the server; an early one (within the lookahead) from now.
    pub fn send_stamp(&mut self, now: u64, n: u64, timer: SendTimer<'_>) -> Option<u64> {
        let Some(interval) = self.plan.rate_interval_ns else {
            return Some(now);
        };
        let due = timer.origin.saturating_add(n.saturating_mul(interval));
        if due > now.saturating_add(LOOKAHEAD_NS) {
            if !*timer.armed {
                let wake = due - LOOKAHEAD_NS;
                self.rate_timers
                    .push(Reverse((wake, timer.socket, timer.generation)));
                *timer.armed = true;
            }
            return None;
        }
        Some(due.min(now))
    }

    /// Publishes what the recorder has due at `now`; at the end of the
    /// warm-up, keeps the counts so far (once a turn, not per message).
    fn tick(&mut self, now: u64) {
        if self.rec.tick(now, &self.shared.timeline) {
            self.warm = Some(self.counts.clone());
        }
        if let Some(stages) = &self.plan.stages {
            self.active = stages.target_at(now);
            let stage = stages.index_at(now);
            if stage != self.stage {
                self.close_stage();
                self.stage = stage;
                self.rec.begin_stage(stage, &self.shared.timeline);
            }
        }
    }

    /// `--stages`: adds the messages since the stage began to its count.
    fn close_stage(&mut self) {
        let messages = self.counts.messages - self.stage_mark;
        self.stage_mark = self.counts.messages;
        if let Some(count) = self.stage_messages.get_mut(self.stage) {
            *count += messages;
        }
    }

    /// `--stages`: whether the socket in position `s` of this loop (its
    /// token) may carry traffic now: whether its number over all loops is
    /// below the active count.
    pub fn active(&self, s: usize) -> bool {
        self.id + s as u64 * self.plan.threads < self.active
    }

    /// Fires the publish tick and every send timer due at `now`.
    fn on_timers(&mut self, engine: &mut impl Engine, now: u64) {
        self.tick(now);
        while let Some(&Reverse((at, s, generation))) = self.rate_timers.peek() {
            if at > now {
                break;
            }
            self.rate_timers.pop();
            engine.on_send_timer(self, s, generation);
        }
        engine.on_timers(self, now);
    }

    /// The earliest time something is due, for the `poll` timeout.
    fn next_wake(&self, engine: &impl Engine, now: u64) -> u64 {
        let mut wake = self.rec.next_due().min(engine.next_wake(self, now));
        if let Some(Reverse((at, _, _))) = self.rate_timers.peek() {
            wake = wake.min(*at);
        }
        wake
    }

    /// Mirrors this loop's counters into its `Live` for the status line.
    fn publish(&self, engine: &impl Engine) {
        let (up, waiting_since) = engine.status();
        self.live.publish(&self.counts, up, waiting_since);
    }
}

/// A socket's open-loop schedule, as [`Core::send_stamp`] needs it.
#[derive(Debug)]
pub struct SendTimer<'a> {
    /// When its message 0 is due.
    pub origin: u64,
    /// Its index in the loop (its token).
    pub socket: usize,
    /// Its generation, to tell its timers from an earlier connection's.
    pub generation: u32,
    /// Whether a send timer of it is set; set here when one is.
    pub armed: &'a mut bool,
}

/// Runs one loop, `engine` on `core`, to the end of the run (or Ctrl-C).
pub fn run(mut core: Core, mut engine: impl Engine) -> Outcome {
    engine.start(&mut core);
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut interrupted = false;
    loop {
        let now = core.now();
        if core.shared.stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        core.on_timers(&mut engine, now);
        if engine.finished(&core) {
            break;
        }
        core.publish(&engine);
        let timeout = if core.plan.busy_poll || engine.has_ready() {
            Duration::ZERO
        } else {
            Duration::from_nanos(core.next_wake(&engine, now).saturating_sub(now))
        };
        match core.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("echoloop-stress: poll: {e}");
                break;
            }
        }
        // Echoes are timed at the moment the kernel reported them.
        let turn = core.now();
        core.tick(turn);
        engine.begin_turn(&mut core, turn);
        for event in events.iter() {
            if event.token() != WAKER {
                engine.on_event(&mut core, event, turn);
            }
        }
    }
    engine.close(&mut core, interrupted);
    core.rec.finish(&core.shared.timeline);
    core.publish(&engine);
    core.close_stage();
    // A loop that ended within the warm-up measured nothing.
    let warmup =
        (core.plan.warmup_ns > 0).then(|| core.warm.take().unwrap_or_else(|| core.counts.clone()));
    Outcome {
        warmup,
        stages: core.stage_messages,
        counts: core.counts,
        samples: core.samples,
        interrupted,
    }
}
