//! The rules of the readiness technique, written once: the server's loop and
//! the stress client's loops both follow them, through these items.
//!
//! # Readiness is a hint that something changed
//!
//! mio promises an event when a socket *becomes* ready; it promises no
//! further event while the socket stays ready (on epoll and kqueue it is
//! edge-triggered; on Windows and `poll(2)` interest is re-armed by the
//! operation that returns `WouldBlock`, or by `reregister`). Four rules
//! follow, and every loop here keeps them:
//!
//! 1. **Drain until `WouldBlock`, or remember you did not.** Stop reading
//!    (or accepting) early and whatever is left raises no new event. A loop
//!    that stops at a budget keeps a note and comes back without one.
//! 2. **Events are hints.** An event may be spurious (mio's Windows backend
//!    reports a writable event after a read hits `WouldBlock`, mio#1963), or
//!    name a socket closed earlier in the same batch — so a token freed while
//!    a batch is dispatched must not be reused before the batch is done (the
//!    server admits new connections only after it). Serving a socket with
//!    nothing to do must cost at most one `WouldBlock`. Closed and error
//!    flags are hints too: the next read or write says what happened, and
//!    that call's error is the one to report.
//! 3. **Ask for WRITABLE only while output is pending** ([`interest`]):
//!    a socket with room in its send buffer is almost always writable, so
//!    keeping the interest would wake the loop for nothing on level-ish
//!    backends and costs a `reregister` whenever it changes.
//! 4. **A short read proves nothing — except on epoll**
//!    ([`SHORT_IO_MEANS_DRAINED`]), and even there not when the event said
//!    the peer closed or sent urgent data ([`short_read_unproven`]), nor
//!    over a transport that holds bytes of its own: the rule is asked of
//!    the connection's [`Transport`](crate::transport::Transport).
//!
//! Writes follow rule 1 too: [`write_until_full`] writes until the data is
//! gone or the socket says `WouldBlock` (or, on epoll, takes less than it
//! was offered).

use std::io::{self, Write};

use mio::event::{Event, Source};
use mio::{Interest, Registry, Token};

/// Bytes to receive a datagram into: more than any UDP payload (65,507 over
/// IPv4, 65,527 over IPv6). A datagram socket has no short read — a buffer
/// smaller than the datagram silently cuts it — so the server never
/// truncates an echo, and the stress client sees an overlong one as such.
pub const DATAGRAM_MAX: usize = 64 * 1024;

/// Whether a read that returned fewer bytes than asked for proves the socket
/// is drained, so the read that would only say `WouldBlock` can be skipped;
/// likewise a write that took fewer bytes than offered proves the send buffer
/// is full.
///
/// True on Linux's epoll: it is edge-triggered on *arrival* (and on freed send
/// space), so data that lands after our short read raises a new edge and we
/// will hear of it. Skipping the extra call saves one syscall per message —
/// a third of a ping-pong's total. Two exceptions, both flagged by the event
/// itself ([`short_read_unproven`]): a FIN queued behind the data (the end
/// of stream is still to be read, and the one event is used up), and urgent
/// data (Linux's `recv` never reads across the urgent mark, tcp(7)).
///
/// False everywhere else we run. mio's Windows backend (AFD poll over an I/O
/// completion port) and its `poll(2)` backend (`--cfg
/// mio_unsupported_force_poll_poll`) both *re-arm* a socket's interest only
/// when an operation returns `WouldBlock` (or on `reregister`); skip that
/// call and no further event ever comes, and the connection hangs. kqueue
/// (`EV_CLEAR`) would likely allow it too, but it is not measured here, so
/// we stay on the safe side.
pub const SHORT_IO_MEANS_DRAINED: bool = cfg!(all(
    any(target_os = "linux", target_os = "android"),
    not(mio_unsupported_force_poll_poll)
));

/// The interest every connection is registered with for input.
///
/// On Linux, `PRIORITY` too (`EPOLLPRI`): it tells us urgent data arrived,
/// the case where a short read on epoll does not prove the socket drained.
/// Urgent bytes must also be kept in the stream (`SO_OOBINLINE`), so they
/// are read, echoed and verified like any other. It adds no system call: the
/// interest is part of the same registration. mio has no such flag
/// elsewhere; there every read is drained to `WouldBlock` anyway.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const READ_INTEREST: Interest = Interest::READABLE.add(Interest::PRIORITY);
/// The interest every connection is registered with for input.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const READ_INTEREST: Interest = Interest::READABLE;

/// The interest for a connection with (`pending`) or without output it
/// could not write yet: WRITABLE only while there is some.
pub fn interest(pending: bool) -> Interest {
    if pending {
        READ_INTEREST | Interest::WRITABLE
    } else {
        READ_INTEREST
    }
}

/// Changes `source`'s registration to [`interest`]`(pending)` if `*registered`
/// (what is registered now) differs — a system call only when it must.
pub fn update_interest<S: Source + ?Sized>(
    registry: &Registry,
    source: &mut S,
    token: Token,
    registered: &mut bool,
    pending: bool,
) -> io::Result<()> {
    if *registered != pending {
        registry.reregister(source, token, interest(pending))?;
        *registered = pending;
    }
    Ok(())
}

/// Whether `event` says a short read may *not* mean the socket is drained:
/// the peer closed (data and FIN can come in one event), an error, or
/// urgent data. While this holds, read until the read itself says 0 or
/// `WouldBlock`.
pub fn short_read_unproven(event: &Event) -> bool {
    event.is_read_closed() || event.is_error() || event.is_priority()
}

/// Whether a read that returned `n` of the `asked` bytes proves the socket
/// drained (rule 4): only on epoll, and not while an event said otherwise.
pub fn read_proves_drained(n: usize, asked: usize, unproven: bool) -> bool {
    SHORT_IO_MEANS_DRAINED && n < asked && !unproven
}

/// Writes as much of `data` as the socket takes now; returns how much.
///
/// Stops at `WouldBlock`, retries `Interrupted`, and on epoll also stops after
/// a partial write: the send buffer is full and the next call would only say
/// `WouldBlock` ([`SHORT_IO_MEANS_DRAINED`]). A write of 0 bytes is an error
/// (`WriteZero`): the socket will never take more.
pub fn write_until_full<W: Write>(mut socket: W, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match socket.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                if SHORT_IO_MEANS_DRAINED && written < data.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
