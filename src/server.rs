//! The server: [`Server::bind`] does everything that may fail fatally
//! (validate the configuration, raise the open-file limit, bind, listen,
//! create the poll); [`Server::run`] then turns the loop
//! ([`crate::event_loop`]) until shut down. A [`Handle`] stops it and reads
//! its counters from another thread.
//!
//! # Error policy
//!
//! - `WouldBlock` is control flow: the socket is drained (or full); wait for
//!   the next event.
//! - `Interrupted` retries the call.
//! - An error on a connection closes that connection only (logged at debug,
//!   counted as `errored`; `ETIMEDOUT`, a peer that stopped answering, as
//!   `vanished`).
//! - An error on a listener never stops the server: descriptor exhaustion
//!   (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) and any unexpected error pause
//!   accepting for [`ACCEPT_BACKOFF`] (the pending client stays in the
//!   backlog, so retrying at once would spin); a client that reset before we
//!   accepted it (`ConnectionAborted`, `ConnectionReset`) is skipped.
//! - Only start-up is fatal: [`Server::bind`] returns its errors, and `run`
//!   returns one only if the poll itself fails, when no loop can go on.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Waker};

use crate::event_loop::EventLoop;
use crate::stats::{Counters, Stats};
use crate::token::Source;
use crate::udp::Udp;
use crate::{sys, Config};

/// How long accepting pauses after the listener fails (out of descriptors,
/// or anything unexpected). Long enough not to burn CPU, short enough that
/// clients waiting in the backlog barely notice once descriptors free up.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Below this many, a `--max-connections` derived from the open-file limit
/// is worth a warning: the operator probably did not mean it.
const LOW_MAX_CONNECTIONS: usize = 1024;

/// What the loop shares with [`Handle`]s on other threads.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Wakes the loop from `poll` when a handle asks it to stop.
    waker: Waker,
    /// Set by [`Handle::shutdown`]; read by the loop every turn.
    pub(crate) shutdown: AtomicBool,
    /// The counters, written by the loop, read by anyone.
    pub(crate) counters: Counters,
}

/// A way to watch and stop a running [`Server`] from another thread (a
/// signal handler, a test). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The state the loop shares.
    shared: Arc<Shared>,
}

impl Handle {
    /// Asks the server to shut down gracefully: stop accepting, flush the
    /// echo of what was already read (for at most the shutdown grace), close
    /// everything, and return from [`Server::run`].
    pub fn shutdown(&self) -> io::Result<()> {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.waker.wake()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }
}

/// A listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The socket, registered under the token of `Source::Listener(its index)`.
    pub(crate) socket: TcpListener,
    /// Where it listens (with the real port when 0 was asked).
    pub(crate) addr: SocketAddr,
    /// It may have connections waiting: set by its event, cleared when
    /// `accept` says `WouldBlock`. Kept across turns because the accept
    /// budget may stop us first, and no new event comes for clients already
    /// in the backlog.
    pub(crate) ready: bool,
}

/// A bound, not yet running echo server.
#[derive(Debug)]
pub struct Server {
    /// The one poll instance; every socket is registered with it.
    pub(crate) poll: Poll,
    /// Listening sockets, in the order of [`Config::listen`].
    pub(crate) listeners: Vec<Listener>,
    /// With `--udp`, the UDP socket beside each listener, same address.
    pub(crate) udp: Vec<Udp>,
    /// With `--metrics`, its listener and address, until the loop takes it.
    pub(crate) metrics: Option<(TcpListener, SocketAddr)>,
    /// The configuration it was bound with.
    pub(crate) config: Config,
    /// `--max-connections` resolved against the open-file limit.
    pub(crate) max_connections: usize,
    /// `--tcp-keepalive` as socket options, derived once at bind.
    pub(crate) keepalive: Option<sys::Keepalive>,
    /// What handles share.
    pub(crate) shared: Arc<Shared>,
    /// The loop's one read buffer, allocated here so that a size the
    /// machine cannot give fails start-up instead of aborting later; the
    /// loop takes it.
    pub(crate) read_buffer: Vec<u8>,
}

