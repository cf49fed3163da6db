//! Counters: what the server has done, readable while it runs.
//!
//! The loop is the only writer, so each update is a plain load and store
//! (no locked read-modify-write on the hot path); readers on other threads
//! (a [`Handle`](crate::Handle), the tests, the stats log line) take a
//! [`Stats`] snapshot. Each field is individually exact; a snapshot taken
//! while the loop runs may mix two moments, which a monitoring read tolerates.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! stats {
    ($( $(#[doc = $doc:expr])* $field:ident, )*) => {
        /// A snapshot of the server's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        /// The live counters, shared between the loop (sole writer) and handles.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( $(#[doc = $doc])* $field: AtomicU64, )*
        }

        impl Counters {
            /// Reads every counter.
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $( $field: self.$field.load(Relaxed), )* }
            }
        }
    };
}

stats! {
    /// Connections accepted and admitted (refused ones are not counted here).
    accepted,
    /// Connections open right now.
    active,
    /// The largest `active` seen.
    peak_active,
    /// Connections accepted and closed at once because `--max-connections`
    /// were open.
    refused,
    /// Connections that ended cleanly: the peer shut down its side and
    /// everything it sent was echoed.
    closed_by_peer,
    /// Connections closed by an error: reset by the peer, broken pipe, …
    errored,
    /// Connections closed for being idle longer than `--idle-timeout`.
    timed_out,
    /// Connections closed by shutdown (still open when the server stopped).
    shut_down,
    /// Bytes read from clients.
    bytes_in,
    /// Bytes written back to clients.
    bytes_out,
    /// Echoed bytes held right now for peers that have not taken them (each
    /// connection holds at most `--max-pending`).
    pending_bytes,
}

/// One counter of [`Counters`], named for the loop's updates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Accepted,
    Refused,
    ClosedByPeer,
    Errored,
    TimedOut,
    ShutDown,
    BytesIn,
    BytesOut,
}

impl Counters {
    /// Adds `n` to a counter. Only the loop's thread may call this: the
    /// load-then-store is not atomic as a whole, which is exactly why it is
    /// cheap.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let cell = match counter {
            Counter::Accepted => &self.accepted,
            Counter::Refused => &self.refused,
            Counter::ClosedByPeer => &self.closed_by_peer,
            Counter::Errored => &self.errored,
            Counter::TimedOut => &self.timed_out,
            Counter::ShutDown => &self.shut_down,
            Counter::BytesIn => &self.bytes_in,
            Counter::BytesOut => &self.bytes_out,
        };
        cell.store(cell.load(Relaxed) + n, Relaxed);
    }

    /// Adds to the pending-output gauge (loop thread only).
    pub(crate) fn add_pending(&self, n: usize) {
        let cell = &self.pending_bytes;
        cell.store(cell.load(Relaxed) + n as u64, Relaxed);
    }

    /// Takes from the pending-output gauge (loop thread only).
    pub(crate) fn sub_pending(&self, n: usize) {
        let cell = &self.pending_bytes;
        cell.store(cell.load(Relaxed) - n as u64, Relaxed);
    }

    /// Records the number of open connections (loop thread only).
    pub(crate) fn set_active(&self, active: usize) {
        let active = active as u64;
        self.active.store(active, Relaxed);
        if active > self.peak_active.load(Relaxed) {
            self.peak_active.store(active, Relaxed);
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} active={} peak={} refused={} closed_by_peer={} errored={} \
             timed_out={} shut_down={} bytes_in={} bytes_out={} pending_bytes={}",
            self.accepted,
            self.active,
            self.peak_active,
            self.refused,
            self.closed_by_peer,
            self.errored,
            self.timed_out,
            self.shut_down,
            self.bytes_in,
            self.bytes_out,
            self.pending_bytes
        )
    }
}
