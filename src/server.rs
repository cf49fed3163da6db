//! The event loop: one thread, one [`Poll`], every socket registered with it.
//!
//! [`Server::bind`] does everything that may fail fatally (bind, listen,
//! create the poll); [`Server::run`] then turns the loop until shut down. Each
//! turn is the numbered steps of [`EventLoop::turn`]:
//!
//! 1. wait for events, or for the nearest deadline;
//! 2. note which listeners are ready, serve each connection named by an event
//!    (read, write back, buffer what the peer can't take, close when done);
//! 3. accept until `WouldBlock` — within a budget;
//! 4. serve again the connections whose read budget ran out last turn;
//! 5. timers: idle connections, accept back-off, stats, shutdown.
//!
//! # Error policy
//!
//! - `WouldBlock` is control flow: the socket is drained (or full); wait for
//!   the next event.
//! - `Interrupted` retries the call.
//! - An error on a connection closes that connection only (logged at debug,
//!   counted as `errored`).
//! - An error on a listener never stops the server: descriptor exhaustion
//!   (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) and any unexpected error pause
//!   accepting for [`ACCEPT_BACKOFF`] (the pending client stays in the
//!   backlog, so retrying at once would spin); a client that reset before we
//!   accepted it (`ConnectionAborted`, `ConnectionReset`) is skipped.
//! - Only start-up is fatal: [`Server::bind`] returns its errors, and `run`
//!   returns one only if the poll itself fails, when no loop can go on.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::connection::{BufferPool, Connection, Hints, Io, Status};
use crate::idle::IdleQueue;
use crate::stats::{Counter, Counters, Stats};
use crate::{sys, Config};

/// How long accepting pauses after the listener fails (out of descriptors,
/// or anything unexpected). Long enough not to burn CPU, short enough that
/// clients waiting in the backlog barely notice once descriptors free up.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning of a kind per this interval; the rest are counted and
/// reported with the next one, so a flood cannot flood the log too.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// How many events one `poll` call may return. Larger batches amortise the
/// call over more events; 1,024 is the usual choice (Redis, nginx).
const EVENTS_CAPACITY: usize = 1024;

/// Below this many, a `--max-connections` derived from the open-file limit
/// is worth a warning: the operator probably did not mean it.
const LOW_MAX_CONNECTIONS: usize = 1024;

/// During shutdown, how often connections whose peers keep their side open
/// are checked for whether everything we sent was acknowledged (which
/// raises no event) — and how long a peer must have been quiet to be
/// closed. Short enough that such peers cost the operator no noticeable
/// wait; long enough that a peer still sending is not cut off with a reset.
const LINGER_CHECK: Duration = Duration::from_millis(50);

/// Output buffers kept for reuse by the pool (see [`BufferPool`]).
const SPARE_BUFFERS: usize = 64;

/// The waker's token. Connections use their slab key as token, and slab keys
/// never come near `usize::MAX`, so the top of the range is free.
const WAKER: Token = Token(usize::MAX);

/// Listener `i` has token `usize::MAX - 1 - i`.
fn listener_token(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

/// What the loop shares with [`Handle`]s on other threads.
#[derive(Debug)]
struct Shared {
    /// Wakes the loop from `poll` when a handle asks it to stop.
    waker: Waker,
    /// Set by [`Handle::shutdown`]; read by the loop every turn.
    shutdown: AtomicBool,
    /// The counters, written by the loop, read by anyone.
    counters: Counters,
}

/// A way to watch and stop a running [`Server`] from another thread (a
/// signal handler, a test). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The state the loop shares.
    shared: Arc<Shared>,
}

impl Handle {
    /// Asks the server to shut down gracefully: stop accepting, flush the
    /// echo of what was already read (for at most the shutdown grace), close
    /// everything, and return from [`Server::run`].
    pub fn shutdown(&self) -> io::Result<()> {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.waker.wake()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }
}

/// A listening socket.
#[derive(Debug)]
struct Listener {
    /// The socket, registered under [`listener_token`] of its index.
    socket: TcpListener,
    /// Where it listens (with the real port when 0 was asked).
    addr: SocketAddr,
    /// It may have connections waiting: set by its event, cleared when
    /// `accept` says `WouldBlock`. Kept across turns because the accept
    /// budget may stop us first, and no new event comes for clients already
    /// in the backlog.
    ready: bool,
}

/// A bound, not yet running echo server.
#[derive(Debug)]
pub struct Server {
    /// The one poll instance; every socket is registered with it.
    poll: Poll,
    /// Listening sockets, in the order of [`Config::listen`].
    listeners: Vec<Listener>,
    /// The configuration it was bound with.
    config: Config,
    /// `--max-connections` resolved against the open-file limit.
    max_connections: usize,
    /// What handles share.
    shared: Arc<Shared>,
    /// The loop's one read buffer, allocated here so that a size the
    /// machine cannot give fails start-up instead of aborting later.
    read_buffer: Vec<u8>,
}

