//! The running loop: one thread, one [`Poll`](mio::Poll), every socket
//! registered with it; a turn is the numbered steps of [`EventLoop::turn`]
//! (the one place they are written out).
//!
//! `accept.rs` takes clients in (step 3), `proxied.rs` reads the PROXY
//! headers of a trusted balancer's connections before they are admitted,
//! `shutdown.rs` winds the loop down (step 5); the rest is here. The rules
//! every step follows are [`crate::rules`]; what the loop does with each
//! kind of error is the error policy (`server.rs`).
//!
//! A loop is built from what it owns alone (`part.rs`: its poll, sockets,
//! read buffer and counter writer) and a handle to what all loops share
//! ([`crate::shared`]); it knows nothing of the `Server` that built it.

mod accept;
mod part;
mod proxied;
mod shutdown;
mod tls;

pub use accept::ACCEPT_BACKOFF;
pub(crate) use part::{Bound, Part};

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::{Events, Poll};
use slab::Slab;

use crate::admission::{Admission, Rules};
use crate::connection::{Connection, Hints, Io, Status};
use crate::idle::IdleQueue;
use crate::logging::{context, Peers, Throttle};
use crate::metrics::{MetricsService, View};
use crate::pending::BufferPool;
use crate::shared::Shared;
use crate::stats::{Counter, Counters};
use crate::token::Source;
use crate::transport::ServerStream;
use crate::udp::{Udp, UdpEcho};
use crate::{rules, sys};

/// How many events one `poll` call may return. Larger batches amortise the
/// call over more events; 1,024 is the usual choice (Redis, nginx).
const EVENTS_CAPACITY: usize = 1024;

/// Output buffers kept for reuse by the pool (see [`BufferPool`]).
const SPARE_BUFFERS: usize = 64;

/// Why a connection was closed.
#[derive(Debug)]
enum Close {
    /// The peer shut down its side; everything was echoed.
    PeerDone,
    /// An I/O error (reset, broken pipe, …).
    Error(io::Error),
    /// No traffic for `--idle-timeout`.
    Idle,
    /// Still open when shutdown ended.
    Shutdown,
    /// Never admitted: its PROXY header failed, or named a client that was
    /// refused. Counted by the caller, as the refusal it is.
    Unadmitted,
}

/// The running loop's state.
#[derive(Debug)]
pub(crate) struct EventLoop {
    /// This loop's number: 0 holds the metrics endpoint and logs the
    /// counters, and where the kernel does not steer, holds the listeners.
    index: usize,
    /// Where loop 0 hands off: it has closed its listeners, and this loop
    /// has taken in the last clients it handed over (shutdown only).
    hand_off_over: bool,
    /// What every loop shares: configuration, shutdown flag, wakers, the
    /// readers of every counter slot.
    shared: Arc<Shared>,
    /// This loop's poll; every socket below is registered with it.
    poll: Poll,
    /// This loop's listeners (cleared when shutdown starts).
    listeners: Vec<part::Listener>,
    /// This loop's UDP sockets, with `--udp` (cleared when shutdown starts).
    udp: Vec<Udp>,
    /// The only writer of this loop's counter slot.
    counters: Counters,
    /// Events filled by each `poll`, reused every turn.
    events: Events,
    /// Open connections, plain or TLS; the slab key is the connection's
    /// `Token`.
    conns: Slab<Connection<ServerStream>>,
    /// Connections whose read budget ran out with input left: served again
    /// next turn, in order, so no one is starved and nothing is forgotten.
    read_again: VecDeque<usize>,
    /// Connections by last activity, when `--idle-timeout` is set.
    idle: Option<IdleQueue>,
    /// TLS connections still in their handshake, oldest first, against
    /// `--tls-handshake-timeout`.
    handshakes: tls::Handshakes,
    /// The one read buffer, lent to each connection in turn.
    buf: Vec<u8>,
    /// Pending-output buffers for reuse.
    pool: BufferPool,
    /// Accepting is paused until then after a listener error.
    accept_paused_until: Option<Instant>,
    /// When to log the counters next, with `--stats-interval`.
    next_stats: Option<Instant>,
    /// Set once shutdown starts: when to stop waiting for flushes.
    shutdown_deadline: Option<Instant>,
    /// During shutdown, where the OS tells us what the peer has
    /// acknowledged: when to look again for connections that owe nothing.
    next_linger_check: Option<Instant>,
    /// Rate limit for "refused" warnings.
    refused_warnings: Throttle,
    /// Rate limit for accept-error warnings.
    accept_warnings: Throttle,
    /// The time at the start of this turn's work: one clock read per turn.
    now: Instant,
    /// Peer addresses for debug log lines, beside the slab.
    peers: Peers,
    /// What the UDP sockets share, with `--udp`.
    udp_echo: Option<UdpEcho>,
    /// Who may connect: `--allow`, `--deny`, `--max-per-source`.
    admission: Admission,
    /// `--metrics`: the HTTP endpoint and its connections.
    metrics: Option<MetricsService>,
    /// `--proxy-protocol`: the balancers trusted to send a PROXY header,
    /// and the connections whose header is still being read.
    balancers: Option<proxied::Balancers>,
}

