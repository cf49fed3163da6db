//! One client connection: how it is opened without blocking, and the counters
//! that say where its byte stream has got to.

use std::io;
use std::net::{IpAddr, SocketAddr};

use echoloop::tls::Stream;
use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Why a connect attempt failed; the report counts each separately, because
/// each points at a different culprit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Nobody listens there (or the backlog overflowed and the server's
    /// kernel answered with a reset): `ECONNREFUSED`.
    Refused,
    /// No answer within `--connect-timeout` (or the OS's own `ETIMEDOUT`).
    Timeout,
    /// No local address or port left: ephemeral ports ran out
    /// (`EADDRNOTAVAIL`, or `EADDRINUSE` from binding a source address).
    /// `--source-addrs` is the cure.
    AddrNotAvailable,
    /// The handshake was reset or aborted.
    Reset,
    /// Anything else, e.g. this process ran out of descriptors.
    Other,
}

impl FailReason {
    /// Every reason, in report order.
    pub const ALL: [FailReason; 5] = [
        FailReason::Refused,
        FailReason::Timeout,
        FailReason::AddrNotAvailable,
        FailReason::Reset,
        FailReason::Other,
    ];

    /// Position in [`FailReason::ALL`] and in per-reason arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in the reports.
    pub fn name(self) -> &'static str {
        match self {
            FailReason::Refused => "refused",
            FailReason::Timeout => "timeout",
            FailReason::AddrNotAvailable => "addr-not-available",
            FailReason::Reset => "reset",
            FailReason::Other => "other",
        }
    }

    /// Sorts an OS error into a reason.
    pub fn of(err: &io::Error) -> FailReason {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => FailReason::Refused,
            io::ErrorKind::TimedOut => FailReason::Timeout,
            io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => {
                FailReason::AddrNotAvailable
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => FailReason::Reset,
            _ => FailReason::Other,
        }
    }
}

/// A connect attempt that failed before it could even be waited on.
#[derive(Debug)]
pub struct ConnectError {
    /// The category the report counts it under.
    pub reason: FailReason,
    /// The failing call, the address and the OS's words, for the report.
    pub message: String,
}

/// Whether a non-blocking `connect` error only means "started, not finished".
pub fn in_progress(err: &io::Error) -> bool {
    // Windows says WSAEWOULDBLOCK, which std maps to WouldBlock.
    #[cfg(unix)]
    if err.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    err.kind() == io::ErrorKind::WouldBlock
}

/// Starts a non-blocking connect to `addr`, from `source` if given.
///
/// `mio::net::TcpStream::connect` creates, and connects, in one call, so it
/// cannot bind a source address first; hence socket2: create, bind, set
/// non-blocking, connect (which answers "in progress"), then hand the socket
/// to mio. The caller registers it for WRITABLE and learns the outcome from
/// `take_error`/`peer_addr` when the event comes, as mio documents.
pub fn start(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ConnectError> {
    let fail = |call: String, err: io::Error| ConnectError {
        reason: FailReason::of(&err),
        message: format!("{call}: {err}"),
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| fail("socket".into(), e))?;
    if let Some(ip) = source {
        defer_port_choice(&socket);
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| fail(format!("bind {ip}"), e))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("set_nonblocking".into(), e))?;
    // Latency is the point: no Nagle delay on small messages. The accepted
    // socket inherits nothing from us, so the server sets its own.
    socket
        .set_tcp_nodelay(true)
        .map_err(|e| fail("set_nodelay".into(), e))?;
    // A server's urgent byte stays in the stream, to be verified like any
    // other (see `echoloop::READ_INTEREST`).
    socket
        .set_out_of_band_inline(true)
        .map_err(|e| fail("set_out_of_band_inline".into(), e))?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if in_progress(&e) => {}
        Err(e) => return Err(fail(format!("connect {addr}"), e)),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}

