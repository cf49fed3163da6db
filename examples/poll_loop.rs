//! # poll_loop: the WSAPoll technique — a readiness loop on `poll(2)` / `WSAPoll`
//!
//! The same server as `select_loop`, on the call that replaced `select`: one
//! thread, every socket non-blocking, and one array of `pollfd` entries —
//! `{ socket, events we ask about, revents the call reports }` — handed to
//! `poll` (Unix, through `libc`) or `WSAPoll` (Windows Vista and later,
//! through `windows-sys`) on every turn. No mio.
//!
//! ## The array, kept in step with the connections
//!
//! `fds[0]` is the listener; `fds[i + 1]` belongs to `conns[i]`. Before each
//! call every entry's `events` is set from what that client wants; after it,
//! `revents` says what happened. A closed client is removed with
//! `swap_remove` from both vectors at once, so the last entry moves into the
//! hole in both and they stay paired, at O(1) per close (no shifting, no map
//! from socket to index). Unlike `select`'s sets, the array is not
//! overwritten by the call, so only `events` is refreshed.
//!
//! ## The rules it follows (see `docs/guide.md` §3)
//!
//! * `poll` is **level-triggered**, like `select`: one read per report is
//!   enough (bytes left in the kernel are reported again), and one read per
//!   turn keeps the loop fair. Accept takes at most `ACCEPTS_PER_TURN` per
//!   turn.
//! * Ask only about what you will act on: `POLLOUT` only while output is
//!   pending, `POLLIN` only while below the cap and not half-closed.
//!   Errors and hang-ups (`POLLERR`, `POLLHUP`) are reported whatever
//!   `events` says, on both systems; a client at the cap still learns of a
//!   reset (compare `select_loop` on Windows).
//! * **Back-pressure**: at most `MAX_PENDING` echo bytes held per client; at
//!   the cap we stop reading it and TCP flow control slows it down.
//! * **Half-close**: after `recv` returns 0 everything received is still
//!   echoed, then the socket is closed. An error closes that client only.
//!
//! ## Its limits, honestly
//!
//! * No `FD_SETSIZE`: any descriptor number or handle fits, and the count is
//!   bounded only by the open-file limit (on Linux `poll` fails with EINVAL
//!   when `nfds` exceeds `RLIMIT_NOFILE`; one entry per open socket never
//!   does).
//! * Still **O(n) per call**: the whole array is copied into the kernel,
//!   every socket in it is checked, and we scan every `revents` for the few
//!   that are set. `docs/guide.md` §9 measures what that costs, on mio's
//!   `poll(2)` backend, as idle connections grow.
//! * `WSAPoll`'s historic defect: until Windows 10 version 2004 it did not
//!   report a failed non-blocking `connect` at all (Microsoft's `WSAPoll`
//!   page; since then it reports `POLLHUP | POLLERR | POLLWRNORM`), so a
//!   client polling a connect to a closed port waited forever — the reason
//!   curl and libuv stopped using it. A server never waits on a `connect`:
//!   its sockets come from `accept` already connected, and the events it
//!   relies on (readable, writable, reset) were always reported. Nothing
//!   here depends on the fix.
//! * Another thread cannot wake a `WSAPoll` (or `poll`) except through a
//!   socket or pipe of its own in the array; this loop needs no waking.
//!
//! ## When it is the right choice
//!
//! Up to a few hundred connections, portable code without a dependency, or
//! a loop whose every step you want to see. Past that, the O(n) per call
//! dominates: use epoll/kqueue/IOCP, through mio (`minimal_loop`, echoloop).
//!
//! ## Run it
//!
//! ```text
//! cargo run --example poll_loop -- 127.0.0.1:7878
//! nc 127.0.0.1 7878
//! ```
//!
//! The first line on stdout is `listening on ADDR` (port 0 picks a free
//! port). It runs until killed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Most echo bytes held for a client that is not reading; at the cap we stop
/// reading it.
const MAX_PENDING: usize = 64 * 1024;
/// Most clients accepted per turn, so a connection flood cannot starve the
/// clients being served.
const ACCEPTS_PER_TURN: usize = 64;
/// How long accepting pauses after an accept error such as EMFILE: the
/// listener stays readable, so retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// One client; its `pollfd` is `fds[index + 1]`.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Echo bytes the socket has not taken yet, at most `MAX_PENDING`.
    pending: Vec<u8>,
    /// The client shut down its sending side (`recv` returned 0).
    peer_done: bool,
}

