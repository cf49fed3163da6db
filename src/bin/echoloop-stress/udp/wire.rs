//! The socket calls of a `--udp` loop, with the platform split in one
//! place: sending a socket's unsent datagrams and receiving its echoes.
//!
//! On Linux's epoll the calls are batched as the server's are
//! ([`echoloop::mmsg`] says how and why): a socket's unsent datagrams — one
//! size, one destination — go out as one GSO message, and one `recvmmsg`
//! takes up to 32 echoes, a short batch proving the socket drained. So the
//! client spends less of its core per datagram than the server it measures,
//! and can drive a server faster than itself would be. Elsewhere (and under
//! mio's forced `poll(2)` backend) one `send_to` and one `recv_from` per
//! datagram, until `WouldBlock`.

use std::io;

use super::traffic::is_peer_error;
use super::UdpWorker;

/// `send_to` attempts in a row that may report an earlier datagram's ICMP
/// error (Windows) before the socket counts as failed.
const PEER_ERRORS_IN_A_ROW: usize = 8;

/// Datagrams one socket may receive per turn before the loop serves the
/// others (it comes back next turn): a flood on one cannot starve the rest.
const RECEIVES_PER_TURN: usize = 256;

/// Where a loop receives echoes: a `recvmmsg` batch (boxed: it is a few
/// hundred bytes of lengths and addresses besides its buffers).
#[cfg(linux_batch)]
pub type Inbox = Box<echoloop::mmsg::Received>;
/// Where a loop receives echoes: one buffer of
/// [`echoloop::rules::DATAGRAM_MAX`] bytes.
#[cfg(not(linux_batch))]
pub type Inbox = Box<[u8]>;

/// A loop's receive memory.
pub fn inbox() -> Inbox {
    #[cfg(linux_batch)]
    return Box::new(echoloop::mmsg::Received::new());
    #[cfg(not(linux_batch))]
    return vec![0; echoloop::rules::DATAGRAM_MAX].into_boxed_slice();
}

/// How many datagrams of `size` bytes a socket issues to send together
/// (at most its `pipeline`): as many as one GSO message carries.
#[cfg(linux_batch)]
pub fn burst(size: u64, pipeline: u64) -> usize {
    let most = echoloop::mmsg::gso_capacity(usize::try_from(size).unwrap_or(usize::MAX));
    most.min(usize::try_from(pipeline).unwrap_or(usize::MAX))
        .max(1)
}

/// How many datagrams a socket issues to send together: one at a time.
#[cfg(not(linux_batch))]
pub fn burst(_size: u64, _pipeline: u64) -> usize {
    1
}

impl UdpWorker {
    /// GSO only where the kernel has it: one that does not would ignore the
    /// segment size and send a burst as one datagram ([`echoloop::mmsg`]).
    /// Asked of the loop's first open socket.
    #[cfg(linux_batch)]
    pub(super) fn check_gso(&mut self) {
        let first = self.flows.iter().find_map(|f| f.socket.as_ref());
        self.gso = self.gso && first.is_some_and(echoloop::mmsg::gso_supported);
    }

    /// GSO is never on where the calls are not batched.
    #[cfg(not(linux_batch))]
    pub(super) fn check_gso(&mut self) {
        self.gso = false;
    }

    /// Sends socket `s`'s unsent datagrams, in order: `Ok(true)` if all went,
    /// `Ok(false)` if the socket would not take the rest (they stay unsent).
    /// An error names the call that failed.
    pub(super) fn send_unsent(&mut self, s: usize, now: u64) -> io::Result<bool> {
        let flow = &self.flows[s];
        let (k, size) = (flow.unsent as usize, self.shape.size);
        let first = flow.next - flow.unsent;
        for i in 0..k {
            let out = &mut self.out[i * size..(i + 1) * size];
            let (start, index) = (flow.start, flow.index as u32);
            self.shape
                .write(&self.plan.payload, start, index, first + i as u64, out);
        }
        if k > 1 && self.gso {
            if let Some(all_went) = self.send_segments(s, k, now)? {
                return Ok(all_went);
            }
        }
        for i in 0..k {
            if !self.send_one(s, i)? {
                return Ok(false);
            }
            self.flows[s].mark_sent(now);
            self.counts.udp.sent += 1;
        }
        Ok(true)
    }