impl Server {
    /// Raises the open-file limit, binds every listen address and prepares
    /// the poll. Every error here is fatal and names what failed, e.g.
    /// `bind 127.0.0.1:7878: Address already in use`.
    pub fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("config: {why}")))?;
        let keepalive = config.tcp_keepalive.and_then(sys::Keepalive::new);
        let fd_limit = sys::raise_fd_limit().map_err(|e| context("setrlimit(NOFILE)", e))?;
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| sys::default_max_connections(fd_limit));
        let poll = Poll::new().map_err(|e| context("poll", e))?;
        let waker =
            Waker::new(poll.registry(), Source::Waker.token()).map_err(|e| context("waker", e))?;
        let (listeners, udp) = bind_all(&poll, &config)?;
        let metrics = config
            .metrics
            .map(|want| bind_metrics(&poll, want))
            .transpose()?;
        if let Some(limit) = fd_limit {
            if config.max_connections.is_none() && max_connections < LOW_MAX_CONNECTIONS {
                warn!(
                    "the open-file limit ({limit}) leaves --max-connections at {max_connections}; \
                     raise the limit (ulimit -n, LimitNOFILE=) or set --max-connections"
                );
            } else {
                debug!("open-file limit {limit}, max connections {max_connections}");
            }
        }
        let shared = Arc::new(Shared {
            waker,
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let mut read_buffer = Vec::new();
        read_buffer
            .try_reserve_exact(config.read_buffer)
            .map_err(|e| {
                context(
                    &format!("read buffer of {} bytes", config.read_buffer),
                    io::Error::new(io::ErrorKind::OutOfMemory, e),
                )
            })?;
        read_buffer.resize(config.read_buffer, 0);
        Ok(Server {
            poll,
            listeners,
            udp,
            metrics,
            config,
            max_connections,
            keepalive,
            shared,
            read_buffer,
        })
    }

    /// The addresses actually listened on (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// Where the metrics endpoint listens (`Config::metrics`), port 0
    /// resolved.
    pub fn local_metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The UDP addresses served (`Config::udp`): the listeners' addresses.
    pub fn local_udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp.iter().map(|u| u.addr).collect()
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A handle to stop the server and read its counters.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the loop on this thread until shut down; returns the final
    /// counters.
    pub fn run(self) -> io::Result<Stats> {
        for l in &self.listeners {
            info!("listening on {}", l.addr);
        }
        for u in &self.udp {
            info!("udp echo on {}", u.addr);
        }
        if let Some((_, addr)) = &self.metrics {
            info!("metrics on http://{addr}/metrics");
        }
        info!("{}", admission_summary(&self.config));
        let mut event_loop = EventLoop::new(self);
        while event_loop.turn()? {}
        let stats = event_loop.into_server().shared.counters.snapshot();
        info!("stopped: {stats}");
        Ok(stats)
    }
}

/// The admission rules in force, in one line for the start-up log: a flag
/// given replaces its `ECHOLOOP_*` variable, so the operator sees here
/// which of the two was left standing.
fn admission_summary(config: &Config) -> String {
    let list = |nets: &[ipnet::IpNet], empty: &str| {
        if nets.is_empty() {
            return empty.to_string();
        }
        let names: Vec<String> = nets.iter().map(ToString::to_string).collect();
        names.join(",")
    };
    let per_source = config
        .max_per_source
        .map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let metrics = if config.metrics.is_some() {
        " (not applied to the metrics port)"
    } else {
        ""
    };
    format!(
        "admission: allow {}; deny {}; max per source {per_source}{metrics}",
        list(&config.allow, "all"),
        list(&config.deny, "none"),
    )
}

/// How many fresh ports to try for a port-0 listen address whose port turns
/// out to be taken for UDP by someone else.
const UDP_PORT_TRIES: usize = 8;

/// Binds and registers every listen address: a TCP listener, and with
/// `--udp` a UDP socket on the same address and port.
fn bind_all(poll: &Poll, config: &Config) -> io::Result<(Vec<Listener>, Vec<Udp>)> {
    let mut listeners = Vec::with_capacity(config.listen.len());
    let mut udps = Vec::new();
    for (i, &want) in config.listen.iter().enumerate() {
        let (mut socket, addr, udp) = bind_address(want, config)?;
        poll.registry()
            .register(&mut socket, Source::Listener(i).token(), Interest::READABLE)
            .map_err(|e| context(&format!("register {addr}"), e))?;
        listeners.push(Listener {
            socket,
            addr,
            ready: false,
        });
        if let Some(mut udp) = udp {
            poll.registry()
                .register(&mut udp, Source::Udp(i).token(), Interest::READABLE)
                .map_err(|e| context(&format!("register udp {addr}"), e))?;
            udps.push(Udp::new(udp, addr));
        }
    }
    Ok((listeners, udps))
}

