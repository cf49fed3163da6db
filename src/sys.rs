//! Everything that differs between operating systems, behind `cfg` in one place.
//!
//! The rest of the crate is written against mio's portable API. The few facts
//! that mio does not hide live here, each with the reason it differs; the
//! crate docs (`# Portability` in `lib.rs`) sum them up. The one difference
//! that changes the technique itself, the epoll short-I/O shortcut, is a
//! rule of the technique and lives with the others in [`crate::rules`].

use std::io;

/// Whether [`unacknowledged`] can answer on this OS.
pub(crate) const SEES_UNACKNOWLEDGED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Bytes our kernel still holds for the peer on `stream`: not yet sent, or
/// sent and not yet acknowledged. `Some(0)` proves the peer's TCP has every
/// byte we wrote, so closing now loses nothing.
///
/// Linux answers with `SIOCOUTQ` (the same request as `TIOCOUTQ`), which
/// counts from the oldest unacknowledged byte. Elsewhere `None`: Windows
/// and the BSDs have other, less portable counters (`SIO_TCP_INFO`,
/// `TCP_INFO`, `SO_NWRITE`) and are not measured here, so there shutdown
/// keeps waiting for the peer's FIN or the end of the grace period.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unacknowledged(stream: &mio::net::TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: a valid socket descriptor and a pointer to a live c_int, which
    // is what SIOCOUTQ writes; nothing is retained.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if r == 0 {
        usize::try_from(queued).ok()
    } else {
        None
    }
}

/// Bytes our kernel still holds for the peer; this OS does not say.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn unacknowledged(_stream: &mio::net::TcpStream) -> Option<usize> {
    None
}

/// Raises this process's soft open-file limit to its hard limit and returns
/// the new soft limit.
///
/// Every connection is a descriptor, and distributions ship a soft limit of
/// 1,024 while allowing far more; a server that does not ask caps itself at
/// about a thousand clients. Windows has no such per-process limit: `None`.
#[cfg(unix)]
pub fn raise_fd_limit() -> io::Result<Option<u64>> {
    rlimit::increase_nofile_limit(u64::MAX).map(Some)
}

/// Raises this process's soft open-file limit to its hard limit and returns
/// the new soft limit. Windows has no such per-process limit: `None`.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> io::Result<Option<u64>> {
    Ok(None)
}

/// Whether an `accept` error means the process or the system is out of
/// descriptors or socket memory.
///
/// The pending connection stays in the listen backlog, so the listener stays
/// "ready": retrying at once would spin at 100% CPU. The loop pauses
/// accepting instead (see `ACCEPT_BACKOFF` in `server.rs`).
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    #[cfg(unix)]
    const CODES: &[i32] = &[libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
    // WSAEMFILE and WSAENOBUFS; spelled out to avoid a windows-sys dependency.
    #[cfg(windows)]
    const CODES: &[i32] = &[10024, 10055];
    #[cfg(not(any(unix, windows)))]
    const CODES: &[i32] = &[];
    err.raw_os_error().is_some_and(|code| CODES.contains(&code))
        || err.kind() == io::ErrorKind::OutOfMemory
}

/// The default `--max-connections` for an open-file limit.
///
/// Leaves room for the listeners, the poll instance and its waker, standard
/// streams, log files — and the one spare descriptor that refusing a client
/// (accept, then close) needs. Without a limit (Windows) we pick a bound that
/// keeps memory predictable: connections × `--max-pending` at most.
pub(crate) fn default_max_connections(fd_limit: Option<u64>) -> usize {
    const HEADROOM: u64 = 64;
    const WITHOUT_LIMIT: usize = 16_384;
    match fd_limit {
        // An unlimited hard limit is not an invitation to a million clients.
        Some(limit) => usize::try_from(limit.saturating_sub(HEADROOM).max(1))
            .unwrap_or(usize::MAX)
            .min(1 << 20),
        None => WITHOUT_LIMIT,
    }
}