    /// Sends the `k` datagrams in `out` as one GSO message: `Some(true)` if
    /// they went, `Some(false)` if the socket would not take them, `None` if
    /// GSO is refused (off from now on: send them one by one).
    #[cfg(linux_batch)]
    fn send_segments(&mut self, s: usize, k: usize, now: u64) -> io::Result<Option<bool>> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok(Some(false));
        };
        let (size, addr) = (self.shape.size, self.plan.addr);
        let out = &self.out[..k * size];
        let send = || echoloop::mmsg::send_segments(socket, out, size, addr);
        match send_retrying(&mut self.counts.udp.icmp_errors, send) {
            Ok(true) => {}
            Ok(false) => return Ok(Some(false)),
            Err(e) if echoloop::mmsg::gso_refused(&e) => {
                self.gso = false;
                return Ok(None);
            }
            Err(e) => return Err(named(format!("sendmsg (UDP_SEGMENT) to {addr}"), e)),
        }
        for _ in 0..k {
            self.flows[s].mark_sent(now);
        }
        self.counts.udp.sent += k as u64;
        Ok(Some(true))
    }

    /// GSO is never on where the calls are not batched.
    #[cfg(not(linux_batch))]
    fn send_segments(&mut self, _s: usize, _k: usize, _now: u64) -> io::Result<Option<bool>> {
        Ok(None)
    }

    /// `send_to` of datagram `i` of `out`: `Ok(false)` if the socket would
    /// not take it.
    fn send_one(&mut self, s: usize, i: usize) -> io::Result<bool> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok(false);
        };
        let (size, addr) = (self.shape.size, self.plan.addr);
        let datagram = &self.out[i * size..(i + 1) * size];
        let send = || match socket.send_to(datagram, addr) {
            Ok(n) if n == size => Ok(()),
            Ok(n) => Err(io::Error::other(format!("took {n} of {size} bytes"))),
            Err(e) => Err(e),
        };
        send_retrying(&mut self.counts.udp.icmp_errors, send)
            .map_err(|e| named(format!("send_to {addr}"), e))
    }

    /// Receives on socket `s` until `WouldBlock` (or a short batch) or the
    /// budget (then it is served again next turn), sorting every echo.
    pub(super) fn receive(&mut self, s: usize, turn: u64) {
        let Some(mut inbox) = self.inbox.take() else {
            return;
        };
        let drained = self.receive_into(&mut inbox, s, turn);
        self.inbox = Some(inbox);
        if !drained && !self.flows[s].queued {
            self.flows[s].queued = true;
            self.ready.push(s);
        }
    }

    /// [`UdpWorker::receive`]'s drain: receives until the socket says it is
    /// drained (or failed) — then true — or the budget runs out. An error
    /// about an earlier datagram (an ICMP error) is counted, not fatal, and
    /// counts against the budget like a datagram.
    fn receive_into(&mut self, inbox: &mut Inbox, s: usize, turn: u64) -> bool {
        let mut received = 0;
        while received < RECEIVES_PER_TURN {
            match self.receive_once(inbox, s, turn) {
                Ok((n, drained)) => {
                    received += n;
                    if drained {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_peer_error(&e) => {
                    self.counts.udp.icmp_errors += 1;
                    received += 1;
                }
                Err(e) => {
                    self.fail(s, format!("{RECEIVE_CALL}: {e}"));
                    return true;
                }
            }
        }
        false
    }

    /// One `recvmmsg` on socket `s`, every echo sorted: how many came, and
    /// whether a short batch proved the socket drained. A closed socket is
    /// drained.
    #[cfg(linux_batch)]
    fn receive_once(
        &mut self,
        inbox: &mut Inbox,
        s: usize,
        turn: u64,
    ) -> io::Result<(usize, bool)> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok((0, true));
        };
        let n = inbox.receive(socket)?;
        for k in 0..n {
            self.arrival(s, inbox.data(k), inbox.source(k), turn);
        }
        Ok((
            n,
            echoloop::rules::read_proves_drained(n, echoloop::mmsg::BATCH, false),
        ))
    }

    /// One `recv_from` on socket `s`, its echo sorted: one came, and only
    /// `WouldBlock` proves the socket drained. A closed socket is drained.
    #[cfg(not(linux_batch))]
    fn receive_once(
        &mut self,
        inbox: &mut Inbox,
        s: usize,
        turn: u64,
    ) -> io::Result<(usize, bool)> {
        let Some(socket) = self.flows[s].socket.as_ref() else {
            return Ok((0, true));
        };
        let (n, from) = socket.recv_from(inbox)?;
        self.arrival(s, &inbox[..n], Some(from), turn);
        Ok((1, false))
    }
}

/// The receive call, for error messages.
const RECEIVE_CALL: &str = if cfg!(linux_batch) {
    "recvmmsg"
} else {
    "recv_from"
};

/// Makes one send with `send`, as every client send goes: `Ok(true)` when
/// it went, `Ok(false)` when the socket would not take it; `Interrupted` is
/// retried, and an error about an earlier datagram (an ICMP error; Windows
/// reports one on a later send) is counted in `icmp_errors` and retried,
/// up to [`PEER_ERRORS_IN_A_ROW`] in a row. Any other error is returned as
/// it came.
fn send_retrying(
    icmp_errors: &mut u64,
    mut send: impl FnMut() -> io::Result<()>,
) -> io::Result<bool> {
    let mut peer_errors = 0;
    loop {
        match send() {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_peer_error(&e) && peer_errors < PEER_ERRORS_IN_A_ROW => {
                *icmp_errors += 1;
                peer_errors += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `e`, its message led by the `call` that failed.
fn named(call: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}
