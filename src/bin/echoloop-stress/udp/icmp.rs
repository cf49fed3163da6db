//! ICMP errors for earlier datagrams (a closed port's "port unreachable"),
//! seen on the client's unconnected sockets, with the platform split here.
//!
//! - **Linux** tells an unconnected UDP socket nothing unless asked: with
//!   `IP_RECVERR` (`IPV6_RECVERR`) each error is queued on the socket's
//!   error queue, and the next call on the socket fails with it
//!   (`ECONNREFUSED` for a closed port). On that failure the queue is read
//!   out (`recvmsg` with `MSG_ERRQUEUE`): one entry per error, so several
//!   that came between two calls are all counted, and the queue (charged
//!   to the receive buffer) never crowds out echoes.
//! - **Windows** reports each one as `WSAECONNRESET` from a later
//!   `recvfrom` (or `send_to`): one error, one count.
//! - **Elsewhere** (macOS, the BSDs) an unconnected socket is never told;
//!   the count is unknown, and the text report leaves its line out
//!   ([`KNOWN`]).

use std::io;

use mio::net::UdpSocket;
use socket2::Socket;

/// Whether this platform reports ICMP errors to an unconnected socket, so
/// that a count of 0 means none came.
pub const KNOWN: bool = cfg!(any(target_os = "linux", windows));

/// Asks the OS to report ICMP errors to `socket` (Linux: `IP_RECVERR` or,
/// for IPv6, `IPV6_RECVERR`); nothing to ask elsewhere.
#[cfg(target_os = "linux")]
pub fn ask_for_errors(socket: &Socket, ipv6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, a pointer to a live c_int and its
    // exact size, as setsockopt(2) requires; nothing is retained.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Nothing to ask for where errors are reported unasked (or never).
#[cfg(not(target_os = "linux"))]
pub fn ask_for_errors(_socket: &Socket, _ipv6: bool) -> io::Result<()> {
    Ok(())
}

/// How many ICMP errors the failure `e` of a call on `socket` stands for,
/// or `None` if it is a failure of the socket itself.
pub fn reported(socket: Option<&UdpSocket>, e: &io::Error) -> Option<u64> {
    let queued = socket.map_or(0, read_error_queue);
    if queued > 0 {
        Some(queued)
    } else {
        is_peer_error(e).then_some(1)
    }
}

/// Whether an error reports what became of an earlier datagram (a port
/// unreachable: `ConnectionRefused` on Linux, Windows' `WSAECONNRESET`),
/// not a problem of the socket.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// Reads `socket`'s error queue out; returns how many errors it held.
#[cfg(target_os = "linux")]
fn read_error_queue(socket: &UdpSocket) -> u64 {
    use std::os::fd::AsRawFd;
    let mut taken = 0;
    loop {
        // The copy of the datagram that failed is not needed: a few bytes
        // of it, the rest cut (MSG_TRUNC), and no control message.
        let mut data = [0u8; 16];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: an all-zero msghdr is valid (no name, no control).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: a valid descriptor and a msghdr whose one iovec points
        // at a live buffer of its length; nothing is retained.
        let n = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            // EAGAIN: the queue is empty (EINTR: read it next time).
            return taken;
        }
        taken += 1;
    }
}

/// No error queue: each error is one failed call.
#[cfg(not(target_os = "linux"))]
fn read_error_queue(_socket: &UdpSocket) -> u64 {
    0
}