impl Server {
    /// Raises the open-file limit, binds every listen address and prepares
    /// the poll. Every error here is fatal and names what failed, e.g.
    /// `bind 127.0.0.1:7878: Address already in use`.
    pub fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("config: {why}")))?;
        let fd_limit = sys::raise_fd_limit().map_err(|e| context("setrlimit(NOFILE)", e))?;
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| sys::default_max_connections(fd_limit));
        let poll = Poll::new().map_err(|e| context("poll", e))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| context("waker", e))?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for (i, &want) in config.listen.iter().enumerate() {
            let mut socket =
                listen(want, config.backlog).map_err(|e| context(&format!("bind {want}"), e))?;
            let addr = socket
                .local_addr()
                .map_err(|e| context(&format!("bind {want}"), e))?;
            poll.registry()
                .register(&mut socket, listener_token(i), Interest::READABLE)
                .map_err(|e| context(&format!("register {addr}"), e))?;
            listeners.push(Listener {
                socket,
                addr,
                ready: false,
            });
        }
        if let Some(limit) = fd_limit {
            if config.max_connections.is_none() && max_connections < LOW_MAX_CONNECTIONS {
                warn!(
                    "the open-file limit ({limit}) leaves --max-connections at {max_connections}; \
                     raise the limit (ulimit -n, LimitNOFILE=) or set --max-connections"
                );
            } else {
                debug!("open-file limit {limit}, max connections {max_connections}");
            }
        }
        let shared = Arc::new(Shared {
            waker,
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let mut read_buffer = Vec::new();
        read_buffer
            .try_reserve_exact(config.read_buffer)
            .map_err(|e| {
                context(
                    &format!("read buffer of {} bytes", config.read_buffer),
                    io::Error::new(io::ErrorKind::OutOfMemory, e),
                )
            })?;
        read_buffer.resize(config.read_buffer, 0);
        Ok(Server {
            poll,
            listeners,
            config,
            max_connections,
            shared,
            read_buffer,
        })
    }

    /// The addresses actually listened on (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A handle to stop the server and read its counters.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the loop on this thread until shut down; returns the final
    /// counters.
    pub fn run(mut self) -> io::Result<Stats> {
        for l in &self.listeners {
            info!("listening on {}", l.addr);
        }
        let buf = std::mem::take(&mut self.read_buffer);
        let config = &self.config;
        let mut event_loop = EventLoop {
            events: Events::with_capacity(EVENTS_CAPACITY),
            conns: Slab::new(),
            read_again: VecDeque::new(),
            idle: config.idle_timeout.map(IdleQueue::new),
            buf,
            pool: BufferPool::new(SPARE_BUFFERS),
            accept_paused_until: None,
            next_stats: config.stats_interval.map(|every| Instant::now() + every),
            shutdown_deadline: None,
            next_linger_check: None,
            refused_warnings: Throttle::default(),
            accept_warnings: Throttle::default(),
            now: Instant::now(),
            peers: Peers::new(),
            server: self,
        };
        while event_loop.turn()? {}
        let stats = event_loop.server.shared.counters.snapshot();
        info!("stopped: {stats}");
        Ok(stats)
    }
}

/// Creates a non-blocking listening socket with our own backlog.
///
/// `mio::net::TcpListener::bind` fixes the backlog at 128, std's value: a
/// burst of clients beyond it is dropped by the kernel (their SYNs go
/// unanswered and they retry after a second or more) even while the loop
/// would accept them in microseconds. The kernel caps the value at
/// `net.core.somaxconn` (4,096 on current Linux).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Rebind at once after a restart despite connections in TIME_WAIT. Not
    // on Windows, where SO_REUSEADDR would let another process steal the port.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    // Urgent ("out-of-band") bytes stay in the stream, so they are echoed
    // like every other byte (RFC 862); without it only recv(MSG_OOB) would
    // see them. Accepted sockets inherit it (Linux, the BSDs, Windows).
    socket.set_out_of_band_inline(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Adds "what we were doing" to an error, keeping its kind.
fn context(call: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{call}: {err}"))
}

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
}

/// The running loop's state.
#[derive(Debug)]
struct EventLoop {
    /// The bound server: poll, listeners, config, shared state.
    server: Server,
    /// Events filled by each `poll`, reused every turn.
    events: Events,
    /// Open connections; the slab key is the connection's `Token`.
    conns: Slab<Connection>,
    /// Connections whose read budget ran out with input left: served again
    /// next turn, in order, so no one is starved and nothing is forgotten.
    read_again: VecDeque<usize>,
    /// Connections by last activity, when `--idle-timeout` is set.
    idle: Option<IdleQueue>,
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
}