impl Conn {
    /// The `events` to ask about: POLLIN below the cap and before the
    /// client's FIN, POLLOUT only while output is pending.
    fn events(&self) -> i16 {
        let mut events = 0;
        if !self.peer_done && self.pending.len() < MAX_PENDING {
            events |= sys::READ;
        }
        if !self.pending.is_empty() {
            events |= sys::WRITE;
        }
        events
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("poll_loop: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let listener = bind_listener()?;
    println!("listening on {}", listener.local_addr()?);

    let mut fds = vec![sys::pollfd(&listener, sys::READ)];
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024]; // one read buffer for every client
    let mut accept_paused_until: Option<Instant> = None;

    loop {
        // 1. Refresh `events` (the call leaves them alone, but what each
        //    client wants changes as it is served).
        let now = Instant::now();
        if accept_paused_until.is_some_and(|t| now >= t) {
            accept_paused_until = None;
        }
        for (fd, conn) in fds[1..].iter_mut().zip(&conns) {
            fd.events = conn.events();
        }

        // 2. Wait. While accepting is paused the listener's entry is left
        //    out by passing the array from index 1 (it is first for that
        //    reason). An empty array only sleeps: WSAPoll rejects it.
        let first = usize::from(accept_paused_until.is_some());
        let timeout = accept_paused_until.map(|t| t.saturating_duration_since(now));
        if fds.len() == first {
            std::thread::sleep(timeout.unwrap_or(ACCEPT_PAUSE));
            continue;
        }
        match sys::poll(&mut fds[first..], timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue, // a signal
            // Otherwise a bug (EFAULT, EINVAL) or no memory: nothing to retry.
            Err(e) => return Err(context(sys::POLL, e)),
        }

        // 3. Serve the clients whose `revents` are set.
        serve_ready(&mut fds, &mut conns, &mut buf);

        // 4. Accept. After serving, so a new entry is first looked at after
        //    it has been through a call.
        if first == 0 && fds[0].revents != 0 {
            if let Err(e) = accept_clients(&listener, &mut fds, &mut conns) {
                eprintln!("poll_loop: {e}; pausing accept for {ACCEPT_PAUSE:?}");
                accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
    }
}

/// socket + bind + listen (inside `TcpListener::bind`), then non-blocking.
fn bind_listener() -> io::Result<TcpListener> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let mut addrs = arg.to_socket_addrs().map_err(|e| context(&arg, e))?;
    let addr = addrs.next().ok_or(ErrorKind::AddrNotAvailable)?;
    let listener = TcpListener::bind(addr).map_err(|e| context(&format!("bind {addr}"), e))?;
    // ioctl(FIONBIO) / ioctlsocket(FIONBIO): readiness can be stale (the
    // client reset before we accepted); non-blocking, that is WouldBlock.
    listener
        .set_nonblocking(true)
        .map_err(|e| context("set_nonblocking", e))?;
    Ok(listener)
}

/// Accepts up to `ACCEPTS_PER_TURN` clients, adding an entry to both
/// vectors for each. An error that is not about one client (EMFILE,
/// ENOBUFS, ...) is returned, for the caller to pause.
fn accept_clients(
    listener: &TcpListener,
    fds: &mut Vec<sys::PollFd>,
    conns: &mut Vec<Conn>,
) -> io::Result<()> {
    for _ in 0..ACCEPTS_PER_TURN {
        // accept: a finished connection from the backlog, a new socket.
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            // A signal, or the client gave up before we accepted it.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => continue,
            Err(e) => return Err(context("accept", e)),
        };
        // ioctl(FIONBIO): an accepted socket does not inherit non-blocking
        // mode on Linux (it does on Windows; setting it again is harmless).
        if let Err(e) = stream.set_nonblocking(true) {
            eprintln!("poll_loop: {peer}: set_nonblocking: {e}");
            continue;
        }
        fds.push(sys::pollfd(&stream, sys::READ));
        conns.push(Conn {
            stream,
            peer,
            pending: Vec::new(),
            peer_done: false,
        });
    }
    Ok(())
}

/// Serves every client whose `revents` is non-zero; closes the finished and
/// failed ones by swap-removing them from both vectors.
fn serve_ready(fds: &mut Vec<sys::PollFd>, conns: &mut Vec<Conn>, buf: &mut [u8]) {
    let mut i = 0;
    while i < conns.len() {
        let revents = std::mem::replace(&mut fds[i + 1].revents, 0);
        let close = revents != 0
            && serve(&mut conns[i], revents, buf).unwrap_or_else(|e| {
                eprintln!("poll_loop: {}: {e}", conns[i].peer);
                true
            });
        if close {
            // Dropping the stream closes the socket: FIN after the last
            // echoed byte, or RST if the client's bytes were left unread.
            // Both vectors move their last entry into the hole: still paired.
            conns.swap_remove(i);
            fds.swap_remove(i + 1);
            // Do not advance: entry `i` is now the moved one, not yet served.
        } else {
            i += 1;
        }
    }
}

/// Does what `revents` allows. POLLERR/POLLHUP/POLLNVAL count as both
/// readable and writable: the call that follows returns the error or the end
/// of stream. Returns `Ok(true)` when the client is finished.
fn serve(conn: &mut Conn, revents: i16, buf: &mut [u8]) -> io::Result<bool> {
    if revents & sys::NVAL != 0 {
        // Not an open socket: a bug in keeping the array in step.
        return Err(io::Error::other("POLLNVAL"));
    }
    let failed = revents & (sys::ERR | sys::HUP) != 0;
    let wanted = conn.events();
    if wanted & sys::WRITE != 0 && (revents & sys::WRITE != 0 || failed) {
        // send: flush what the client could not take before, as far as the
        // socket takes it now (a partial write is normal).
        let sent = write_some(&mut conn.stream, &conn.pending)?;
        conn.pending.drain(..sent);
    }
    if wanted & sys::READ != 0 && (revents & sys::READ != 0 || failed) {
        // recv, once (level-triggered), never more than the room left
        // below the cap.
        let room = (MAX_PENDING - conn.pending.len()).min(buf.len());
        match conn.stream.read(&mut buf[..room]) {
            Ok(0) => conn.peer_done = true, // FIN: echo what is pending, then close
            Ok(n) => echo(conn, &buf[..n])?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {} // a spurious report
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(context("recv", e)),
        }
    }
    Ok(conn.peer_done && conn.pending.is_empty())
}

/// Sends `data` straight back; keeps what the socket does not take. Behind
/// bytes already pending, new ones only queue, so the order is kept.
fn echo(conn: &mut Conn, data: &[u8]) -> io::Result<()> {
    let sent = if conn.pending.is_empty() {
        write_some(&mut conn.stream, data)?
    } else {
        0
    };
    conn.pending.extend_from_slice(&data[sent..]);
    Ok(())
}

/// Writes as much of `data` as the socket takes now; returns how much.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(context("send", e)),
        }
    }
    Ok(sent)
}

