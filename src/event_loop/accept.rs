//! Step 3 of a turn: take clients in from the listeners, or refuse them;
//! where loop 0 accepts for every loop, hand each client to its loop, and
//! take in those handed to this one.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::TcpStream;

use super::EventLoop;
use crate::admission::Refusal;
use crate::connection::{Connection, Hints};
use crate::stats::Counter;
use crate::steer;
use crate::sys;
use crate::token::Source;

/// How long accepting pauses after the listener fails (out of descriptors,
/// or anything unexpected). Long enough not to burn CPU, short enough that
/// clients waiting in the backlog barely notice once descriptors free up.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl EventLoop {
    /// Accepts from listener `i` until it says `WouldBlock`, `budget`
    /// accepts are done (it stays ready for next turn), or it fails
    /// (accepting pauses).
    pub(super) fn accept(&mut self, i: usize, budget: usize) {
        for _ in 0..budget {
            match self.listeners[i].socket.accept() {
                Ok((stream, peer)) => self.route(stream, peer, self.listeners[i].tls),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listeners[i].ready = false;
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
                            self.listeners[i].addr
                        );
                    }
                    return;
                }
            }
        }
    }

    /// An accepted client goes to the loop its source hashes to: served
    /// here, or (where this loop accepts for all) handed to its loop;
    /// `tls`: it came by a TLS listener.
    fn route(&mut self, stream: TcpStream, peer: SocketAddr, tls: bool) {
        if self.shared.handing_off {
            let to = steer::loop_for(peer.ip(), self.shared.loops());
            if to != self.index {
                self.shared.hand_off(to, stream, peer, tls);
                return;
            }
        }
        self.admit(stream, peer, tls);
    }

    /// Takes in the clients loop 0 handed to this loop. During shutdown
    /// each is served once at once, without reading: it gets its FIN like
    /// every other connection, and nothing queued is reset.
    pub(super) fn take_handed(&mut self) {
        for (stream, peer, tls) in self.shared.take_handed(self.index) {
            if let Some(key) = self.admit(stream, peer, tls) {
                if self.shutdown_deadline.is_some() {
                    self.serve(key, Hints::default());
                }
            }
        }
    }

    /// Takes an accepted client in (returning its key), or refuses it:
    /// denied by the admission rules, the server full (over all loops), or
    /// its source at its limit. A trusted
    /// balancer's connection is judged by the client its PROXY header
    /// names, once that is read (`proxied.rs`); only the server being full
    /// refuses it here. Admission comes before any TLS (`tls`: a TLS
    /// listener's client): a refused client costs no handshake.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, tls: bool) -> Option<usize> {
        let balancer = (self.balancers.as_ref()).is_some_and(|b| b.trusts(peer.ip()));
        let check = match balancer {
            true => Ok(()),
            false => self.admission.check(peer.ip()),
        };
        let refusal = match check {
            Err(Refusal::Denied) => Some((Counter::RefusedDenied, "--allow/--deny")),
            _ if !self.shared.reserve() => Some((Counter::Refused, "--max-connections")),
            Err(Refusal::PerSource) => {
                self.shared.release();
                Some((Counter::RefusedPerSource, "--max-per-source"))
            }
            Ok(()) => None,
        };
        if let Some((counter, flag)) = refusal {
            // Refuse promptly: closing tells the client at once, where
            // leaving it in the backlog would let it hang.
            drop(stream);
            self.refused(peer, counter, flag);
            return None;
        }
        self.set_options(&stream, peer);
        let stream = self.transport(stream, tls);
        let counters = &self.counters;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let token = Source::Connection(key).token();
        let registered =
            stream.and_then(|stream| Connection::register(stream, self.poll.registry(), token));
        match registered {
            Ok(conn) => {
                entry.insert(conn);
                self.peers.record(key, peer);
                // The clock now, not at the start of the turn: a flood of
                // accepts can take a while, and an early stamp would let
                // the connection expire early.
                let now = Instant::now();
                if let Some(idle) = &mut self.idle {
                    idle.touch(key, now);
                }
                if tls {
                    // From accept: a PROXY header before it counts too.
                    self.handshakes.started(key, now);
                }
                if balancer {
                    self.await_header(key, peer, now);
                    return Some(key);
                }
                self.admission.opened(key, peer.ip());
                counters.add(Counter::Accepted, 1);
                self.set_active();
                debug!("conn {key}: accepted from {peer}");
                Some(key)
            }
            Err(e) => {
                self.shared.release();
                // Accepted, then lost at once: counted both ways so that
                // accepted = closed (all reasons) + active still holds.
                counters.add(Counter::Accepted, 1);
                counters.add(Counter::Errored, 1);
                debug!("conn {key}: register {peer}: {e}");
                None
            }
        }
    }

    /// Counts a refused client and warns (at most once a second) naming
    /// `peer` and the `flag` that refused it.
    pub(super) fn refused(&mut self, peer: SocketAddr, counter: Counter, flag: &str) {
        self.counters.add(counter, 1);
        if let Some(missed) = self.refused_warnings.allow(self.now) {
            warn!(
                "refused {peer} ({flag}; {} connections open); {missed} more refused \
                 since last warning",
                self.shared.open()
            );
        }
    }

    /// The socket options an admitted client gets; a failure is logged and
    /// the client served anyway.
    fn set_options(&self, stream: &TcpStream, peer: SocketAddr) {
        if self.shared.config.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                debug!("set TCP_NODELAY for {peer}: {e}");
            }
        }
        if let Some(keepalive) = &self.shared.keepalive {
            if let Err(e) = keepalive.apply(stream) {
                debug!("set TCP keepalive for {peer}: {e}");
            }
        }
    }
}
