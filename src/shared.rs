//! What every loop of a server shares, read-only but for the shutdown flag:
//! the configuration, the flag and every loop's waker (so one
//! [`Handle::shutdown`](crate::Handle::shutdown) reaches them all), and a
//! reader of every loop's counter slot (so [`Handle::stats`](crate::Handle::stats)
//! sums them). What one loop owns alone is its `Part`
//! (`event_loop/part.rs`); a loop is built from its part and an `Arc` of this.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::Waker;

use crate::stats::{Reader, Stats};
use crate::{sys, Config};

/// The state all loops and all [`Handle`](crate::Handle)s share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration the server was built with.
    pub(crate) config: Config,
    /// `--max-connections` resolved against the open-file limit.
    pub(crate) max_connections: usize,
    /// `--tcp-keepalive` as socket options, derived once at start-up.
    pub(crate) keepalive: Option<sys::Keepalive>,
    /// Set by [`Shared::shutdown`]; each loop reads it every turn.
    shutdown: AtomicBool,
    /// One per loop, registered with that loop's poll: wakes it from `poll`
    /// when shutdown is asked.
    wakers: Vec<Waker>,
    /// A read-only view of each loop's counter slot; each loop owns its
    /// slot's only writer.
    slots: Vec<Reader>,
}

impl Shared {
    /// The shared state of loops whose wakers and counter readers are given.
    pub(crate) fn new(
        config: Config,
        max_connections: usize,
        keepalive: Option<sys::Keepalive>,
        wakers: Vec<Waker>,
        slots: Vec<Reader>,
    ) -> Shared {
        Shared {
            config,
            max_connections,
            keepalive,
            shutdown: AtomicBool::new(false),
            wakers,
            slots,
        }
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

    /// The server's counters: every loop's slot, summed.
    pub(crate) fn stats(&self) -> Stats {
        Stats::sum(self.slots.iter().map(Reader::snapshot))
    }
}
