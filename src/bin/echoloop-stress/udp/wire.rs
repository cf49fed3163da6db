//! The socket calls of a `--udp` loop: sending a socket's unsent datagrams
//! and receiving its echoes, through this platform's calls (`platform`:
//! `batch.rs` or `portable.rs`, the same functions).
//!
//! On Linux's epoll the calls are batched as the server's are: a socket's
//! unsent datagrams go out as one GSO message and one `recvmmsg` takes
//! many echoes. So the client spends less of its core per datagram than
//! the server it measures, and can drive a server faster than itself
//! would be. Elsewhere (and under mio's forced `poll(2)` backend) one
//! `send_to` and one `recv_from` per datagram, until `WouldBlock`.

use std::io;

use mio::net::UdpSocket;

use super::platform::{self, Inbox, RECEIVE_CALL};
use super::{icmp, Udp};
use crate::engine::Core;

/// `send_to` attempts in a row that may report an earlier datagram's ICMP
/// error (Windows) before the socket counts as failed.
const PEER_ERRORS_IN_A_ROW: usize = 8;

/// Datagrams one socket may receive per turn before the loop serves the
/// others (it comes back next turn): a flood on one cannot starve the rest.
const RECEIVES_PER_TURN: usize = 256;

impl Udp {
    /// GSO only where the kernel has it (`platform::gso_supported`);
    /// asked of the loop's first open socket.
    pub(super) fn check_gso(&mut self) {
        let first = self.flows.iter().find_map(|f| f.socket.as_ref());
        self.gso = self.gso && first.is_some_and(platform::gso_supported);
    }

    /// Sends socket `s`'s unsent datagrams, in order: `Ok(true)` if all went,
    /// `Ok(false)` if the socket would not take the rest (they stay unsent).
    /// An error names the call that failed.
    pub(super) fn send_unsent(&mut self, core: &mut Core, s: usize, now: u64) -> io::Result<bool> {
        let flow = &self.flows[s];
        let (k, size) = (flow.unsent as usize, self.shape.size);
        let first = flow.next - flow.unsent;
        for i in 0..k {
            let out = &mut self.out[i * size..(i + 1) * size];
            let (start, index) = (flow.start, flow.index as u32);
            self.shape
                .write(&core.plan.payload, start, index, first + i as u64, out);
        }
        if k > 1 && self.gso {
            if let Some(all_went) = self.send_segments(core, s, k, now)? {
                return Ok(all_went);
            }
        }
        for i in 0..k {
            if !self.send_one(core, s, i)? {
                return Ok(false);
            }
            self.flows[s].mark_sent(now);
            core.counts.udp.sent += 1;
        }
        Ok(true)
    }