/// Asks Linux to pick the source port at `connect` rather than at `bind`
/// (`IP_BIND_ADDRESS_NO_PORT`).
///
/// Binding to `(ip, 0)` otherwise reserves a port for that ip at bind time,
/// without knowing the destination, so the port cannot be shared with another
/// destination and the kernel's reuse of loopback TIME_WAIT ports
/// (`tcp_tw_reuse`) never applies: churn mode would run out of ports within
/// a minute. Best effort: on failure we merely fall back to the old behaviour.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn defer_port_choice(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, a pointer to a live c_int and its
    // exact size, as setsockopt(2) requires; nothing is retained.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Elsewhere the port is chosen at bind time; nothing to do.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn defer_port_choice(_socket: &Socket) {}

/// Where a connection slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its turn to connect (ramp-up pacing, or between churn cycles).
    Queued,
    /// `connect` started; waiting for the writable event that settles it.
    Connecting,
    /// Connected: sending and verifying.
    Open,
    /// Finished, failed or abandoned; the socket is gone.
    Closed,
}

/// One connection slot of a loop. Its index in the loop's slot table is its
/// `mio::Token`; churn mode reuses a slot for connection after connection.
#[derive(Debug)]
pub struct Slot {
    /// The socket while connecting or open; `None` frees its descriptor.
    /// Every byte goes through the library's transport seam
    /// ([`echoloop::transport::Transport`]: plain TCP, or TLS with
    /// `--tls`), never straight to the socket.
    pub stream: Option<Stream>,
    /// Where this slot is in its life.
    pub state: State,
    /// Bumped whenever the slot's socket is closed, so timers queued for an
    /// earlier connection in this slot are recognised as stale and ignored.
    pub generation: u32,
    /// Global connection number: picks the payload start offset and the
    /// source address.
    pub index: u64,
    /// Offset of this connection's stream in the payload table.
    pub start: usize,
    /// Messages this connection is to have echoed before it closes
    /// (`u64::MAX` for a timed run).
    pub quota: u64,
    /// Messages handed to the send side so far (each `message_size` bytes of
    /// the stream).
    pub issued: u64,
    /// Messages whose echo has fully arrived and verified.
    pub done: u64,
    /// Stream bytes written to the socket.
    pub sent: u64,
    /// Stream bytes received back and verified.
    pub received: u64,
    /// Whether WRITABLE is in the registered interest: only while output is
    /// pending (and while connecting), so a socket with nothing to send
    /// raises no events.
    pub writable: bool,
    /// Whether an open-loop send timer for this connection sits in the heap,
    /// so at most one is queued per connection.
    pub timer_armed: bool,
    /// Nanoseconds since the run's epoch when `connect` was called: the
    /// start of its connect latency.
    pub connect_started: u64,
    /// Open loop: the scheduled send time of message 0; message `i` is due
    /// at `rate_origin + i × interval`.
    pub rate_origin: u64,
    /// When an echo byte last arrived, or the wait for one began (ns since
    /// the epoch): the stall watchdog's reference for this connection.
    pub last_progress: u64,
    /// Until the first echoed byte arrives: when the wait for it began (the
    /// handshake, or idle mode's end of hold); 0 once it came.
    pub first_byte_from: u64,
}

impl Slot {
    /// A slot that has not connected yet.
    pub fn new() -> Self {
        Slot {
            stream: None,
            state: State::Queued,
            generation: 0,
            index: 0,
            start: 0,
            quota: 0,
            issued: 0,
            done: 0,
            sent: 0,
            received: 0,
            writable: false,
            timer_armed: false,
            connect_started: 0,
            rate_origin: 0,
            last_progress: 0,
            first_byte_from: 0,
        }
    }

    /// Readies the slot for connection number `index`, whose stream starts
    /// at `start` of the payload and which is to echo `quota` messages; its
    /// connect starts at `now`.
    pub fn reset(&mut self, index: u64, start: usize, quota: u64, now: u64) {
        self.index = index;
        self.start = start;
        self.quota = quota;
        self.issued = 0;
        self.done = 0;
        self.sent = 0;
        self.received = 0;
        self.timer_armed = false;
        self.writable = true;
        self.connect_started = now;
        self.first_byte_from = 0;
    }

    /// Messages sent (or about to be) whose echo has not fully arrived.
    pub fn outstanding(&self) -> u64 {
        self.issued - self.done
    }
}
