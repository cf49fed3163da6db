//! What keeps the log useful under load: warnings rate-limited per kind,
//! peer addresses for debug lines kept only while those lines are on, and
//! errors that name the call that failed.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// At most one warning of a kind per this interval; the rest are counted and
/// reported with the next one, so a flood cannot flood the log too.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one log line through per [`WARN_INTERVAL`], counting the rest.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Lines held back since then.
    missed: u64,
}

impl Throttle {
    /// `Some(missed)` if a line may be logged now, with how many were held
    /// back since the last one.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + WARN_INTERVAL) {
            self.missed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.missed))
    }
}

/// Peer addresses, kept only while debug logging is on.
///
/// An address is 32 bytes, more than everything else an idle connection
/// needs; only the debug log lines use it, so it lives here, beside the
/// slab, and costs nothing when those lines are off.
#[derive(Debug)]
pub(crate) struct Peers(Option<Vec<Option<SocketAddr>>>);

impl Peers {
    /// Keeps addresses only if debug logging is enabled now.
    pub(crate) fn new() -> Self {
        Peers(log::log_enabled!(log::Level::Debug).then(Vec::new))
    }

    pub(crate) fn record(&mut self, key: usize, peer: SocketAddr) {
        if let Some(peers) = &mut self.0 {
            if peers.len() <= key {
                peers.resize(key + 1, None);
            }
            peers[key] = Some(peer);
        }
    }

    /// The address of connection `key`, printable ("?" when not kept).
    pub(crate) fn get(&self, key: usize) -> PeerName {
        PeerName(self.0.as_ref().and_then(|p| p.get(key).copied().flatten()))
    }
}

/// A peer address in a log line, or "?" when not kept.
#[derive(Debug)]
pub(crate) struct PeerName(Option<SocketAddr>);

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("?"),
        }
    }
}

/// Adds "what we were doing" to an error, keeping its kind: "read:
/// Connection reset by peer", "bind 127.0.0.1:7: Address already in use".
/// Only on the error path.
pub(crate) fn context(call: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{call}: {err}"))
}
