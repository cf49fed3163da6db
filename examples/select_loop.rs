//! # select_loop: a readiness loop written directly on `select()`
//!
//! The oldest readiness call, used as the Winsock "accepting a connection"
//! page describes it: one thread, every socket non-blocking, and each turn of
//! the loop (1) builds two socket sets — the clients that may be read and the
//! clients that owe output — (2) sleeps in `select` until some socket in them
//! is ready, (3) does on each ready socket what it allows without blocking.
//! There is no mio here: the calls are `libc::select` on Unix and Winsock's
//! `select` on Windows (through `windows-sys`), so what `select` costs and
//! where it breaks is in plain sight. `minimal_loop` is the same server on
//! mio (epoll, kqueue, AFD); `poll_loop` the same on `poll`/`WSAPoll`.
//!
//! ## The rules it follows (see `docs/guide.md` §3 for the why)
//!
//! * `select` is **level-triggered**: a socket is reported for as long as it
//!   is ready, not once when it becomes ready. So the drain rule of an
//!   edge-triggered loop (repeat until `WouldBlock`) does not apply: one read
//!   per report is enough, because bytes left in the kernel make the next
//!   `select` report the socket again. One read per turn is also what keeps
//!   the loop fair: a client sending flat out cannot keep the loop reading it
//!   while the others wait. Accept is the same; we take at most
//!   `ACCEPTS_PER_TURN` clients per turn and `select` tells us about the rest.
//! * The flip side of level triggering: never ask about what you will not act
//!   on. A socket with nothing to send is not put in the write set (it is
//!   writable almost always: `select` would return at once, a busy loop), a
//!   client whose output is at the cap or that has half-closed is not put in
//!   the read set (its unread bytes, or its end of stream, would be reported
//!   on every call).
//! * **Back-pressure**: what a client does not take is kept in its `pending`
//!   buffer, at most `MAX_PENDING` bytes; at the cap we stop reading it, its
//!   data waits in the kernel and TCP flow control slows it down. Memory per
//!   client is bounded whatever it does.
//! * **Half-close**: when a client shuts down its sending side (`recv`
//!   returns 0) everything it sent is still echoed, then the socket is
//!   closed. An error closes that client only.
//!
//! ## Its limits, honestly
//!
//! * **Unix: `FD_SETSIZE`.** An `fd_set` is a bitmap of `FD_SETSIZE` bits
//!   (1,024 on Linux and macOS) indexed by descriptor *number*. `FD_SET` with
//!   a descriptor ≥ `FD_SETSIZE` is undefined behaviour (select(2)); glibc
//!   built with `_FORTIFY_SOURCE` aborts the process ("bit out of range 0 -
//!   FD_SETSIZE on fd_set") and the `libc` crate's `FD_SET` panics. A server's
//!   descriptor numbers grow with its connections (the lowest free number is
//!   taken), so this is reached at about 1,020 clients (0–2 are stdio, 3 the
//!   listener), sooner if the process has other files open. Raising the
//!   open-file limit does not help: the bitmap has a fixed size. This loop
//!   checks every accepted descriptor (`sys::admit`) and refuses one that
//!   does not fit: accept, log one line, close.
//! * **Windows: 64 handles by default.** Winsock's `fd_set` is not a bitmap
//!   but `{ fd_count, fd_array[FD_SETSIZE] }`, with `FD_SETSIZE` 64 in
//!   `winsock2.h`: any handle value fits, the bound is how many. It is a
//!   compile-time size, and Microsoft documents raising it by defining
//!   `FD_SETSIZE` before including the header (`select` reads `fd_count`
//!   entries). We do the same with our own `#[repr(C)]` copy of the struct,
//!   sized 1,024 like Linux's; a client that would not fit is refused the
//!   same way. `FD_ISSET` there is a linear scan of the array.
//! * **Windows reports a reset only in the read set** (Microsoft's `select`
//!   page: readfds, "connection has been closed/reset/terminated"; writefds
//!   only "data can be sent"). A client at the cap is watched for writing
//!   only, so there its reset may never be reported. That is why a client at
//!   the cap that takes nothing for `STALL_LIMIT` is closed: on Linux it only
//!   ends a client that stopped reading; on Windows it is also what frees the
//!   slot of one that reset. (`poll`/`WSAPoll` always report errors and need
//!   no such rule.)
//! * **O(n) per call, however few sockets are active**: the sets are
//!   in/out parameters — `select` overwrites them with the ready subset — so
//!   they are rebuilt before every call; the kernel checks every socket in
//!   them; we then test every client against the result. `docs/guide.md`
//!   explains it (§4) and measures it on mio's `poll(2)` backend (§9),
//!   which pays the same.
//!
//! ## When it is the right choice
//!
//! A handful of sockets in code that must run wherever BSD sockets exist
//! (every Unix, every Windows since Winsock 1.1), or a loop you want to
//! understand completely. With hundreds of connections, or descriptor
//! numbers that may pass 1,023, use `poll_loop`, or epoll/kqueue/IOCP through
//! mio (`minimal_loop`, the echoloop server).
//!
//! ## Run it
//!
//! ```text
//! cargo run --example select_loop -- 127.0.0.1:7878
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
/// clients being served (the rest stay in the backlog, and `select` reports
/// the listener again).
const ACCEPTS_PER_TURN: usize = 64;
/// How long accepting pauses after an accept error such as EMFILE: the
/// listener stays readable, so retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long a client at the cap may take none of its echo before it is
/// closed (see the module doc: Windows does not report its reset otherwise).
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Echo bytes the socket has not taken yet, at most `MAX_PENDING`.
    pending: Vec<u8>,
    /// The client shut down its sending side (`recv` returned 0).
    peer_done: bool,
    /// When the cap was reached with no progress since, for `STALL_LIMIT`.
    stalled_since: Option<Instant>,
}

