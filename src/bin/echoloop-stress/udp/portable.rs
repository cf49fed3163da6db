//! Everywhere but Linux's epoll (Windows, the BSDs, and Linux under mio's
//! forced `poll(2)` backend, so that CI runs this path too): one `send_to`
//! and one `recv_from` per datagram, until `WouldBlock`, and no GSO. The
//! same functions as `batch.rs`, so `wire.rs` names neither.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

/// Where a loop receives echoes: one buffer of
/// [`echoloop::rules::DATAGRAM_MAX`] bytes, and what the last receive put
/// in it.
#[derive(Debug)]
pub struct Inbox {
    /// The buffer.
    buf: Box<[u8]>,
    /// The length of the datagram in it.
    len: usize,
    /// Where it came from.
    from: Option<SocketAddr>,
}

/// A loop's receive memory.
pub fn inbox() -> Inbox {
    Inbox {
        buf: vec![0; echoloop::rules::DATAGRAM_MAX].into_boxed_slice(),
        len: 0,
        from: None,
    }
}

/// The receive call, for error messages.
pub const RECEIVE_CALL: &str = "recv_from";

/// The call that sends a burst as one message: none here.
pub const SEGMENTS_CALL: &str = "send_to";

/// Receives one datagram from `socket` into `inbox`; returns 1.
pub fn receive(inbox: &mut Inbox, socket: &UdpSocket) -> io::Result<usize> {
    let (n, from) = socket.recv_from(&mut inbox.buf)?;
    inbox.len = n;
    inbox.from = Some(from);
    Ok(1)
}

/// The datagram of the last receive (`k` is 0), and where it came from.
pub fn datagram(inbox: &Inbox, _k: usize) -> (&[u8], Option<SocketAddr>) {
    (&inbox.buf[..inbox.len], inbox.from)
}

/// Whether a receive proves the socket drained: never; only `WouldBlock`
/// does.
pub fn drained(_n: usize) -> bool {
    false
}

/// How many datagrams a socket issues to send together: one at a time.
pub fn burst(_size: u64, _pipeline: u64) -> usize {
    1
}

/// No GSO where the calls are not batched.
pub fn gso_supported(_socket: &UdpSocket) -> bool {
    false
}

/// Never called: GSO is never on here ([`gso_supported`]).
pub fn send_segments(
    _socket: &UdpSocket,
    _out: &[u8],
    _size: usize,
    _addr: SocketAddr,
) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Every GSO message is refused here.
pub fn gso_refused(_e: &io::Error) -> bool {
    true
}
