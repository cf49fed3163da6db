//! Connecting: starting non-blocking connects at the pace asked for, settling
//! them when their socket becomes ready, and failing those that take longer
//! than `--connect-timeout`.

use std::io;
use std::time::Duration;

use mio::Token;

use echoloop::rules;

use super::end::End;
use super::Worker;
use crate::conn::{self, FailReason, State};
use crate::payload::Payload;
use crate::record::Series;

/// Connects started per loop turn at most, so a ramp of thousands of
/// connections does not starve the ones already open.
const MAX_CONNECTS_PER_TURN: usize = 256;

impl Worker {
    /// Fails every connect whose `--connect-timeout` has passed.
    pub(super) fn expire_connects(&mut self, now: u64) {
        while let Some(&(deadline, s, generation)) = self.connect_deadlines.front() {
            if deadline > now {
                break;
            }
            self.connect_deadlines.pop_front();
            let slot = &self.slots[s];
            if slot.generation == generation && slot.state == State::Connecting {
                let message = format!(
                    "connect {}: no answer within {:?}",
                    self.plan.addr,
                    Duration::from_nanos(self.plan.connect_timeout_ns)
                );
                self.end(s, End::Failed(FailReason::Timeout, message));
            }
        }
    }

    /// Starts the queued connects that are due (all of them, unpaced), at
    /// most [`MAX_CONNECTS_PER_TURN`].
    pub(super) fn start_due_connects(&mut self, now: u64) {
        let mut started = 0;
        while started < MAX_CONNECTS_PER_TURN && self.budget > 0 {
            if self.connect_interval_ns.is_some() && self.next_connect_at > now {
                break;
            }
            let Some(s) = self.queue.pop_front() else {
                break;
            };
            if let Some(interval) = self.connect_interval_ns {
                self.next_connect_at = self.next_connect_at.saturating_add(interval);
            }
            self.start_connect(s, now);
            started += 1;
        }
    }

    /// Starts connecting slot `s` as the next connection of this loop.
    fn start_connect(&mut self, s: usize, now: u64) {
        self.budget -= 1;
        let index = self.id + self.launched * self.plan.threads;
        self.launched += 1;
        let quota = self.plan.quota(index);
        self.slots[s].reset(index, Payload::start_of(index), quota, now);
        self.counts.attempted += 1;

        let sources = &self.plan.source_addrs;
        let source =
            (!sources.is_empty()).then(|| sources[(index % sources.len() as u64) as usize]);
        let mut stream = match conn::start(self.plan.addr, source) {
            Ok(stream) => stream,
            Err(e) => return self.end(s, End::Failed(e.reason, e.message)),
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(s), rules::interest(true))
        {
            return self.end(s, End::Failed(FailReason::Other, format!("register: {e}")));
        }
        let slot = &mut self.slots[s];
        slot.stream = Some(stream);
        slot.state = State::Connecting;
        self.connecting += 1;
        self.connect_deadlines.push_back((
            now.saturating_add(self.plan.connect_timeout_ns),
            s,
            slot.generation,
        ));
    }

    /// A connecting socket became ready: did the connect succeed?
    pub(super) fn finish_connect(&mut self, s: usize, turn: u64) {
        let Some(stream) = self.slots[s].stream.as_ref() else {
            return;
        };
        // mio's recipe: an error first, then "connected" means a peer address.
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
                let message = format!("connect {}: {e}", self.plan.addr);
                self.end(s, End::Failed(FailReason::of(&e), message));
            }
            Ok(true) => {
                if let Err(message) = self.send_proxy_header(s) {
                    return self.end(s, End::Failed(FailReason::Other, message));
                }
                self.established(s, turn);
                self.pump(s);
            }
        }
    }

    /// `--proxy-protocol`: writes slot `s`'s PROXY header, before any
    /// payload. A fresh connection's send buffer takes its few dozen bytes
    /// whole; anything less fails the connection, since the stream would
    /// then begin with half a header.
    fn send_proxy_header(&mut self, s: usize) -> Result<(), String> {
        let slot = &self.slots[s];
        let (Some(header), Some(stream)) = (self.plan.proxy_header(slot.index), &slot.stream)
        else {
            return Ok(());
        };
        match rules::write_until_full(stream, &header) {
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
    fn established(&mut self, s: usize, turn: u64) {
        self.connecting -= 1;
        self.open += 1;
        self.counts.established += 1;
        let plan = &self.plan;
        let slot = &mut self.slots[s];
        slot.state = State::Open;
        slot.first_byte_from = turn;
        self.rec
            .record(Series::Connect, turn.saturating_sub(slot.connect_started));
        if let Some(interval) = plan.rate_interval_ns {
            // Spread the connections' schedules evenly over one interval.
            let phase = u128::from(interval) * u128::from(slot.index % plan.connections)
                / u128::from(plan.connections);
            slot.rate_origin = turn.saturating_add(phase as u64);
        }
    }
}