impl Conn {
    /// In the read set: not half-closed and room below the cap.
    fn wants_read(&self) -> bool {
        !self.peer_done && self.pending.len() < MAX_PENDING
    }

    /// In the write set: only while output is pending.
    fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("select_loop: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let listener = bind_listener()?;
    println!("listening on {}", listener.local_addr()?);

    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024]; // one read buffer for every client
    let mut readable = sys::FdSet::new();
    let mut writable = sys::FdSet::new();
    let mut accept_paused_until: Option<Instant> = None;

    loop {
        // 1. Build the sets: `select` overwrote the last ones.
        let now = Instant::now();
        if accept_paused_until.is_some_and(|t| now >= t) {
            accept_paused_until = None;
        }
        let accepting = accept_paused_until.is_none();
        let stall = build_sets(&listener, accepting, &conns, &mut readable, &mut writable);
        // The timeout: the nearest of a stall deadline and the end of a pause.
        let wake_at = [stall, accept_paused_until].into_iter().flatten().min();
        let timeout = wake_at.map(|t| t.saturating_duration_since(now));

        // 2. Wait. Both sets empty happens only while accepting is paused
        //    with no clients: Winsock's select rejects empty sets
        //    (WSAEINVAL), so just sleep out the pause.
        if readable.is_empty() && writable.is_empty() {
            std::thread::sleep(timeout.unwrap_or(ACCEPT_PAUSE));
            continue;
        }
        match sys::select(&mut readable, &mut writable, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue, // a signal
            // Otherwise a bug (EBADF, EINVAL) or no memory: nothing to retry.
            Err(e) => return Err(context("select", e)),
        }

        // 3. Serve the clients that are ready (and close the stalled ones).
        serve_ready(&mut conns, &readable, &writable, &mut buf);

        // 4. Accept. After serving, so a client accepted now is first
        //    served after it has been in a `select`.
        if accepting && readable.contains(&listener) {
            if let Err(e) = accept_clients(&listener, &mut conns) {
                eprintln!("select_loop: {e}; pausing accept for {ACCEPT_PAUSE:?}");
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
    // ioctl(FIONBIO) / ioctlsocket(FIONBIO): a readable listener can still
    // have nothing to accept (the client reset meanwhile); non-blocking, that
    // is WouldBlock instead of a stalled loop.
    listener
        .set_nonblocking(true)
        .map_err(|e| context("set_nonblocking", e))?;
    Ok(listener)
}

/// FD_ZERO both sets, then FD_SET the listener (unless accepting is paused)
/// and every client for what it wants. Returns the nearest stall deadline.
fn build_sets(
    listener: &TcpListener,
    accepting: bool,
    conns: &[Conn],
    readable: &mut sys::FdSet,
    writable: &mut sys::FdSet,
) -> Option<Instant> {
    readable.clear();
    writable.clear();
    if accepting {
        readable.insert(listener);
    }
    let mut deadline: Option<Instant> = None;
    for conn in conns {
        // `admit` refused every client that would not fit, so these inserts
        // cannot fail; they check anyway and never write out of bounds.
        if conn.wants_read() {
            readable.insert(&conn.stream);
        }
        if conn.wants_write() {
            writable.insert(&conn.stream);
        }
        if let Some(since) = conn.stalled_since {
            let at = since + STALL_LIMIT;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline
}

/// Accepts up to `ACCEPTS_PER_TURN` clients. An error that is not about one
/// client (EMFILE, ENOBUFS, ...) is returned, for the caller to pause.
fn accept_clients(listener: &TcpListener, conns: &mut Vec<Conn>) -> io::Result<()> {
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
        if let Err(why) = sys::admit(&stream, conns.len()) {
            // Refused cleanly: dropping the stream is closesocket/close, the
            // client sees its connection end at once.
            eprintln!("select_loop: refusing {peer}: {why}");
            continue;
        }
        // ioctl(FIONBIO): an accepted socket does not inherit non-blocking
        // mode on Linux (it does on Windows; setting it again is harmless).
        if let Err(e) = stream.set_nonblocking(true) {
            eprintln!("select_loop: {peer}: set_nonblocking: {e}");
            continue;
        }
        conns.push(Conn {
            stream,
            peer,
            pending: Vec::new(),
            peer_done: false,
            stalled_since: None,
        });
    }
    Ok(())
}

/// FD_ISSET each client in the sets `select` returned and serve it; close
/// finished, failed and stalled clients (swap-remove: order does not matter).
fn serve_ready(
    conns: &mut Vec<Conn>,
    readable: &sys::FdSet,
    writable: &sys::FdSet,
    buf: &mut [u8],
) {
    let now = Instant::now();
    let mut i = 0;
    while i < conns.len() {
        let conn = &mut conns[i];
        let (r, w) = (
            readable.contains(&conn.stream),
            writable.contains(&conn.stream),
        );
        let close = if r || w {
            serve(conn, r, w, buf, now).unwrap_or_else(|e| {
                eprintln!("select_loop: {}: {e}", conn.peer);
                true
            })
        } else if conn.stalled_since.is_some_and(|t| now >= t + STALL_LIMIT) {
            eprintln!(
                "select_loop: {}: took no echo for {STALL_LIMIT:?}; closing",
                conn.peer
            );
            true
        } else {
            false
        };
        if close {
            // Dropping the stream closes the socket: FIN after the last byte
            // we sent, or RST if the client's bytes were left unread.
            conns.swap_remove(i); // the last client moves to `i`: look at it next
        } else {
            i += 1;
        }
    }
}

/// Does what the readiness allows. Returns `Ok(true)` when the client is
/// finished: it half-closed and everything has been echoed.
fn serve(
    conn: &mut Conn,
    readable: bool,
    writable: bool,
    buf: &mut [u8],
    now: Instant,
) -> io::Result<bool> {
    let mut sent = 0;
    if writable {
        // send: flush what the client could not take before, as far as the
        // socket takes it now (a partial write is normal).
        sent = write_some(&mut conn.stream, &conn.pending)?;
        conn.pending.drain(..sent);
    }
    if readable && conn.wants_read() {
        // recv, once (level-triggered: see the module doc), never more than
        // the room left below the cap.
        let room = (MAX_PENDING - conn.pending.len()).min(buf.len());
        match conn.stream.read(&mut buf[..room]) {
            Ok(0) => conn.peer_done = true, // FIN: echo what is pending, then close
            Ok(n) => echo(conn, &buf[..n])?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {} // a spurious report
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(context("recv", e)),
        }
    }
    // The stall clock runs only while the cap is reached and nothing moves.
    conn.stalled_since = if conn.pending.len() < MAX_PENDING {
        None
    } else if sent > 0 {
        Some(now)
    } else {
        conn.stalled_since.or(Some(now))
    };
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

/// `select` and its socket sets, on Unix: `libc::fd_set`, a bitmap indexed
/// by descriptor number.
#[cfg(unix)]
mod sys {
    use std::io;
    use std::mem::MaybeUninit;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// An `fd_set` and the highest descriptor in it (`select` wants + 1).
    pub struct FdSet {
        set: libc::fd_set,
        max_fd: libc::c_int,
    }

    impl FdSet {
        pub fn new() -> FdSet {
            let mut set = MaybeUninit::<libc::fd_set>::uninit();
            // SAFETY: FD_ZERO initialises every bit of the set it is given.
            let set = unsafe {
                libc::FD_ZERO(set.as_mut_ptr());
                set.assume_init()
            };
            FdSet { set, max_fd: -1 }
        }

        /// FD_ZERO.
        pub fn clear(&mut self) {
            // SAFETY: `self.set` is a valid, initialised fd_set.
            unsafe { libc::FD_ZERO(&mut self.set) };
            self.max_fd = -1;
        }

        /// FD_SET, only for a descriptor that fits: false (and nothing
        /// written) for one ≥ FD_SETSIZE, where FD_SET is undefined.
        pub fn insert(&mut self, socket: &impl AsRawFd) -> bool {
            let fd = socket.as_raw_fd();
            if !fits(fd) {
                return false;
            }
            // SAFETY: 0 <= fd < FD_SETSIZE, checked just above.
            unsafe { libc::FD_SET(fd, &mut self.set) };
            self.max_fd = self.max_fd.max(fd);
            true
        }

        /// FD_ISSET (false for a descriptor that cannot be in the set).
        pub fn contains(&self, socket: &impl AsRawFd) -> bool {
            let fd = socket.as_raw_fd();
            // SAFETY: 0 <= fd < FD_SETSIZE, checked first.
            fits(fd) && unsafe { libc::FD_ISSET(fd, &self.set) }
        }

        pub fn is_empty(&self) -> bool {
            self.max_fd < 0
        }
    }

    fn fits(fd: libc::c_int) -> bool {
        usize::try_from(fd).is_ok_and(|fd| fd < libc::FD_SETSIZE)
    }

    /// A client can be watched if its descriptor fits in an fd_set.
    pub fn admit(stream: &TcpStream, _clients: usize) -> Result<(), String> {
        let fd = stream.as_raw_fd();
        if fits(fd) {
            Ok(())
        } else {
            Err(format!(
                "descriptor {fd} >= FD_SETSIZE ({}): select() cannot watch it",
                libc::FD_SETSIZE
            ))
        }
    }

    /// select(nfds, read, write, NULL, timeout): blocks until a socket in
    /// the sets is ready or the timeout passes; leaves only the ready ones
    /// in the sets. Returns how many are ready.
    pub fn select(
        read: &mut FdSet,
        write: &mut FdSet,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        // nfds: one more than the highest descriptor; the kernel checks
        // every bit below it.
        let nfds = read.max_fd.max(write.max_fd) + 1;
        // (Our timeouts are at most STALL_LIMIT; microseconds are < 10^6, so
        // they fit suseconds_t on every system, i32 or i64.)
        let mut tv = timeout.map(|d| libc::timeval {
            tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        });
        let tv_ptr = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |tv| tv as *mut libc::timeval);
        // SAFETY: both sets are initialised and hold only descriptors below
        // FD_SETSIZE (insert checks), so nfds <= FD_SETSIZE; tv_ptr is null
        // or points to a timeval that outlives the call.
        let n = unsafe {
            libc::select(
                nfds,
                &mut read.set,
                &mut write.set,
                std::ptr::null_mut(),
                tv_ptr,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error()) // EINTR, EBADF, EINVAL, ENOMEM
        } else {
            Ok(n as usize)
        }
    }
}

/// `select` and its socket sets, on Windows: Winsock's `fd_set` is a count
/// and an array of socket handles.
#[cfg(windows)]
mod sys {
    use std::io;
    use std::net::TcpStream;
    use std::os::windows::io::AsRawSocket;
    use std::time::Duration;

    use windows_sys::Win32::Networking::WinSock::{
        self as winsock, WSAGetLastError, FD_SET, SOCKET, SOCKET_ERROR, TIMEVAL,
    };

    /// Our `FD_SETSIZE`: winsock2.h's default is 64 (windows-sys's `FD_SET`
    /// type has that size); we raise it as Microsoft documents for C, by
    /// defining a larger array.
    pub const CAPACITY: usize = 1024;

    /// The layout of Winsock's `fd_set` (`u_int fd_count; SOCKET
    /// fd_array[FD_SETSIZE]`) with `CAPACITY` entries.
    #[repr(C)]
    pub struct FdSet {
        count: u32,
        sockets: [SOCKET; CAPACITY],
    }

    impl FdSet {
        pub fn new() -> Box<FdSet> {
            Box::new(FdSet {
                count: 0,
                sockets: [0; CAPACITY],
            })
        }

        /// FD_ZERO: just the count.
        pub fn clear(&mut self) {
            self.count = 0;
        }

        /// FD_SET: append, if there is room (false, nothing written, if not).
        pub fn insert(&mut self, socket: &impl AsRawSocket) -> bool {
            let n = self.count as usize;
            if n == CAPACITY {
                return false;
            }
            self.sockets[n] = socket.as_raw_socket() as SOCKET;
            self.count += 1;
            true
        }

        /// FD_ISSET. Winsock's macro (`__WSAFDIsSet`) scans the array; our
        /// `select` sorts what it returns, so this is a binary search.
        pub fn contains(&self, socket: &impl AsRawSocket) -> bool {
            let ready = &self.sockets[..self.count as usize];
            ready
                .binary_search(&(socket.as_raw_socket() as SOCKET))
                .is_ok()
        }

        pub fn is_empty(&self) -> bool {
            self.count == 0
        }

        fn sort(&mut self) {
            let n = (self.count as usize).min(CAPACITY);
            self.sockets[..n].sort_unstable();
        }
    }

    /// A client can be watched if the listener and every client still fit
    /// in one set (the read set holds them all in the worst case).
    pub fn admit(_stream: &TcpStream, clients: usize) -> Result<(), String> {
        if clients + 1 < CAPACITY {
            Ok(())
        } else {
            Err(format!(
                "{clients} clients and the listener fill the socket set \
                 (FD_SETSIZE {CAPACITY} here; winsock2.h's default is 64)"
            ))
        }
    }

    /// select(0, read, write, NULL, timeout): like Unix's, except that the
    /// first argument is ignored and the sets come back compacted to the
    /// ready sockets, `fd_count` updated.
    pub fn select(
        read: &mut FdSet,
        write: &mut FdSet,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let tv = timeout.map(|d| TIMEVAL {
            tv_sec: d.as_secs().try_into().unwrap_or(i32::MAX),
            tv_usec: d.subsec_micros() as i32, // < 10^6
        });
        let tv_ptr = tv
            .as_ref()
            .map_or(std::ptr::null(), |tv| tv as *const TIMEVAL);
        // SAFETY: FdSet has the layout of Winsock's fd_set with CAPACITY
        // entries and count <= CAPACITY; select reads and rewrites at most
        // `count` entries of each set. tv_ptr is null or outlives the call.
        let n = unsafe {
            winsock::select(
                0,
                (read as *mut FdSet).cast::<FD_SET>(),
                (write as *mut FdSet).cast::<FD_SET>(),
                std::ptr::null_mut(),
                tv_ptr,
            )
        };
        if n == SOCKET_ERROR {
            // SAFETY: plain call; reads this thread's last Winsock error.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        read.sort();
        write.sort();
        Ok(n as usize)
    }
}