    /// Sends the `k` datagrams in `out` as one GSO message: `Some(true)` if
    /// they went, `Some(false)` if the socket would not take them, `None` if
    /// GSO is refused (off from now on: send them one by one).
    fn send_segments(
        &mut self,
        core: &mut Core,
        s: usize,
        k: usize,
        now: u64,
    ) -> io::Result<Option<bool>> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok(Some(false));
        };
        let (size, addr) = (self.shape.size, core.plan.addr);
        let out = &self.out[..k * size];
        let send = || platform::send_segments(socket, out, size, addr);
        match send_retrying(&mut core.counts.udp.icmp_errors, socket, send) {
            Ok(true) => {}
            Ok(false) => return Ok(Some(false)),
            Err(e) if platform::gso_refused(&e) => {
                self.gso = false;
                return Ok(None);
            }
            Err(e) => return Err(named(format!("{} to {addr}", platform::SEGMENTS_CALL), e)),
        }
        for _ in 0..k {
            self.flows[s].mark_sent(now);
        }
        core.counts.udp.sent += k as u64;
        Ok(Some(true))
    }

    /// `send_to` of datagram `i` of `out`: `Ok(false)` if the socket would
    /// not take it.
    fn send_one(&mut self, core: &mut Core, s: usize, i: usize) -> io::Result<bool> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok(false);
        };
        let (size, addr) = (self.shape.size, core.plan.addr);
        let datagram = &self.out[i * size..(i + 1) * size];
        let send = || match socket.send_to(datagram, addr) {
            Ok(n) if n == size => Ok(()),
            Ok(n) => Err(io::Error::other(format!("took {n} of {size} bytes"))),
            Err(e) => Err(e),
        };
        send_retrying(&mut core.counts.udp.icmp_errors, socket, send)
            .map_err(|e| named(format!("send_to {addr}"), e))
    }

    /// Receives on socket `s` until `WouldBlock` (or a short batch) or the
    /// budget (then it is served again next turn), sorting every echo.
    pub(super) fn receive(&mut self, core: &mut Core, s: usize, turn: u64) {
        let Some(mut inbox) = self.inbox.take() else {
            return;
        };
        let drained = self.receive_into(core, &mut inbox, s, turn);
        self.inbox = Some(inbox);
        if !drained && !self.flows[s].queued {
            self.flows[s].queued = true;
            self.ready.push(s);
        }
    }

    /// [`Udp::receive`]'s drain: receives until the socket says it is
    /// drained (or failed) — then true — or the budget runs out. An error
    /// about an earlier datagram (an ICMP error) is counted, not fatal, and
    /// counts against the budget like a datagram.
    fn receive_into(&mut self, core: &mut Core, inbox: &mut Inbox, s: usize, turn: u64) -> bool {
        let mut received = 0;
        while received < RECEIVES_PER_TURN {
            match self.receive_once(core, inbox, s, turn) {
                Ok((n, drained)) => {
                    received += n;
                    if drained {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match icmp::reported(self.flows[s].socket.as_ref(), &e) {
                    Some(errors) => {
                        core.counts.udp.icmp_errors += errors;
                        received += 1;
                    }
                    None => {
                        self.fail(core, s, format!("{RECEIVE_CALL}: {e}"));
                        return true;
                    }
                },
            }
        }
        false
    }

    /// One receive on socket `s` (`recvmmsg`, or `recv_from`), every echo
    /// sorted: how many came, and whether the call proved the socket
    /// drained (a short batch; only `WouldBlock` where calls are not
    /// batched). A closed socket is drained.
    fn receive_once(
        &mut self,
        core: &mut Core,
        inbox: &mut Inbox,
        s: usize,
        turn: u64,
    ) -> io::Result<(usize, bool)> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok((0, true));
        };
        let n = platform::receive(inbox, socket)?;
        for k in 0..n {
            let (got, from) = platform::datagram(inbox, k);
            self.arrival(core, s, got, from, turn);
        }
        Ok((n, platform::drained(n)))
    }
}

/// Makes one send on `socket` with `send`, as every client send goes:
/// `Ok(true)` when it went, `Ok(false)` when the socket would not take it;
/// `Interrupted` is retried, and a failure that reports ICMP errors for
/// earlier datagrams (`icmp.rs`) is counted in `icmp_errors` and retried,
/// up to [`PEER_ERRORS_IN_A_ROW`] in a row. Any other error is returned as
/// it came.
fn send_retrying(
    icmp_errors: &mut u64,
    socket: &UdpSocket,
    mut send: impl FnMut() -> io::Result<()>,
) -> io::Result<bool> {
    let mut peer_errors = 0;
    loop {
        match send() {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => match icmp::reported(Some(socket), &e) {
                Some(errors) if peer_errors < PEER_ERRORS_IN_A_ROW => {
                    *icmp_errors += errors;
                    peer_errors += 1;
                }
                Some(errors) => {
                    *icmp_errors += errors;
                    return Err(e);
                }
                None => return Err(e),
            },
        }
    }
}

/// `e`, its message led by the `call` that failed.
fn named(call: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}