/// Peer addresses, kept only while debug logging is on.
///
/// An address is 32 bytes, more than everything else an idle connection
/// needs; only the debug log lines use it, so it lives here, beside the
/// slab, and costs nothing when those lines are off.
#[derive(Debug)]
struct Peers(Option<Vec<Option<SocketAddr>>>);

impl Peers {
    /// Keeps addresses only if debug logging is enabled now.
    fn new() -> Self {
        Peers(log::log_enabled!(log::Level::Debug).then(Vec::new))
    }

    fn record(&mut self, key: usize, peer: SocketAddr) {
        if let Some(peers) = &mut self.0 {
            if peers.len() <= key {
                peers.resize(key + 1, None);
            }
            peers[key] = Some(peer);
        }
    }

    /// The address of connection `key`, printable ("?" when not kept).
    fn get(&self, key: usize) -> PeerName {
        PeerName(self.0.as_ref().and_then(|p| p.get(key).copied().flatten()))
    }
}

/// A peer address in a log line, or "?" when not kept.
#[derive(Debug)]
struct PeerName(Option<SocketAddr>);

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("?"),
        }
    }
}

impl EventLoop {
    /// One turn of the loop. Returns `false` when the server has stopped.
    fn turn(&mut self) -> io::Result<bool> {
        // 1. Wait for readiness, or until the nearest deadline. Never block
        //    while work is left over from the last turn.
        let timeout = self.poll_timeout();
        if let Err(e) = self.server.poll.poll(&mut self.events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(true);
            }
            return Err(context("poll", e));
        }
        self.now = Instant::now();

        // Connections cut short by their budget in an earlier turn; those cut
        // short in this one wait for the next, behind everyone else.
        let carried_over = self.read_again.len();