impl EventLoop {
    /// Loop `index`, which serves `part`, before its first turn.
    pub(crate) fn new(part: Part, shared: Arc<Shared>, index: usize) -> EventLoop {
        let Part {
            poll,
            listeners,
            udp,
            metrics,
            read_buffer,
            counters,
        } = part;
        let config = &shared.config;
        EventLoop {
            index,
            hand_off_over: false,
            events: Events::with_capacity(EVENTS_CAPACITY),
            conns: Slab::new(),
            read_again: VecDeque::new(),
            idle: config.idle_timeout.map(IdleQueue::new),
            handshakes: tls::Handshakes::new(config),
            buf: read_buffer,
            pool: BufferPool::new(SPARE_BUFFERS),
            accept_paused_until: None,
            // One line for the server's totals, from loop 0.
            next_stats: (config.stats_interval)
                .filter(|_| index == 0)
                .map(|every| Instant::now() + every),
            shutdown_deadline: None,
            next_linger_check: None,
            refused_warnings: Throttle::default(),
            accept_warnings: Throttle::default(),
            now: Instant::now(),
            peers: Peers::new(),
            udp_echo: config
                .udp
                .then(|| UdpEcho::new(Rules::new(&config.allow, &config.deny), config.udp_rate)),
            admission: Admission::new(&config.allow, &config.deny, config.max_per_source),
            balancers: proxied::Balancers::new(config),
            metrics: metrics
                .map(|(listener, addr)| MetricsService::new(listener, addr, config.reads_per_turn)),
            poll,
            listeners,
            udp,
            counters,
            shared,
        }
    }

