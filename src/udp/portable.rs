//! Everywhere but Linux's epoll (Windows, the BSDs, and Linux under mio's
//! forced `poll(2)` backend, so that CI runs this path too): one
//! `recv_from` and one `send_to` per datagram, until `WouldBlock` or the
//! budget. The same functions as `batch.rs`, so `udp.rs` names neither.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::UdpSocket;

use super::{is_peer_error, Policy, Udp, DATAGRAMS_PER_TURN};
use crate::rules::DATAGRAM_MAX;
use crate::stats::{Counter, Counters};

/// The one datagram buffer, [`DATAGRAM_MAX`] bytes.
#[derive(Debug)]
pub(super) struct Buffers {
    /// Where each datagram is received, and sent back from.
    buf: Vec<u8>,
}

impl Buffers {
    /// The buffer, allocated once.
    pub(super) fn new() -> Self {
        Buffers {
            buf: vec![0; DATAGRAM_MAX],
        }
    }
}

/// Receives and echoes on `udp` one datagram at a time until `WouldBlock`
/// or the budget is spent. Returns an unexpected receive error.
pub(super) fn serve(
    buffers: &mut Buffers,
    policy: &mut Policy,
    udp: &mut Udp,
    counters: &Counters,
    now: Instant,
) -> io::Result<()> {
    let buf = &mut buffers.buf;
    for _ in 0..DATAGRAMS_PER_TURN {
        match udp.socket.recv_from(buf) {
            Ok((n, src)) => {
                if policy.admit(src, n, 1, counters, now) == 1 {
                    let sent = send_to(&udp.socket, &buf[..n], src).map(drop);
                    policy.account_send(sent, 1, n, Some(src), counters, now);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                udp.ready = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_peer_error(&e) => counters.add(Counter::UdpErrors, 1),
            Err(e) => return Err(e),
        }
    }
    Ok(()) // budget spent: still ready, served again next turn
}

/// `send_to`, retrying `Interrupted`.
fn send_to(socket: &UdpSocket, data: &[u8], dst: SocketAddr) -> io::Result<usize> {
    loop {
        match socket.send_to(data, dst) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
