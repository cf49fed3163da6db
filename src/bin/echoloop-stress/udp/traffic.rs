//! Datagrams out and back: issuing them (as the pipeline, the quota and,
//! in the open loop, the schedule allow) and sending them (holding them
//! back while the socket would not take them; the calls are in `wire.rs`),
//! and checking and sorting their echoes.

use std::net::SocketAddr;

use mio::Token;

use echoloop::rules;

use super::flow::Arrival;
use super::{Stage, Udp};
use crate::counts::Samples;
use crate::engine::{Core, SendTimer};
use crate::record::Series;

impl Udp {
    /// Sends socket `s`'s held datagrams and issues and sends what else is
    /// due, a burst at a time, until the socket would block or nothing more
    /// may go; then WRITABLE interest follows whether any is held back.
    /// Nothing new is issued while some are held: a closed-loop datagram is
    /// timed from its issue, and the wait for room is our own, not the
    /// server's.
    pub(super) fn pump(&mut self, core: &mut Core, s: usize) {
        if self.flows[s].done || self.flows[s].socket.is_none() {
            return;
        }
        if self.stage == Stage::Run {
            let now = core.now();
            loop {
                if self.flows[s].unsent == 0 {
                    while self.flows[s].unsent < self.burst as u64 && self.issue(core, s, now) {}
                }
                if self.flows[s].unsent == 0 {
                    break;
                }
                match self.send_unsent(core, s, now) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return self.fail(core, s, e.to_string()),
                }
            }
        }
        let flow = &mut self.flows[s];
        let held = flow.unsent > 0;
        if let Some(socket) = flow.socket.as_mut() {
            let registry = core.poll.registry();
            if let Err(e) =
                rules::update_interest(registry, socket, Token(s), &mut flow.writable, held)
            {
                return self.fail(core, s, format!("reregister: {e}"));
            }
        }
        self.check_done(s);
    }

    /// Issues socket `s`'s next datagram if the pipeline, its ring, its
    /// quota and (open loop) its schedule allow; returns whether it did.
    fn issue(&mut self, core: &mut Core, s: usize, now: u64) -> bool {
        let pipeline = core.plan.pipeline;
        let flow = &mut self.flows[s];
        if !flow.may_issue(pipeline) || !core.active(s) {
            return false;
        }
        let timer = SendTimer {
            origin: flow.rate_origin,
            socket: s,
            generation: 0,
            armed: &mut flow.timer_armed,
        };
        let Some(stamp) = core.send_stamp(now, flow.next, timer) else {
            return false;
        };
        flow.issue(stamp);
        true
    }

    /// Checks the datagram `got` from `from` just received on socket `s`:
    /// not from the server, or corrupted, it is counted here; else it is
    /// sorted by [`Udp::sort`].
    pub(super) fn arrival(
        &mut self,
        core: &mut Core,
        s: usize,
        got: &[u8],
        from: Option<SocketAddr>,
        turn: u64,
    ) {
        let flow = &mut self.flows[s];
        let (c, first) = (&mut core.counts.udp, &mut core.samples.udp);
        let (index, n) = (flow.index, got.len());
        if !from.is_some_and(|from| from_server(from, core.plan.addr)) {
            c.foreign += 1;
            return Samples::keep(&mut first.foreign, || {
                let from = from.map_or_else(|| "an unknown address".into(), |f| f.to_string());
                format!("socket {index}: a {n}-byte datagram from {from}")
            });
        }
        let payload = &core.plan.payload;
        match self
            .shape
            .check(payload, flow.start, index as u32, flow.sent(), got)
        {
            Ok(seq) => self.sort(core, s, seq, n, turn),
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
    fn sort(&mut self, core: &mut Core, s: usize, seq: u64, n: usize, turn: u64) {
        let (plan, counts, rec) = (&core.plan, &mut core.counts, &mut core.rec);
        let flow = &mut self.flows[s];
        let (c, first, index) = (&mut counts.udp, &mut core.samples.udp, flow.index);
        match flow.take(seq, turn, plan.echo_timeout_ns) {
            Arrival::Echoed {
                sent_at,
                actual,
                reordered,
            } => {
                rec.record(Series::Rtt, turn.saturating_sub(sent_at));
                if let Some(j) = flow.jitter.arrive(turn.saturating_sub(actual)) {
                    rec.jitter(j);
                }
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
