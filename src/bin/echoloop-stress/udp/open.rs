//! Opening a client UDP socket: bound to its source address (or the
//! family's unspecified one) and port 0, so each socket gets a source port
//! of its own, with a receive buffer that holds its pipeline's echoes,
//! then non-blocking and handed to mio; and opening a loop's sockets at the
//! start of the run.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;
use mio::Token;
use socket2::{Domain, Protocol, Socket, Type};

use echoloop::rules;

use super::Udp;
use crate::conn::{ConnectError, FailReason};
use crate::counts::Samples;
use crate::engine::Core;

/// Receive-buffer bytes one queued datagram of `size` bytes may cost: the
/// kernel charges the buffer the datagram was allocated in (on Linux up to
/// about twice the payload for large ones) plus its own bookkeeping.
fn queued_cost(size: u64) -> u64 {
    size.saturating_mul(2).saturating_add(1024)
}

/// A non-blocking UDP socket for talking to `server`, bound to `source`
/// (if given) and a port the OS picks, with a receive buffer of at least
/// `rcvbuf` bytes if the OS allows it; returns it and the buffer size it got.
///
/// Unconnected on purpose: `send_to` each datagram, and `recv_from` tells
/// who answered, so an echo from anywhere but the server is seen (and
/// counted) rather than filtered out by the kernel.
pub fn open(
    server: SocketAddr,
    source: Option<IpAddr>,
    rcvbuf: u64,
) -> Result<(UdpSocket, u64), ConnectError> {
    let ip = source.unwrap_or(match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let fail = |call: String, err: io::Error| ConnectError {
        reason: FailReason::of(&err),
        message: format!("{call}: {err}"),
    };
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| fail("socket".into(), e))?;
    super::icmp::ask_for_errors(&socket, server.is_ipv6())
        .map_err(|e| fail("setsockopt IP_RECVERR".into(), e))?;
    let got = raise_rcvbuf(&socket, rcvbuf);
    socket
        .bind(&SocketAddr::new(ip, 0).into())
        .map_err(|e| fail(format!("bind {ip}"), e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("set_nonblocking".into(), e))?;
    Ok((UdpSocket::from_std(socket.into()), got))
}

/// Raises `socket`'s receive buffer to `want` bytes (never lowers it);
/// returns what it is then. Best effort: the OS caps the size
/// (`net.core.rmem_max` on Linux) without an error.
fn raise_rcvbuf(socket: &Socket, want: u64) -> u64 {
    let size = |s: &Socket| s.recv_buffer_size().map_or(0, |n| n as u64);
    if size(socket) < want {
        let _ = socket.set_recv_buffer_size(usize::try_from(want).unwrap_or(usize::MAX));
    }
    size(socket)
}

impl Udp {
    /// Opens and registers every socket of this loop (a failure is counted
    /// by reason, as a TCP connect's, and never stops the run), sets the
    /// open loop's schedules, and sends the first datagrams.
    ///
    /// Each socket's receive buffer is raised to hold the echoes of its
    /// whole pipeline: echoes a full buffer drops are lost on this host,
    /// and would be blamed on the server. Where the OS caps it lower, the
    /// first loop says so, once.
    pub(super) fn open_all(&mut self, core: &mut Core) {
        let now = core.now();
        let want = core
            .plan
            .pipeline
            .saturating_mul(queued_cost(core.plan.message_size));
        for s in 0..self.flows.len() {
            core.counts.attempted += 1;
            match self.open_one(core, s, want) {
                Ok(got) => {
                    if got < want && core.id == 0 && s == 0 {
                        eprintln!(
                            "echoloop-stress: warning: a socket's receive buffer is {got} bytes, \
                             less than the {want} that --pipeline {} × --message-size {} may \
                             need: echoes may be dropped on this host and counted lost (raise \
                             the OS's limit, net.core.rmem_max on Linux)",
                            core.plan.pipeline, core.plan.message_size
                        );
                    }
                    core.counts.established += 1;
                    self.open += 1;
                    self.active += 1;
                }
                Err(e) => {
                    core.counts.failed[e.reason.index()] += 1;
                    Samples::keep(&mut core.samples.failed[e.reason.index()], || e.message);
                    self.flows[s].done = true;
                }
            }
            let flow = &mut self.flows[s];
            flow.rate_origin = core.send_origin(flow.index, now);
        }
        self.check_gso();
        for s in 0..self.flows.len() {
            self.pump(core, s);
        }
    }

    /// Opens socket `s` with a receive buffer of `rcvbuf` bytes if allowed,
    /// and registers it READABLE; returns the buffer size it got.
    fn open_one(&mut self, core: &mut Core, s: usize, rcvbuf: u64) -> Result<u64, ConnectError> {
        let index = self.flows[s].index;
        let source = core.plan.source_for(index);
        let (mut socket, got) = open(core.plan.addr, source, rcvbuf)?;
        core.poll
            .registry()
            .register(&mut socket, Token(s), rules::interest(false))
            .map_err(|e| ConnectError {
                reason: FailReason::Other,
                message: format!("register: {e}"),
            })?;
        self.flows[s].socket = Some(socket);
        Ok(got)
    }
}
