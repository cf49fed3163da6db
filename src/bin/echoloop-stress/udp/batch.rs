//! Linux's epoll: a `--udp` loop's calls batched as the server's are
//! ([`echoloop::mmsg`] says how and why). A socket's unsent datagrams —
//! one size, one destination — go out as one GSO message, and one
//! `recvmmsg` takes up to [`echoloop::mmsg::BATCH`] echoes, a short batch
//! proving the socket drained. The same functions as `portable.rs`, so
//! `wire.rs` names neither.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

use echoloop::mmsg;

/// Where a loop receives echoes: a `recvmmsg` batch (boxed: it is a few
/// hundred bytes of lengths and addresses besides its buffers).
pub type Inbox = Box<mmsg::Received>;

/// A loop's receive memory.
pub fn inbox() -> Inbox {
    Box::new(mmsg::Received::new())
}

/// The receive call, for error messages.
pub const RECEIVE_CALL: &str = "recvmmsg";

/// The call that sends a burst as one message, for error messages.
pub const SEGMENTS_CALL: &str = "sendmsg (UDP_SEGMENT)";

/// Receives what is waiting on `socket` into `inbox`; returns how many
/// datagrams came (at least one).
pub fn receive(inbox: &mut Inbox, socket: &UdpSocket) -> io::Result<usize> {
    inbox.receive(socket)
}

/// Datagram `k` of the last receive, and where it came from.
pub fn datagram(inbox: &Inbox, k: usize) -> (&[u8], Option<SocketAddr>) {
    (inbox.data(k), inbox.source(k))
}

/// Whether a receive of `n` datagrams proves the socket drained: a short
/// batch does.
pub fn drained(n: usize) -> bool {
    echoloop::rules::read_proves_drained(n, mmsg::BATCH, false)
}

/// How many datagrams of `size` bytes a socket issues to send together
/// (at most its `pipeline`): as many as one GSO message carries.
pub fn burst(size: u64, pipeline: u64) -> usize {
    let most = mmsg::gso_capacity(usize::try_from(size).unwrap_or(usize::MAX));
    most.min(usize::try_from(pipeline).unwrap_or(usize::MAX))
        .max(1)
}

/// Whether the kernel has GSO: one that does not would ignore the segment
/// size and send a burst as one datagram ([`echoloop::mmsg`]).
pub fn gso_supported(socket: &UdpSocket) -> bool {
    mmsg::gso_supported(socket)
}

/// Sends `out`, datagrams of `size` bytes, to `addr` as one GSO message.
pub fn send_segments(
    socket: &UdpSocket,
    out: &[u8],
    size: usize,
    addr: SocketAddr,
) -> io::Result<()> {
    mmsg::send_segments(socket, out, size, addr)
}

/// Whether `e` says the kernel will not take GSO messages.
pub fn gso_refused(e: &io::Error) -> bool {
    mmsg::gso_refused(e)
}