    /// One turn of the loop. Returns `false` when the server has stopped.
    pub(crate) fn turn(&mut self) -> io::Result<bool> {
        // 1. Wait for readiness, or until the nearest deadline. Never block
        //    while work is left over from the last turn.
        let timeout = self.poll_timeout();
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(true);
            }
            return Err(context("poll", e));
        }
        self.now = Instant::now();

        // Connections cut short by their budget in an earlier turn; those cut
        // short in this one wait for the next, behind everyone else.
        let carried_over = self.read_again.len();

        // 2. Dispatch: serve each connection an event names; note which
        //    listeners and UDP sockets are ready.
        self.dispatch();

        // 3. The sockets every client comes in by: accept until WouldBlock,
        //    echo datagrams until WouldBlock — each within a budget per
        //    socket per turn; take in clients loop 0 handed to this loop.
        if self.shutdown_deadline.is_none() && self.accept_paused_until.is_none() {
            for i in 0..self.listeners.len() {
                if self.listeners[i].ready {
                    self.accept(i, self.shared.config.accepts_per_turn);
                }
            }
        }
        self.take_handed();
        self.echo_datagrams();
        if let Some(metrics) = self.metrics.as_mut().filter(|m| m.ready) {
            metrics.accept(self.poll.registry(), self.now);
        }

        // 4. Serve again those with input left over from an earlier turn.
        for _ in 0..carried_over {
            let Some(key) = self.read_again.pop_front() else {
                break;
            };
            if let Some(conn) = self.conns.get_mut(key) {
                conn.queued = false;
                self.serve(key, Hints::default());
            }
        }
        if self.metrics.as_ref().is_some_and(MetricsService::cut_short) {
            self.scrape(None);
        }

        // 5. Timers: idle connections, accept back-off, stats; shutdown.
        self.timers();
        Ok(self.shutdown_step())
    }

    /// Step 2: each event's token says what it is for. Listener and UDP
    /// events only mark the socket ready (step 3 serves it); connection
    /// events are served at once. `events` is taken out for the loop so
    /// `self` stays free to borrow.
    fn dispatch(&mut self) {
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match Source::of(event.token()) {
                // Shutdown (step 5), clients handed to us (step 3): both
                // looked at every turn.
                Source::Waker => {}
                // None once shutdown closed the listeners (and UDP sockets).
                Source::Listener(i) => {
                    if let Some(listener) = self.listeners.get_mut(i) {
                        listener.ready = true;
                    }
                }
                Source::Udp(i) => {
                    if let Some(udp) = self.udp.get_mut(i) {
                        udp.ready = true;
                    }
                }
                Source::MetricsListener => {
                    if let Some(metrics) = &mut self.metrics {
                        metrics.ready = true;
                    }
                }
                Source::Metrics(key) => self.scrape(Some(key)),
                Source::Connection(key) => {
                    // Closed and error flags are hints: serving reads or
                    // writes, and the call itself tells what happened.
                    let hints = Hints {
                        readable: event.is_readable(),
                        writable: event.is_writable()
                            || event.is_write_closed()
                            || event.is_error(),
                        short_read_unproven: rules::short_read_unproven(event),
                    };
                    self.serve(key, hints);
                }
            }
        }
        self.events = events;
    }

    /// Steps 2 and 4, metrics: the connection an event names (`Some`), or
    /// those a budget cut short in an earlier turn (`None`), answered from
    /// the counters as they are now.
    fn scrape(&mut self, key: Option<usize>) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let view = View {
            per_loop: self.shared.per_loop(),
            config: &self.shared.config,
            max_connections: self.shared.max_connections,
            shutting_down: self.shutdown_deadline.is_some() || self.shared.unhealthy(),
        };
        let registry = self.poll.registry();
        match key {
            Some(key) => metrics.serve(key, registry, &view, self.now),
            None => metrics.serve_again(registry, &view, self.now),
        }
    }

    /// Step 3, UDP: every ready socket receives and echoes within its
    /// budget (see [`crate::udp`]).
    fn echo_datagrams(&mut self) {
        let Some(echo) = &mut self.udp_echo else {
            return;
        };
        let counters = &self.counters;
        for udp in &mut self.udp {
            if udp.due(self.now) {
                echo.serve(udp, counters, self.now);
            }
        }
    }

    /// Step 5, the timers: close idle connections, end an accept pause, log
    /// the counters when due.
    fn timers(&mut self) {
        self.expire_idle();
        self.expire_headers();
        self.expire_handshakes();
        if let Some(metrics) = &mut self.metrics {
            metrics.expire(self.now);
        }
        if self
            .accept_paused_until
            .is_some_and(|until| self.now >= until)
        {
            // Retry: the backlog still holds whoever we could not take.
            self.accept_paused_until = None;
            self.listeners.iter_mut().for_each(|l| l.ready = true);
        }
        if let Some(at) = self.next_stats.filter(|&at| self.now >= at) {
            info!("stats: {}", self.shared.stats());
            self.next_stats = self
                .shared
                .config
                .stats_interval
                .map(|every| at.max(self.now) + every);
        }
    }

    /// How long step 1 may block: zero while work is left over, else until
    /// the nearest deadline, or forever.
    fn poll_timeout(&self) -> Option<Duration> {
        let accepting = self.shutdown_deadline.is_none() && self.accept_paused_until.is_none();
        let waiting_for_loop_0 = self.shutdown_deadline.is_some() && self.waits_for_loop_0();
        if !self.read_again.is_empty()
            || (self.shared).needs_turn(self.index, self.shutdown_deadline.is_some())
            || (waiting_for_loop_0 && self.shared.accepting_over())
            || (accepting && self.listeners.iter().any(|l| l.ready))
            || self.udp.iter().any(|u| u.ready && u.wake_at().is_none())
            || self.metrics.as_ref().is_some_and(MetricsService::busy)
        {
            return Some(Duration::ZERO);
        }
        let udp_rest = self.udp.iter().filter_map(Udp::wake_at).min();
        [
            self.idle.as_ref().and_then(IdleQueue::next_deadline),
            self.handshakes.next_deadline(),
            self.accept_paused_until,
            self.next_stats,
            self.shutdown_deadline,
            self.next_linger_check,
            udp_rest,
            self.metrics
                .as_ref()
                .and_then(MetricsService::next_deadline),
            self.balancers
                .as_ref()
                .and_then(proxied::Balancers::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Serves connection `key` (read, echo, buffer, flush) and acts on the
    /// outcome: queue it, close it, or leave it waiting.
    fn serve(&mut self, key: usize, hints: Hints) {
        // A stale event for a connection closed earlier this turn: nothing to do.
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut io = Io {
            buf: &mut self.buf,
            pool: &mut self.pool,
            counters: &self.counters,
            max_pending: self.shared.config.max_pending,
            reads_per_turn: self.shared.config.reads_per_turn,
            reading: self.shutdown_deadline.is_none(),
        };
        let token = Source::Connection(key).token();
        match conn.serve(hints, self.poll.registry(), token, &mut io) {
            Ok((status, moved)) => {
                self.handshakes.progress(key, conn, &self.counters);
                if moved {
                    if let Some(idle) = &mut self.idle {
                        idle.touch(key, self.now);
                    }
                }
                match status {
                    Status::Waiting => {}
                    Status::ReadAgain => {
                        if !conn.queued {
                            conn.queued = true;
                            self.read_again.push_back(key);
                        }
                    }
                    Status::Finished if self.shutdown_deadline.is_some() => {
                        self.close(key, Close::Shutdown)
                    }
                    Status::Finished => self.close(key, Close::PeerDone),
                    Status::Header { client, header } => self.admit_proxied(key, client, header),
                    Status::BadHeader(why) => self.refuse_header(key, why),
                }
            }
            Err(e) => self.close(key, Close::Error(e)),
        }
    }

    /// Closes connection `key`, counting and logging why.
    fn close(&mut self, key: usize, why: Close) {
        let mut conn = self.conns.remove(key);
        if let Some(idle) = &mut self.idle {
            idle.remove(key);
        }
        let error = matches!(why, Close::Error(_));
        (self.handshakes).closed(key, &mut conn, error, &self.counters);
        self.admission.closed(key);
        self.shared.release();
        let why = if conn.awaits_header() {
            // Never admitted, so not a close: a header that did not come.
            self.header_ended(key);
            if !matches!(why, Close::Unadmitted) {
                self.counters.add(Counter::ProxyIncomplete, 1);
            }
            Close::Unadmitted
        } else {
            why
        };
        let counters = &self.counters;
        let peer = self.peers.get(key);
        let owed = conn.pending_len();
        // Count first, close the socket last: whatever a client observes
        // after its end of stream (a test reading the stats, say) is
        // already counted.
        match why {
            Close::PeerDone => {
                counters.add(Counter::ClosedByPeer, 1);
                debug!("conn {key} ({peer}): closed by peer, all echoed");
            }
            Close::Error(e) if sys::is_peer_gone(&e) => {
                counters.add(Counter::Vanished, 1);
                debug!(
                    "conn {key} ({peer}): peer stopped answering: {e} ({owed} bytes not echoed)"
                );
            }
            Close::Error(e) => {
                counters.add(Counter::Errored, 1);
                debug!("conn {key} ({peer}): closed on error: {e} ({owed} bytes not echoed)");
            }
            Close::Idle => {
                counters.add(Counter::TimedOut, 1);
                debug!("conn {key} ({peer}): closed after idle timeout");
            }
            Close::Shutdown => {
                counters.add(Counter::ShutDown, 1);
                debug!("conn {key} ({peer}): closed by shutdown ({owed} bytes not echoed)");
            }
            Close::Unadmitted => debug!("conn {key} ({peer}): closed, never admitted"),
        }
        self.set_active();
        conn.close(&mut self.pool, &self.counters);
    }

    /// Updates the `active` gauge: the connections admitted and open (those
    /// still reading a PROXY header are not yet).
    fn set_active(&self) {
        let reading_header = self.balancers.as_ref().map_or(0, |b| b.pending);
        self.counters.set_active(self.conns.len() - reading_header);
    }

    /// Closes every connection idle past the timeout: O(1) per connection
    /// closed, nothing for the others.
    fn expire_idle(&mut self) {
        while let Some(key) = self.idle.as_ref().and_then(|idle| idle.expired(self.now)) {
            self.close(key, Close::Idle);
        }
    }
}