/// Prefix an error with the name of the call that returned it.
fn context(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Rounds a timeout up to whole milliseconds (rounding down would wake up
/// early and spin until the deadline); -1 waits for ever.
fn timeout_ms(timeout: Option<Duration>) -> i32 {
    timeout.map_or(-1, |d| {
        let ms = d.as_nanos().div_ceil(1_000_000);
        i32::try_from(ms).unwrap_or(i32::MAX)
    })
}

/// `poll(2)` through libc.
#[cfg(unix)]
mod sys {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    pub const POLL: &str = "poll";
    pub type PollFd = libc::pollfd;
    pub const READ: i16 = libc::POLLIN;
    pub const WRITE: i16 = libc::POLLOUT;
    pub const ERR: i16 = libc::POLLERR;
    pub const HUP: i16 = libc::POLLHUP;
    pub const NVAL: i16 = libc::POLLNVAL;

    pub fn pollfd(socket: &impl AsRawFd, events: i16) -> PollFd {
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events,
            revents: 0,
        }
    }

    /// poll(fds, nfds, timeout_ms): blocks until an entry has `revents` or
    /// the timeout passes. Returns how many entries have `revents` set.
    pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
        let nfds = fds.len() as libc::nfds_t;
        // SAFETY: `fds` is a valid, exclusively borrowed array of `nfds`
        // pollfd structures for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, super::timeout_ms(timeout)) };
        if n < 0 {
            Err(io::Error::last_os_error()) // EINTR, EFAULT, EINVAL, ENOMEM
        } else {
            Ok(n as usize)
        }
    }
}

/// `WSAPoll` through windows-sys. Same shape as `poll`; the flags differ.
#[cfg(windows)]
mod sys {
    use std::io;
    use std::os::windows::io::AsRawSocket;
    use std::time::Duration;

    use windows_sys::Win32::Networking::WinSock::{
        WSAGetLastError, WSAPoll, POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLWRNORM, SOCKET,
        SOCKET_ERROR, WSAPOLLFD,
    };

    pub const POLL: &str = "WSAPoll";
    pub type PollFd = WSAPOLLFD;
    /// POLLRDNORM, not POLLIN: Winsock's POLLIN also includes POLLRDBAND
    /// (out-of-band data), which we do not ask about. WSAPoll rejects flags
    /// its provider does not support (POLLPRI) with WSAEINVAL.
    pub const READ: i16 = POLLRDNORM;
    pub const WRITE: i16 = POLLWRNORM;
    pub const ERR: i16 = POLLERR;
    pub const HUP: i16 = POLLHUP;
    pub const NVAL: i16 = POLLNVAL;

    pub fn pollfd(socket: &impl AsRawSocket, events: i16) -> PollFd {
        WSAPOLLFD {
            fd: socket.as_raw_socket() as SOCKET,
            events,
            revents: 0,
        }
    }

    /// WSAPoll(fdArray, fds, timeout): like poll(2). The array must hold at
    /// least one valid socket (WSAEINVAL otherwise).
    pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
        let count = u32::try_from(fds.len()).unwrap_or(u32::MAX);
        // SAFETY: `fds` is a valid, exclusively borrowed array of at least
        // `count` WSAPOLLFD structures for the duration of the call.
        let n = unsafe { WSAPoll(fds.as_mut_ptr(), count, super::timeout_ms(timeout)) };
        if n == SOCKET_ERROR {
            // SAFETY: plain call; reads this thread's last Winsock error.
            Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }))
        } else {
            Ok(n as usize)
        }
    }
}
