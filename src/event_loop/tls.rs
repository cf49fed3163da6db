//! What the loop does for TLS connections (`--tls-listen`): wrap an
//! accepted socket in its transport, hold each handshake to its deadline,
//! and count how handshakes end. The bytes themselves go through the
//! transport like any other ([`crate::tls`]). Without the `tls` feature
//! every one of these is a no-op and every connection is plain TCP: the
//! `cfg` for TLS in the loop is this file alone.

use std::io;
use std::time::Instant;

use mio::net::TcpStream;

use super::EventLoop;
use crate::config::Config;
use crate::connection::Connection;
use crate::stats::Counters;
use crate::transport::ServerStream;

#[cfg(feature = "tls")]
use {
    super::Close,
    crate::{idle::IdleQueue, stats::Counter, tls::Stream, tls::TlsStream},
    log::debug,
};

/// TLS connections still in their handshake, in accept order: every one
/// has the same deadline (`--tls-handshake-timeout`), so the idle timer's
/// queue is a complete timer queue for them too (O(1) per accept, per
/// finished handshake and per expiry).
#[derive(Debug)]
pub(super) struct Handshakes {
    /// Accept order; `None` without TLS listeners.
    #[cfg(feature = "tls")]
    queue: Option<IdleQueue>,
}

#[cfg(feature = "tls")]
impl Handshakes {
    /// The queue, if the server has TLS listeners.
    pub(super) fn new(config: &Config) -> Handshakes {
        let queue =
            (!config.tls_listen.is_empty()).then(|| IdleQueue::new(config.tls_handshake_timeout));
        Handshakes { queue }
    }

    /// Connection `key`'s handshake began (it was accepted) at `now`.
    pub(super) fn started(&mut self, key: usize, now: Instant) {
        if let Some(queue) = &mut self.queue {
            queue.touch(key, now);
        }
    }

    /// After connection `key` was served: once its handshake has finished,
    /// counts it (full or resumed) and stops its clock.
    pub(super) fn progress(
        &mut self,
        key: usize,
        conn: &mut Connection<ServerStream>,
        counters: &Counters,
    ) {
        let Some(resumed) = conn
            .stream_mut()
            .tls_mut()
            .and_then(TlsStream::take_established)
        else {
            return;
        };
        let kind = if resumed {
            Counter::TlsHandshakesResumed
        } else {
            Counter::TlsHandshakes
        };
        counters.add(kind, 1);
        if let Some(queue) = &mut self.queue {
            queue.remove(key);
        }
    }

    /// Connection `key` is closing: off the queue; a handshake that
    /// finished in its last serve counted, one that an error ended counted
    /// by why.
    pub(super) fn closed(
        &mut self,
        key: usize,
        conn: &mut Connection<ServerStream>,
        error: bool,
        counters: &Counters,
    ) {
        if self.queue.is_none() {
            return;
        }
        self.progress(key, conn, counters);
        if let Some(queue) = &mut self.queue {
            queue.remove(key);
        }
        let failure = conn.stream().tls().and_then(TlsStream::handshake_failure);
        if let (true, Some(failure)) = (error, failure) {
            counters.add(failure.counter(), 1);
        }
    }

    /// When the oldest unfinished handshake runs out of time.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queue.as_ref().and_then(IdleQueue::next_deadline)
    }
}

#[cfg(feature = "tls")]
impl EventLoop {
    /// The transport of a client accepted on a TLS listener (`tls`) or a
    /// plain one.
    pub(super) fn transport(&self, tcp: TcpStream, tls: bool) -> io::Result<ServerStream> {
        match (tls, &self.shared.config.tls) {
            (true, Some(config)) => Ok(Stream::Tls(Box::new(TlsStream::new(tcp, config)?))),
            _ => Ok(Stream::Plain(tcp)),
        }
    }

    /// Step 5: closes every connection whose handshake outlived
    /// `--tls-handshake-timeout`, however slowly it was still sending.
    pub(super) fn expire_handshakes(&mut self) {
        loop {
            let Some(queue) = &self.handshakes.queue else {
                return;
            };
            let Some(key) = queue.expired(self.now) else {
                return;
            };
            if let Some(tls) = (self.conns.get_mut(key)).and_then(|c| c.stream_mut().tls_mut()) {
                tls.timed_out();
            }
            debug!("conn {key}: TLS handshake not finished in time");
            let why = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout");
            self.close(key, Close::Error(why));
        }
    }
}

#[cfg(not(feature = "tls"))]
impl Handshakes {
    /// No TLS: nothing to time.
    pub(super) fn new(_config: &Config) -> Handshakes {
        Handshakes {}
    }
    /// No TLS: nothing to time.
    pub(super) fn started(&mut self, _key: usize, _now: Instant) {}
    /// No TLS: nothing to count.
    pub(super) fn progress(&mut self, _: usize, _: &mut Connection<ServerStream>, _: &Counters) {}
    /// No TLS: nothing to count.
    pub(super) fn closed(
        &mut self,
        _: usize,
        _: &mut Connection<ServerStream>,
        _: bool,
        _: &Counters,
    ) {
    }
    /// No TLS: no deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

#[cfg(not(feature = "tls"))]
impl EventLoop {
    /// No TLS: every client is plain TCP.
    pub(super) fn transport(&self, tcp: TcpStream, _tls: bool) -> io::Result<ServerStream> {
        Ok(tcp)
    }
    /// No TLS: no handshakes.
    pub(super) fn expire_handshakes(&mut self) {}
}