        // 2. Dispatch. Listener events only mark the listener ready (step 3
        //    accepts); connection events are served at once. `events` is
        //    taken out for the loop so `self` stays free to borrow.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                WAKER => {} // the shutdown flag is checked in step 5
                Token(t) if usize::MAX - 1 - t < self.server.listeners.len() => {
                    self.server.listeners[usize::MAX - 1 - t].ready = true;
                }
                Token(key) => {
                    // Closed and error flags are hints: serving reads or
                    // writes, and the call itself tells what happened.
                    let hints = Hints {
                        readable: event.is_readable(),
                        writable: event.is_writable()
                            || event.is_write_closed()
                            || event.is_error(),
                        closing: event.is_read_closed() || event.is_error(),
                        urgent: event.is_priority(),
                    };
                    self.serve(key, hints);
                }
            }
        }
        self.events = events;

        // 3. Accept until WouldBlock, within a budget per listener per turn.
        if self.shutdown_deadline.is_none() && self.accept_paused_until.is_none() {
            for i in 0..self.server.listeners.len() {
                if self.server.listeners[i].ready {
                    self.accept(i);
                }
            }
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

        // 5. Timers and shutdown.
        self.expire_idle();
        if self
            .accept_paused_until
            .is_some_and(|until| self.now >= until)
        {
            // Retry: the backlog still holds whoever we could not take.
            self.accept_paused_until = None;
            self.server
                .listeners
                .iter_mut()
                .for_each(|l| l.ready = true);
        }
        if let Some(at) = self.next_stats.filter(|&at| self.now >= at) {
            info!("stats: {}", self.server.shared.counters.snapshot());
            self.next_stats = self
                .server
                .config
                .stats_interval
                .map(|every| at.max(self.now) + every);
        }
        Ok(self.shutdown_step())
    }

    /// How long step 1 may block: zero while work is left over, else until
    /// the nearest deadline, or forever.
    fn poll_timeout(&self) -> Option<Duration> {
        let accepting = self.shutdown_deadline.is_none() && self.accept_paused_until.is_none();
        if !self.read_again.is_empty()
            || (accepting && self.server.listeners.iter().any(|l| l.ready))
        {
            return Some(Duration::ZERO);
        }
        [
            self.idle.as_ref().and_then(IdleQueue::next_deadline),
            self.accept_paused_until,
            self.next_stats,
            self.shutdown_deadline,
            self.next_linger_check,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Accepts from listener `i` until it says `WouldBlock`, the budget is
    /// spent (it stays ready for next turn), or it fails (accepting pauses).
    fn accept(&mut self, i: usize) {
        for _ in 0..self.server.config.accepts_per_turn {
            match self.server.listeners[i].socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.server.listeners[i].ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    debug!("accept: client left before it was accepted: {e}");
                }
                Err(e) => {
                    // Out of descriptors, or something unexpected: pause
                    // rather than spin on a listener that stays ready.
                    self.accept_paused_until = Some(self.now + ACCEPT_BACKOFF);
                    if let Some(missed) = self.accept_warnings.allow(self.now) {
                        let why = if sys::is_resource_exhaustion(&e) {
                            "out of descriptors or socket memory"
                        } else {
                            "unexpected listener error"
                        };
                        warn!(
                            "accept on {}: {e} ({why}; pausing accepts for {ACCEPT_BACKOFF:?}, \
                             {missed} more since last warning)",
                            self.server.listeners[i].addr
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Takes an accepted client in, or refuses it when the server is full.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let counters = &self.server.shared.counters;
        if self.conns.len() >= self.server.max_connections {
            // Refuse promptly: closing tells the client at once, where
            // leaving it in the backlog would let it hang.
            drop(stream);
            counters.add(Counter::Refused, 1);
            if let Some(missed) = self.refused_warnings.allow(self.now) {
                warn!(
                    "refused {peer}: {} connections open (--max-connections); \
                     {missed} more refused since last warning",
                    self.conns.len()
                );
            }
            return;
        }
        if self.server.config.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                debug!("set TCP_NODELAY for {peer}: {e}"); // not worth refusing over
            }
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        match Connection::register(stream, self.server.poll.registry(), Token(key)) {
            Ok(conn) => {
                entry.insert(conn);
                self.peers.record(key, peer);
                counters.add(Counter::Accepted, 1);
                counters.set_active(self.conns.len());
                if let Some(idle) = &mut self.idle {
                    // The clock now, not at the start of the turn: a flood of
                    // accepts can take a while, and an early stamp would let
                    // the connection expire early.
                    idle.touch(key, Instant::now());
                }
                debug!("conn {key}: accepted from {peer}");
            }
            Err(e) => {
                // Accepted, then lost at once: counted both ways so that
                // accepted = closed (all reasons) + active still holds.
                counters.add(Counter::Accepted, 1);
                counters.add(Counter::Errored, 1);
                debug!("conn {key}: register {peer}: {e}");
            }
        }
    }

    /// Serves connection `key` (read, echo, buffer, flush) and acts on the
    /// outcome: queue it, close it, or leave it waiting.
    fn serve(&mut self, key: usize, hints: Hints) {
        let shared = &self.server.shared;
        // A stale event for a connection closed earlier this turn: nothing to do.
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut io = Io {
            buf: &mut self.buf,
            pool: &mut self.pool,
            counters: &shared.counters,
            max_pending: self.server.config.max_pending,
            reads_per_turn: self.server.config.reads_per_turn,
            reading: self.shutdown_deadline.is_none(),
        };
        match conn.serve(hints, self.server.poll.registry(), Token(key), &mut io) {
            Ok((status, moved)) => {
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
                }
            }
            Err(e) => self.close(key, Close::Error(e)),
        }
    }

    /// Closes connection `key`, counting and logging why.
    fn close(&mut self, key: usize, why: Close) {
        let conn = self.conns.remove(key);
        if let Some(idle) = &mut self.idle {
            idle.remove(key);
        }
        let counters = &self.server.shared.counters;
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
        }
        counters.set_active(self.conns.len());
        conn.close(&mut self.pool, counters);
    }

    /// Closes every connection idle past the timeout: O(1) per connection
    /// closed, nothing for the others.
    fn expire_idle(&mut self) {
        while let Some(key) = self.idle.as_ref().and_then(|idle| idle.expired(self.now)) {
            self.close(key, Close::Idle);
        }
    }

    /// Starts shutdown when asked, and finishes it when everything is flushed
    /// or the grace period is over. Returns `false` once the server stopped.
    fn shutdown_step(&mut self) -> bool {
        if self.shutdown_deadline.is_none() {
            if !self.server.shared.shutdown.load(Ordering::SeqCst) {
                return true;
            }
            // Stop accepting: closing the listeners makes the kernel refuse
            // new clients instead of queueing them.
            self.server.listeners.clear();
            // From now, not from the start of the turn: the grace is a promise to the
            // operator, and a turn may have begun well before the signal.
            self.shutdown_deadline = Some(Instant::now() + self.server.config.shutdown_grace);
            info!(
                "shutting down: {} connections, flushing for up to {:?}",
                self.conns.len(),
                self.server.config.shutdown_grace
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
        !self.conns.is_empty()
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

/// Lets one log line through per [`WARN_INTERVAL`], counting the rest.
#[derive(Debug, Default)]
struct Throttle {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Lines held back since then.
    missed: u64,
}

impl Throttle {
    /// `Some(missed)` if a line may be logged now, with how many were held
    /// back since the last one.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + WARN_INTERVAL) {
            self.missed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.missed))
    }
}
