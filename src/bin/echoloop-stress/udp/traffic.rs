//! Datagrams out and back: issuing them (as the pipeline, the quota and,
//! in the open loop, the schedule allow) and sending them (holding them
//! back while the socket would not take them; the calls are in `wire.rs`),
//! and checking and sorting their echoes.

use std::cmp::Reverse;
use std::net::SocketAddr;

use mio::Token;

use echoloop::rules;

use super::flow::Arrival;
use super::{Stage, UdpWorker};
use crate::counts::Samples;
use crate::record::Series;
use crate::worker::LOOKAHEAD_NS;

impl UdpWorker {
    /// Open loop: pumps every socket whose next send time has come.
    pub(super) fn fire_rate_timers(&mut self, now: u64) {
        while let Some(&Reverse((at, s))) = self.rate_timers.peek() {
            if at > now {
                break;
            }
            self.rate_timers.pop();
            self.flows[s].timer_armed = false;
            self.pump(s);
        }
    }

    /// Sends socket `s`'s held datagrams and issues and sends what else is
    /// due, a burst at a time, until the socket would block or nothing more
    /// may go; then WRITABLE interest follows whether any is held back.
    /// Nothing new is issued while some are held: a closed-loop datagram is
    /// timed from its issue, and the wait for room is our own, not the
    /// server's.
    pub(super) fn pump(&mut self, s: usize) {
        if self.flows[s].done || self.flows[s].socket.is_none() {
            return;
        }
        if self.stage == Stage::Run {
            let now = self.now();
            loop {
                if self.flows[s].unsent == 0 {
                    while self.flows[s].unsent < self.burst as u64 && self.issue(s, now) {}
                }
                if self.flows[s].unsent == 0 {
                    break;
                }
                match self.send_unsent(s, now) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return self.fail(s, e.to_string()),
                }
            }
        }
        let UdpWorker { flows, poll, .. } = self;
        let flow = &mut flows[s];
        let held = flow.unsent > 0;
        if let Some(socket) = flow.socket.as_mut() {
            let registry = poll.registry();
            if let Err(e) =
                rules::update_interest(registry, socket, Token(s), &mut flow.writable, held)
            {
                return self.fail(s, format!("reregister: {e}"));
            }
        }
        self.check_done(s);
    }

    /// Issues socket `s`'s next datagram if the pipeline, its ring, its
    /// quota and (open loop) its schedule allow; returns whether it did.
    fn issue(&mut self, s: usize, now: u64) -> bool {
        let pipeline = self.plan.pipeline;
        let flow = &mut self.flows[s];
        if !flow.may_issue(pipeline) {
            return false;
        }
        let stamp = match self.plan.rate_interval_ns {
            None => now,
            Some(interval) => {
                let due = flow
                    .rate_origin
                    .saturating_add(flow.next.saturating_mul(interval));
                if due > now.saturating_add(LOOKAHEAD_NS) {
                    if !flow.timer_armed {
                        self.rate_timers.push(Reverse((due - LOOKAHEAD_NS, s)));
                        flow.timer_armed = true;
                    }
                    return false;
                }
                // Late (the pipeline was full, or we were busy): timed from
                // the schedule, so the delay counts against the server.
                due.min(now)
            }
        };
        flow.issue(stamp);
        true
    }

    /// Checks the datagram `got` from `from` just received on socket `s`:
    /// not from the server, or corrupted, it is counted here; else it is
    /// sorted by [`UdpWorker::sort`].
    pub(super) fn arrival(&mut self, s: usize, got: &[u8], from: Option<SocketAddr>, turn: u64) {
        let flow = &mut self.flows[s];
        let (c, first) = (&mut self.counts.udp, &mut self.samples.udp);
        let (index, n) = (flow.index, got.len());
        if !from.is_some_and(|from| from_server(from, self.plan.addr)) {
            c.foreign += 1;
            return Samples::keep(&mut first.foreign, || {
                let from = from.map_or_else(|| "an unknown address".into(), |f| f.to_string());
                format!("socket {index}: a {n}-byte datagram from {from}")
            });
        }
        let payload = &self.plan.payload;
        match self
            .shape
            .check(payload, flow.start, index as u32, flow.sent(), got)
        {
            Ok(seq) => self.sort(s, seq, n, turn),
            Err(wrong) => {
                c.corrupted += 1;
                if let Some(seq) = wrong.seq {
                    flow.take_corrupted(seq);
                }
                let why = wrong.why;
                Samples::keep(&mut first.corrupted, || format!("socket {index}: {why}"));
            }
        }
    }

    /// Sorts a right echo of datagram `seq` (`n` bytes) of socket `s`,
    /// arrived at `turn`: echoed (and timed; maybe reordered), late or
    /// duplicated (late, where a duplicate cannot be told from a late echo).
    fn sort(&mut self, s: usize, seq: u64, n: usize, turn: u64) {
        let (plan, counts, rec) = (&self.plan, &mut self.counts, &mut self.rec);
        let flow = &mut self.flows[s];
        let (c, first, index) = (&mut counts.udp, &mut self.samples.udp, flow.index);
        match flow.take(seq, turn, plan.echo_timeout_ns) {
            Arrival::Echoed {
                sent_at,
                actual,
                reordered,
            } => {
                rec.record(Series::Rtt, turn.saturating_sub(sent_at));
                if plan.rate_interval_ns.is_some() {
                    rec.record(Series::RttUncorrected, turn.saturating_sub(actual));
                }
                c.echoed += 1;
                counts.messages += 1;
                counts.bytes += n as u64;
                if reordered {
                    c.reordered += 1;
                    Samples::keep(&mut first.reordered, || {
                        format!("socket {index}: datagram {seq} came back after a later one")
                    });
                }
            }
            Arrival::Late { expired_now } => {
                if expired_now {
                    c.lost += 1;
                    Samples::keep(&mut first.lost, || {
                        lost_story(index, seq, plan.echo_timeout_ns)
                    });
                }
                c.late += 1;
            }
            // A datagram that carries only the low bits of its sequence
            // cannot be told from a later one with the same bits: a late
            // echo of the older looks like a second echo of the newer, so
            // it counts as late (`Shape::exact`).
            Arrival::Duplicated if !self.shape.exact() => c.late += 1,
            Arrival::Duplicated => {
                c.duplicated += 1;
                Samples::keep(&mut first.duplicated, || {
                    format!("socket {index}: datagram {seq} came back more than once")
                });
            }
        }
    }
}

/// Why datagram `seq` of socket `index` counts as lost.
pub(super) fn lost_story(index: u64, seq: u64, timeout_ns: u64) -> String {
    format!(
        "socket {index}: datagram {seq} not echoed within {:?} (--echo-timeout)",
        std::time::Duration::from_nanos(timeout_ns)
    )
}

/// Whether `from` is the server: its address, or any address on its port
/// when it was given as the unspecified address.
fn from_server(from: SocketAddr, server: SocketAddr) -> bool {
    from == server || (server.ip().is_unspecified() && from.port() == server.port())
}