/// The TCP listener for `want`, its real address, and with `--udp` the UDP
/// socket on the same port. With port 0 the UDP port is the one TCP got; if
/// another program holds it for UDP, both are given up and a fresh port is
/// tried, [`UDP_PORT_TRIES`] times.
fn bind_address(
    want: SocketAddr,
    config: &Config,
) -> io::Result<(TcpListener, SocketAddr, Option<UdpSocket>)> {
    let mut tries = 0;
    loop {
        let named = |e| context(&format!("bind {want}"), e);
        let socket = listen(want, config.backlog, config.send_buffer).map_err(named)?;
        let addr = socket.local_addr().map_err(named)?;
        if !config.udp {
            return Ok((socket, addr, None));
        }
        tries += 1;
        match bind_udp(addr) {
            Ok(udp) => {
                enlarge_udp_buffers(&udp);
                return Ok((socket, addr, Some(udp)));
            }
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && want.port() == 0
                    && tries < UDP_PORT_TRIES => {}
            Err(e) => return Err(context(&format!("bind udp {addr}"), e)),
        }
    }
}

/// The metrics endpoint's listener, bound and registered.
fn bind_metrics(poll: &Poll, want: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    const BACKLOG: u32 = 128; // scrapers come a few at a time
    let named = |e| context(&format!("bind metrics {want}"), e);
    let mut socket = listen(want, BACKLOG, None).map_err(named)?;
    let addr = socket.local_addr().map_err(named)?;
    poll.registry()
        .register(
            &mut socket,
            Source::MetricsListener.token(),
            Interest::READABLE,
        )
        .map_err(|e| context(&format!("register metrics {addr}"), e))?;
    Ok((socket, addr))
}

/// The receive and send buffers asked for on each UDP socket.
///
/// UDP has no flow control: what arrives while the buffer is full is
/// dropped by the kernel before we see it. The default (about 208 KiB on
/// Linux) holds fewer than a hundred 1,400-byte datagrams, so 50 clients
/// with 8 in flight each overflow it the moment they start. 4 MiB holds a
/// few thousand; the kernel caps the request at its own limit
/// (`net.core.rmem_max`/`wmem_max` on Linux), silently.
const UDP_BUFFER: usize = 4 << 20;

/// A non-blocking UDP socket bound to `addr`, IPv6-only when `addr` is
/// IPv6 (see [`listen`]), so that it binds beside an IPv4 one on the same
/// port.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// Asks for [`UDP_BUFFER`]-sized socket buffers; best effort (a smaller
/// buffer only means earlier drops, which are counted by the kernel).
fn enlarge_udp_buffers(udp: &UdpSocket) {
    let socket = socket2::SockRef::from(udp);
    if let Err(e) = socket.set_recv_buffer_size(UDP_BUFFER) {
        debug!("udp: SO_RCVBUF {UDP_BUFFER}: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_BUFFER) {
        debug!("udp: SO_SNDBUF {UDP_BUFFER}: {e}");
    }
}

/// Creates a non-blocking listening socket with our own backlog.
///
/// `mio::net::TcpListener::bind` fixes the backlog at 128, std's value: a
/// burst of clients beyond it is dropped by the kernel (their SYNs go
/// unanswered and they retry after a second or more) even while the loop
/// would accept them in microseconds. The kernel caps the value at
/// `net.core.somaxconn` (4,096 on current Linux).
///
/// An IPv6 socket is IPv6-only (`IPV6_V6ONLY`), as nginx makes it: with
/// Linux's default `net.ipv6.bindv6only = 0` a socket on `[::]` would also
/// take IPv4 (as `::ffff:a.b.c.d`) and hold the IPv4 port, so `0.0.0.0:7`
/// and `[::]:7` side by side failed with "Address already in use". Each
/// family is now served by its own `--listen`, on every OS alike (Windows
/// and the BSDs default to IPv6-only already).
fn listen(addr: SocketAddr, backlog: u32, send_buffer: Option<usize>) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Rebind at once after a restart despite connections in TIME_WAIT. Not
    // on Windows, where SO_REUSEADDR would let another process steal the port.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    // Urgent ("out-of-band") bytes stay in the stream, so they are echoed
    // like every other byte (RFC 862); without it only recv(MSG_OOB) would
    // see them. Accepted sockets inherit it (Linux, the BSDs, Windows).
    socket.set_out_of_band_inline(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // A fixed send buffer (`Config::send_buffer`), inherited the same way;
    // setting it turns the kernel's autotuning off for those sockets.
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Adds "what we were doing" to an error, keeping its kind.
pub(crate) fn context(call: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{call}: {err}"))
}
