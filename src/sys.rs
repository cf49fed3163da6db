//! Everything that differs between operating systems, behind `cfg` in one place.
//!
//! The rest of the crate is written against mio's portable API. The few facts
//! that mio does not hide live here, each with the reason it differs; the
//! crate docs (`# Portability` in `lib.rs`) sum them up. The one difference
//! that changes the technique itself, the epoll short-I/O shortcut, is a
//! rule of the technique and lives with the others in [`crate::rules`].

use std::io;
use std::time::Duration;

use crate::Config;

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

/// How `--tcp-keepalive SECS` is spelled to the kernel: the socket options
/// whose effects add up to "a peer that stopped answering is reaped SECS
/// after it last did".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`).
    pub(crate) idle: Duration,
    /// Time between unanswered probes (`TCP_KEEPINTVL`).
    pub(crate) interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    pub(crate) retries: u32,
    /// Longest that sent data may stay unacknowledged (`TCP_USER_TIMEOUT`,
    /// Linux): SECS itself.
    pub(crate) user_timeout: Duration,
}

impl Keepalive {
    /// The schedule for a bound of `after`: `idle + retries × interval =
    /// after` exactly (3 probes, a sixth of it apart), or `None` if `after`
    /// is not a whole number of seconds within [`Config::TCP_KEEPALIVE`].
    pub(crate) fn new(after: Duration) -> Option<Keepalive> {
        let secs = after.as_secs();
        if after.subsec_nanos() != 0 || Config::TCP_KEEPALIVE.check(secs).is_err() {
            return None;
        }
        let retries = 3.min(secs - 1);
        let interval = (secs / 6).max(1);
        Some(Keepalive {
            idle: Duration::from_secs(secs - retries * interval),
            interval: Duration::from_secs(interval),
            retries: retries as u32,
            user_timeout: after,
        })
    }

    /// Sets the options on an accepted socket.
    ///
    /// - `SO_KEEPALIVE` with the idle time: everywhere.
    /// - The probe interval and count: where the OS has the options (Linux,
    ///   the BSDs, macOS, Windows 10 1709 and later); elsewhere the OS's own
    ///   (on Windows before 1709, 10 probes: the bound is then `idle + 10 ×
    ///   interval`).
    /// - `TCP_USER_TIMEOUT`, Linux and Android: keepalive probes go out only
    ///   while nothing is in flight, so a peer that vanishes while we owe it
    ///   output would otherwise be given up only after the retransmission
    ///   limit (`tcp_retries2`, about 15 minutes). With it, sent data
    ///   unacknowledged for SECS drops the connection; and Linux then ends a
    ///   keepalive failure by the same bound, at the first probe due at or
    ///   after SECS of silence — which the schedule makes SECS itself.
    pub(crate) fn apply(&self, stream: &mio::net::TcpStream) -> io::Result<()> {
        let socket = socket2::SockRef::from(stream);
        let params = socket2::TcpKeepalive::new().with_time(self.idle);
        #[cfg(any(
            target_os = "linux",
            target_os = "android",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "dragonfly",
            target_os = "macos",
            target_os = "ios",
            target_os = "windows",
        ))]
        let params = params
            .with_interval(self.interval)
            .with_retries(self.retries);
        socket.set_tcp_keepalive(&params)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        socket.set_tcp_user_timeout(Some(self.user_timeout))?;
        Ok(())
    }
}

/// Whether a connection error means the peer stopped answering, rather than
/// closing or resetting: keepalive probes or sent data went unacknowledged
/// (`ETIMEDOUT`). Windows reports a keepalive failure during a call as
/// `WSAENETRESET`.
pub(crate) fn is_peer_gone(err: &io::Error) -> bool {
    #[cfg(windows)]
    if err.raw_os_error() == Some(10052) {
        return true;
    }
    err.kind() == io::ErrorKind::TimedOut
}

/// `--pin`: binds the calling thread to the `i`-th core of those this
/// process may run on (wrapping around), and returns that core's number.
#[cfg(target_os = "linux")]
pub(crate) fn pin_to_core(i: usize) -> io::Result<Option<usize>> {
    // SAFETY: `cpu_set_t` is plain data, valid when zeroed; each call gets
    // a pointer to a live set of the size passed; pid 0 is this thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        let Some(&core) = cores.get(i % cores.len().max(1)) else {
            return Ok(None);
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(core))
    }
}

/// `--pin`: not supported on this OS (`None`).
#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_to_core(_i: usize) -> io::Result<Option<usize>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probes add up to the bound exactly, within what the options take.
    #[test]
    fn keepalive_schedule_adds_up() {
        for secs in [2, 3, 4, 5, 6, 7, 20, 60, 7200, Config::TCP_KEEPALIVE.max] {
            let k = Keepalive::new(Duration::from_secs(secs)).expect("in range");
            assert!(k.idle >= Duration::from_secs(1), "{secs}: {k:?}");
            assert!(k.retries >= 1, "{secs}: {k:?}");
            assert_eq!(k.idle + k.interval * k.retries, k.user_timeout, "{secs}");
            assert!(k.idle.as_secs() <= 32_767 && k.interval.as_secs() <= 32_767);
        }
        assert_eq!(
            Keepalive::new(Duration::from_secs(60)),
            Some(Keepalive {
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(10),
                retries: 3,
                user_timeout: Duration::from_secs(60),
            })
        );
        for bad in [0.0, 1.0, 2.5, 65_001.0] {
            assert_eq!(Keepalive::new(Duration::from_secs_f64(bad)), None, "{bad}");
        }
    }
}
