//! What every loop of a server shares, read-only but for the shutdown flag:
//! the configuration, the flag and every loop's waker (so one
//! [`Handle::shutdown`](crate::Handle::shutdown) reaches them all), and a
//! reader of every loop's counter slot (so [`Handle::stats`](crate::Handle::stats)
//! sums them), the one count every loop admits against (`--max-connections`
//! is a total), and, where one loop accepts for all, each loop's queue of
//! clients handed to it. None of it is on the data path: a loop touches it
//! when a client comes or goes, never per byte. What one loop owns alone is its `Part`
//! (`event_loop/part.rs`); a loop is built from its part and an `Arc` of this.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use mio::net::TcpStream;
use mio::Waker;

use crate::stats::{Reader, Stats};
use crate::{sys, Config};

/// A client handed from the loop that accepted it to the loop it belongs
/// to: its socket, its address, and whether it came by a TLS listener.
pub(crate) type Handed = (TcpStream, SocketAddr, bool);

/// The state all loops and all [`Handle`](crate::Handle)s share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration the server was built with.
    pub(crate) config: Config,
    /// `--max-connections` resolved against the open-file limit.
    pub(crate) max_connections: usize,
    /// `--tcp-keepalive` as socket options, derived once at start-up.
    pub(crate) keepalive: Option<sys::Keepalive>,
    /// Loop 0 alone holds the listeners and hands each client to the loop
    /// its source hashes to (where the kernel does not steer: see
    /// [`crate::steer`]).
    pub(crate) handing_off: bool,
    /// Set by [`Shared::shutdown`]; each loop reads it every turn.
    shutdown: AtomicBool,
    /// One per loop, registered with that loop's poll: wakes it from `poll`
    /// when shutdown is asked.
    wakers: Vec<Waker>,
    /// A read-only view of each loop's counter slot; each loop owns its
    /// slot's only writer.
    slots: Vec<Reader>,
    /// Echo connections open over all loops: reserved before a loop admits
    /// one, released when it closes, so `max_connections` holds exactly.
    open: AtomicUsize,
    /// Where loop 0 accepts for every loop (the hand-off model): each
    /// loop's clients accepted for it and not yet taken in.
    inboxes: Vec<Mutex<Vec<Handed>>>,
    /// Per loop: its inbox may hold clients. Set after the push and before
    /// the wake; the loop reads it before every `poll` too, because a wake
    /// can be lost (see [`Shared::needs_turn`]).
    handed: Vec<AtomicBool>,
    /// Set once loop 0 has closed its listeners for good (after handing
    /// off what was queued): until then no other loop may finish shutdown.
    accepting_over: AtomicBool,
    /// A loop is gone (it panicked): the server is no longer whole.
    lost: AtomicBool,
}

impl Shared {
    /// The shared state of loops whose wakers and counter readers are given.
    pub(crate) fn new(
        config: Config,
        max_connections: usize,
        keepalive: Option<sys::Keepalive>,
        handing_off: bool,
        wakers: Vec<Waker>,
        slots: Vec<Reader>,
    ) -> Shared {
        Shared {
            config,
            max_connections,
            keepalive,
            handing_off,
            shutdown: AtomicBool::new(false),
            inboxes: wakers.iter().map(|_| Mutex::new(Vec::new())).collect(),
            handed: wakers.iter().map(|_| AtomicBool::new(false)).collect(),
            wakers,
            slots,
            open: AtomicUsize::new(0),
            accepting_over: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        }
    }

    /// How many loops the server runs.
    pub(crate) fn loops(&self) -> usize {
        self.wakers.len()
    }

    /// Asks every loop to shut down: sets the flag, then wakes each one.
    /// Every waker is tried; the first error is returned.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        let woken: Vec<io::Result<()>> = self.wakers.iter().map(Waker::wake).collect();
        woken.into_iter().collect()
    }

    /// Whether shutdown was asked.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Whether `/healthz` must fail: shutdown began, or a loop is gone.
    pub(crate) fn unhealthy(&self) -> bool {
        self.shutting_down() || self.lost.load(Ordering::SeqCst)
    }

    /// A loop is gone: marks the server unhealthy and stops the others.
    pub(crate) fn loop_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
        // If it was loop 0, no one hands off any more.
        self.close_accepting();
        let _ = self.shutdown();
    }

    /// The server's counters: every loop's slot, summed.
    pub(crate) fn stats(&self) -> Stats {
        Stats::sum(self.per_loop())
    }

    /// Each loop's counters, in loop order.
    pub(crate) fn per_loop(&self) -> Vec<Stats> {
        self.slots.iter().map(Reader::snapshot).collect()
    }

    /// Takes one of the `max_connections` places; `false` when all are
    /// taken.
    pub(crate) fn reserve(&self) -> bool {
        (self.open)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a place taken by [`Shared::reserve`].
    pub(crate) fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Echo connections open over all loops.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Hands a client accepted by loop 0 to loop `to`, and wakes that loop
    /// unless its mark was set already (then it has yet to look, and will).
    pub(crate) fn hand_off(&self, to: usize, stream: TcpStream, peer: SocketAddr, tls: bool) {
        lock(&self.inboxes[to]).push((stream, peer, tls));
        if !self.handed[to].swap(true, Ordering::SeqCst) {
            if let Err(e) = self.wakers[to].wake() {
                log::warn!("waking loop {to} for a client handed to it: {e}");
            }
        }
    }

    /// The clients handed to loop `to` since it last asked (none, at no
    /// cost, when its mark is clear).
    pub(crate) fn take_handed(&self, to: usize) -> Vec<Handed> {
        if !self.handed[to].swap(false, Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.inboxes[to]))
    }

    /// Whether loop `i` has something to do that its waker announced, to
    /// be checked just before it blocks in `poll`: clients handed to it,
    /// or shutdown asked (`started`: whether it has begun it already).
    ///
    /// The waker alone is not enough on mio's forced `poll(2)` backend:
    /// there, a loop that registers a socket while another thread wakes it
    /// can consume the wake-up with its own registration's notification,
    /// and its next `poll` would sleep through it. Every flag here is set
    /// before its wake, so a wake lost that way was preceded by the flag,
    /// and this check, made after the loop's last registration, sees it.
    pub(crate) fn needs_turn(&self, i: usize, started: bool) -> bool {
        self.handed[i].load(Ordering::SeqCst) || (!started && self.shutting_down())
    }

    /// Loop 0 closed its listeners: no client will be handed off any more.
    /// Wakes every loop, so those waiting only for this can finish.
    pub(crate) fn close_accepting(&self) {
        self.accepting_over.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }

    /// Whether no client will be handed off any more.
    pub(crate) fn accepting_over(&self) -> bool {
        self.accepting_over.load(Ordering::SeqCst)
    }
}

/// Locks a queue; a loop that panicked while holding it left a plain `Vec`
/// in a valid state, so the poison is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
