//! Connecting: starting non-blocking connects at the pace asked for, settling
//! them when their socket becomes ready, and failing those that take longer
//! than `--connect-timeout`.

use std::io;
use std::time::Duration;

use mio::Token;

use echoloop::rules;
use echoloop::tls::{Stream, TlsStream};
use echoloop::transport::Transport;

use super::end::End;
use super::Tcp;
use crate::conn::{self, FailReason, State};
use crate::engine::Core;
use crate::payload::Payload;
use crate::record::Series;

/// Connects started per loop turn at most, so a ramp of thousands of
/// connections does not starve the ones already open.
const MAX_CONNECTS_PER_TURN: usize = 256;

impl Tcp {
    /// Fails every connect whose `--connect-timeout` has passed.
    pub(super) fn expire_connects(&mut self, core: &mut Core, now: u64) {
        while let Some(&(deadline, s, generation)) = self.connect_deadlines.front() {
            if deadline > now {
                break;
            }
            self.connect_deadlines.pop_front();
            let slot = &self.slots[s];
            if slot.generation == generation && slot.state == State::Connecting {
                let message = format!(
                    "connect {}: no answer within {:?}",
                    core.plan.addr,
                    Duration::from_nanos(core.plan.connect_timeout_ns)
                );
                self.end(core, s, End::Failed(FailReason::Timeout, message));
            }
        }
    }

    /// Starts the queued connects that are due (all of them, unpaced), at
    /// most [`MAX_CONNECTS_PER_TURN`].
    pub(super) fn start_due_connects(&mut self, core: &mut Core, now: u64) {
        let mut started = 0;
        while started < MAX_CONNECTS_PER_TURN && self.budget > 0 {
            if self.connect_interval_ns.is_some() && self.next_connect_at > now {
                break;
            }
            if self.next_connect_inactive(core) {
                break;
            }
            let Some(s) = self.queue.pop_front() else {
                break;
            };
            if let Some(interval) = self.connect_interval_ns {
                self.next_connect_at = self.next_connect_at.saturating_add(interval);
            }
            self.start_connect(core, s, now);
            started += 1;
        }
    }

    /// Starts connecting slot `s` as the next connection of this loop.
    fn start_connect(&mut self, core: &mut Core, s: usize, now: u64) {
        self.budget -= 1;
        let index = core.id + self.launched * core.plan.threads;
        self.launched += 1;
        let quota = core.plan.quota(index);
        self.slots[s].reset(index, Payload::start_of(index), quota, now);
        core.counts.attempted += 1;
        let source = core.plan.source_for(index);
        let mut stream = match conn::start(core.plan.addr, source) {
            Ok(stream) => stream,
            Err(e) => return self.end(core, s, End::Failed(e.reason, e.message)),
        };
        if let Err(e) = core
            .poll
            .registry()
            .register(&mut stream, Token(s), rules::interest(true))
        {
            return self.end(
                core,
                s,
                End::Failed(FailReason::Other, format!("register: {e}")),
            );
        }
        // With --tls the ClientHello waits in rustls for the first flush,
        // after the connect (and any PROXY header on the bare socket).
        let stream = match &core.plan.tls {
            None => Stream::Plain(stream),
            Some(tls) => match TlsStream::client(stream, &tls.config, tls.name.clone()) {
                Ok(tls) => Stream::Tls(Box::new(tls)),
                Err(e) => {
                    let message = format!("tls: {e}");
                    return self.end(core, s, End::Failed(FailReason::Other, message));
                }
            },
        };
        let slot = &mut self.slots[s];
        slot.stream = Some(stream);
        slot.state = State::Connecting;
        self.connecting += 1;
        self.connect_deadlines.push_back((
            now.saturating_add(core.plan.connect_timeout_ns),
            s,
            slot.generation,
        ));
    }

    /// A connecting socket became ready: did the connect succeed?
    pub(super) fn finish_connect(&mut self, core: &mut Core, s: usize, turn: u64) {
        let Some(stream) = self.slots[s].stream.as_ref() else {
            return;
        };
        // mio's recipe: an error first, then "connected" means a peer address.
        let stream = Transport::socket(stream);
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected || conn::in_progress(&e) => {
                    Ok(false)
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(false) => {} // Not yet: a spurious event.
            Err(e) => {
                let message = format!("connect {}: {e}", core.plan.addr);
                self.end(core, s, End::Failed(FailReason::of(&e), message));
            }
            Ok(true) => {
                if let Err(message) = self.send_proxy_header(core, s) {
                    return self.end(core, s, End::Failed(FailReason::Other, message));
                }
                self.established(core, s, turn);
                self.pump(core, s);
            }
        }
    }

    /// `--proxy-protocol`: writes slot `s`'s PROXY header, before any
    /// payload, on the socket itself (a transport that wrapped the stream,
    /// TLS say, would start after it, as a balancer's header precedes the
    /// handshake). A fresh connection's send buffer takes its few dozen
    /// bytes whole; anything less fails the connection, since the stream
    /// would then begin with half a header.
    fn send_proxy_header(&mut self, core: &Core, s: usize) -> Result<(), String> {
        let slot = &self.slots[s];
        let (Some(header), Some(stream)) = (core.plan.proxy_header(slot.index), &slot.stream)
        else {
            return Ok(());
        };
        match rules::write_until_full(Transport::socket(stream), &header) {
            Ok(n) if n == header.len() => Ok(()),
            Ok(n) => Err(format!(
                "PROXY header: only {n} of {} bytes sent",
                header.len()
            )),
            Err(e) => Err(format!("PROXY header: write: {e}")),
        }
    }

    /// Slot `s`'s connect succeeded at `turn`: count it, time it, and (open
    /// loop) set its send schedule.
    fn established(&mut self, core: &mut Core, s: usize, turn: u64) {
        self.connecting -= 1;
        self.open += 1;
        core.counts.established += 1;
        let slot = &mut self.slots[s];
        slot.state = State::Open;
        slot.first_byte_from = turn;
        core.rec
            .record(Series::Connect, turn.saturating_sub(slot.connect_started));
        slot.rate_origin = core.send_origin(slot.index, turn);
    }
}
