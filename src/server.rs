//! The server: [`Server::bind`] (or [`Server::from_listeners`], with
//! listeners bound by the caller) does everything that may fail fatally
//! (validate the configuration, raise the open-file limit, bind, listen,
//! create the poll); [`Server::run`] then turns the loop
//! ([`crate::event_loop`]) until shut down. A [`Handle`] stops it and reads
//! its counters from another thread.
//!
//! A loop owns its part (poll, sockets, buffers, the writer of its counter
//! slot: `event_loop/part.rs`); what every loop and handle shares —
//! configuration, shutdown flag, wakers, counter readers — is
//! [`crate::shared`]. The server builds both and hands them to the loops.
//!
//! # Loops
//!
//! With `Config::loops` above 1 the server runs that many loops, loop 0 on
//! the thread that calls [`Server::run`] and each other on a thread of its
//! own; each owns its poll, connections, buffers and counter slot. A client
//! is served by the loop its source address hashes to ([`crate::steer`]),
//! so the per-source limits stay exact without shared state:
//!
//! - Linux (epoll): each loop binds its own listener, and with `--udp` its
//!   own UDP socket, on every listen address with `SO_REUSEPORT`, and a
//!   BPF program makes the kernel steer each SYN and datagram by source.
//! - Elsewhere (Windows, macOS, the BSDs, mio's forced `poll(2)`), and for
//!   listeners given to [`Server::from_listeners`]: loop 0 holds the
//!   listeners, accepts, and hands each client to its loop through that
//!   loop's queue and waker; UDP is served by loop 0 alone.
//!
//! Shared by all loops and off the data path: the `--max-connections` count
//! (a total, reserved before admitting), the shutdown flag, the counter
//! readers. Start-up binds every loop's sockets before any loop runs, so a
//! bind that fails fails the whole start. A loop that panics (or whose poll
//! fails) stops the others, and `run` returns its message as an error;
//! `/healthz` says 503 from that moment, as it does once shutdown began.
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
use std::sync::Arc;

use log::{debug, info, warn};
use mio::net::{TcpListener, UdpSocket};

use crate::event_loop::{Bound, Part};
use crate::logging::context;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::{sys, Config};

pub use crate::event_loop::ACCEPT_BACKOFF;

/// Below this many, a `--max-connections` derived from the open-file limit
/// is worth a warning: the operator probably did not mean it.
const LOW_MAX_CONNECTIONS: usize = 1024;

/// A way to watch and stop a running [`Server`] from another thread (a
/// signal handler, a test). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    /// What every loop shares: the shutdown flag, the wakers, the counters.
    shared: Arc<Shared>,
}

impl Handle {
    /// Asks the server to shut down gracefully: stop accepting, flush the
    /// echo of what was already read (for at most the shutdown grace), close
    /// everything, and return from [`Server::run`].
    pub fn shutdown(&self) -> io::Result<()> {
        self.shared.shutdown()
    }

    /// A snapshot of the counters: every loop's, summed.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// A snapshot of each loop's counters, loop 0 first (see `# Loops` on
    /// [`Server`]); [`Stats::sum`] of them is [`Handle::stats`].
    pub fn stats_per_loop(&self) -> Vec<Stats> {
        self.shared.per_loop()
    }
}

/// A bound, not yet running echo server.
#[derive(Debug)]
pub struct Server {
    /// What the loops and every [`Handle`] share.
    pub(crate) shared: Arc<Shared>,
    /// What each loop owns alone, loop 0 first, until [`Server::run`]
    /// moves each into its loop.
    pub(crate) parts: Vec<Part>,
}

impl Server {
    /// Raises the open-file limit, binds every listen address and prepares
    /// the poll. Every error here is fatal and names what failed, e.g.
    /// `bind 127.0.0.1:7878: Address already in use`.
    pub fn bind(config: Config) -> io::Result<Server> {
        let limits = Limits::new(&config)?;
        let sockets = bind_loops(&config)?;
        Server::assemble(config, limits, sockets)
    }

    /// Like [`Server::bind`], but serves `listeners`, bound (and listening)
    /// already — by a test, a service manager, or a caller that gives each
    /// loop its own. `config.listen` is replaced by their addresses; with
    /// `config.udp` a UDP socket is bound on each of them. They get the
    /// options accepted clients inherit (urgent data inline,
    /// `config.send_buffer`) and are made non-blocking; `config.backlog`
    /// does not apply (their backlog was set by `listen`). With
    /// `config.loops` above 1, loop 0 serves them and hands clients to the
    /// others (`# Loops`). `tls_listen` addresses are bound here, as
    /// [`Server::bind`] binds them (served by loop 0 alike).
    pub fn from_listeners(
        mut config: Config,
        listeners: Vec<std::net::TcpListener>,
    ) -> io::Result<Server> {
        config.listen = (listeners.iter())
            .map(std::net::TcpListener::local_addr)
            .collect::<io::Result<_>>()
            .map_err(|e| context("local_addr", e))?;
        let limits = Limits::new(&config)?;
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut sockets = (listeners.into_iter().zip(&config.listen))
            .map(|(listener, &addr)| adopt(listener, addr, &config))
            .collect::<io::Result<Vec<_>>>()?;
        #[cfg(feature = "tls")]
        for &want in &config.tls_listen {
            sockets.push(bind_address(want, &config, false, true)?);
        }
        let mut per_loop: Vec<Vec<Bound>> = (0..config.loops).map(|_| Vec::new()).collect();
        per_loop[0] = sockets;
        Server::assemble(config, limits, per_loop)
    }

    /// The rest of start-up, once every loop's sockets are bound (`sockets`,
    /// loop 0 first; only loop 0's when it hands off): the metrics listener
    /// (loop 0's), each loop's read buffer and part, and what they share.
    fn assemble(config: Config, limits: Limits, sockets: Vec<Vec<Bound>>) -> io::Result<Server> {
        let handing_off = sockets.len() > 1 && sockets[1..].iter().all(Vec::is_empty);
        let mut metrics = config.metrics.map(bind_metrics).transpose()?;
        let mut parts = Vec::with_capacity(sockets.len());
        let mut wakers = Vec::with_capacity(sockets.len());
        for mine in sockets {
            let read_buffer = read_buffer(config.read_buffer)?;
            let (part, waker) = Part::new(mine, metrics.take(), read_buffer)?;
            parts.push(part);
            wakers.push(waker);
        }
        let readers = parts.iter().map(|p| p.counters.reader()).collect();
        let shared = Shared::new(
            config,
            limits.max_connections,
            limits.keepalive,
            handing_off,
            wakers,
            readers,
        );
        Ok(Server {
            shared: Arc::new(shared),
            parts,
        })
    }

    /// The plain TCP addresses actually listened on (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let plain = self.parts[0].listeners.iter().filter(|l| !l.tls);
        plain.map(|l| l.addr).collect()
    }

    /// The TLS addresses actually listened on (`Config::tls_listen`, port 0
    /// resolved).
    pub fn local_tls_addrs(&self) -> Vec<SocketAddr> {
        let tls = self.parts[0].listeners.iter().filter(|l| l.tls);
        tls.map(|l| l.addr).collect()
    }

    /// Where the metrics endpoint listens (`Config::metrics`), port 0
    /// resolved.
    pub fn local_metrics_addr(&self) -> Option<SocketAddr> {
        self.parts[0].metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The UDP addresses served (`Config::udp`): the listeners' addresses.
    pub fn local_udp_addrs(&self) -> Vec<SocketAddr> {
        self.parts[0].udp.iter().map(|u| u.addr).collect()
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections
    }

    /// A handle to stop the server and read its counters.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the loops until shut down (loop 0 on this thread, the others
    /// on their own); returns the final counters, or the error or panic
    /// that stopped a loop (and with it the server).
    pub fn run(self) -> io::Result<Stats> {
        let first = &self.parts[0];
        for l in &first.listeners {
            let tls = if l.tls { " (TLS)" } else { "" };
            info!("listening on {}{tls}", l.addr);
        }
        for u in &first.udp {
            info!("udp echo on {}", u.addr);
        }
        if let Some((_, addr)) = &first.metrics {
            info!("metrics on http://{addr}/metrics");
        }
        info!("{}", admission_summary(&self.shared.config));
        if self.parts.len() > 1 {
            let how = if self.shared.handing_off {
                "loop 0 accepts and hands each client to its loop"
            } else {
                "each with its own SO_REUSEPORT listener, steered by source address"
            };
            info!("{} loops: {how}", self.parts.len());
        }
        let Server { shared, parts } = self;
        let outcome = crate::threads::run_loops(parts, &shared);
        let stats = shared.stats();
        info!("stopped: {stats}");
        outcome.map(|()| stats)
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
    let proxy = match config.proxy_protocol.as_slice() {
        [] => String::new(),
        nets => format!("; PROXY header required from {}", list(nets, "")),
    };
    format!(
        "admission: allow {}; deny {}; max per source {per_source}{proxy}{metrics}",
        list(&config.allow, "all"),
        list(&config.deny, "none"),
    )
}

/// What start-up derives from the configuration before binding anything.
#[derive(Debug)]
struct Limits {
    /// `--max-connections`, resolved against the open-file limit.
    max_connections: usize,
    /// `--tcp-keepalive` as socket options.
    keepalive: Option<sys::Keepalive>,
}

impl Limits {
    /// Validates `config` and raises the open-file limit; warns when the
    /// limit leaves few connections.
    fn new(config: &Config) -> io::Result<Limits> {
        config
            .validate()
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("config: {why}")))?;
        let keepalive = config.tcp_keepalive.and_then(sys::Keepalive::new);
        let fd_limit = sys::raise_fd_limit().map_err(|e| context("setrlimit(NOFILE)", e))?;
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| sys::default_max_connections(fd_limit));
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
        Ok(Limits {
            max_connections,
            keepalive,
        })
    }
}

/// The loop's one read buffer, `size` bytes, or an error naming the size.
fn read_buffer(size: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(size).map_err(|e| {
        context(
            &format!("read buffer of {size} bytes"),
            io::Error::new(io::ErrorKind::OutOfMemory, e),
        )
    })?;
    buf.resize(size, 0);
    Ok(buf)
}

/// Every loop's sockets, loop 0 first: where the kernel steers by source
/// (`# Loops`), each loop gets a listener (and UDP socket) of its own on
/// every listen address; otherwise loop 0 gets them all.
fn bind_loops(config: &Config) -> io::Result<Vec<Vec<Bound>>> {
    let mut per_loop: Vec<Vec<Bound>> = (0..config.loops).map(|_| Vec::new()).collect();
    let steer = cfg!(reuseport_steering) && config.loops > 1;
    let plain = config.listen.len();
    for (i, want) in config.tcp_listen().enumerate() {
        let tls = i >= plain;
        if !steer {
            per_loop[0].push(bind_address(want, config, false, tls)?);
            continue;
        }
        let first = bind_address(want, config, true, tls)?;
        let addr = first.addr;
        let mut group = vec![first];
        for _ in 1..config.loops {
            let named = |e| context(&format!("bind {addr} (SO_REUSEPORT)"), e);
            let tcp = listen(addr, config.backlog, config.send_buffer, true).map_err(named)?;
            let udp = (config.udp && !tls)
                .then(|| bind_udp(addr, true).map_err(|e| context(&format!("bind udp {addr}"), e)))
                .transpose()?;
            group.push(Bound {
                tcp,
                addr,
                udp,
                tls,
            });
        }
        steer_group(&group, config.loops)?;
        for (i, bound) in group.into_iter().enumerate() {
            per_loop[i].push(bound);
        }
    }
    Ok(per_loop)
}

/// Attaches the steering program to a group of loops' sockets on one
/// address (to its first TCP and UDP socket: it then serves the group).
#[cfg(reuseport_steering)]
fn steer_group(group: &[Bound], loops: usize) -> io::Result<()> {
    let first = &group[0];
    let named = |e| context(&format!("SO_ATTACH_REUSEPORT_CBPF {}", first.addr), e);
    let ipv6 = first.addr.is_ipv6();
    crate::steer::attach(&socket2::SockRef::from(&first.tcp), ipv6, loops).map_err(named)?;
    if let Some(udp) = &first.udp {
        crate::steer::attach(&socket2::SockRef::from(udp), ipv6, loops).map_err(named)?;
    }
    Ok(())
}

/// The kernel does not steer here: never called with a group.
#[cfg(not(reuseport_steering))]
fn steer_group(_group: &[Bound], _loops: usize) -> io::Result<()> {
    Ok(())
}

/// Sets `SO_REUSEPORT` when `yes` (only where the kernel steers, so
/// nowhere else is it asked for).
fn share_port(socket: &socket2::Socket, yes: bool) -> io::Result<()> {
    #[cfg(reuseport_steering)]
    if yes {
        socket.set_reuse_port(true)?;
    }
    let _ = (socket, yes);
    Ok(())
}

/// How many fresh ports to try for a port-0 listen address whose port turns
/// out to be taken for UDP by someone else.
const UDP_PORT_TRIES: usize = 8;

/// The TCP listener for `want`, its real address, and with `--udp` the UDP
/// socket on the same port. With port 0 the UDP port is the one TCP got; if
/// another program holds it for UDP, both are given up and a fresh port is
/// tried, [`UDP_PORT_TRIES`] times. `reuse_port`: the first of a group of
/// loops' sockets on this address (`SO_REUSEPORT`). `tls`: a `tls_listen`
/// address, which never gets UDP.
fn bind_address(
    want: SocketAddr,
    config: &Config,
    reuse_port: bool,
    tls: bool,
) -> io::Result<Bound> {
    let mut tries = 0;
    loop {
        let named = |e| context(&format!("bind {want}"), e);
        let tcp = listen(want, config.backlog, config.send_buffer, reuse_port).map_err(named)?;
        let addr = tcp.local_addr().map_err(named)?;
        if !config.udp || tls {
            return Ok(Bound {
                tcp,
                addr,
                udp: None,
                tls,
            });
        }
        tries += 1;
        match bind_udp(addr, reuse_port) {
            Ok(udp) => {
                let udp = Some(udp);
                return Ok(Bound {
                    tcp,
                    addr,
                    udp,
                    tls,
                });
            }
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && want.port() == 0
                    && tries < UDP_PORT_TRIES => {}
            Err(e) => return Err(context(&format!("bind udp {addr}"), e)),
        }
    }
}

/// A listener bound by the caller, at `addr`, made ready to serve: the
/// options accepted clients inherit, non-blocking, and with `--udp` the UDP
/// socket on the same address.
fn adopt(listener: std::net::TcpListener, addr: SocketAddr, config: &Config) -> io::Result<Bound> {
    let named = |e| context(&format!("listener {addr}"), e);
    inherited_options(&socket2::SockRef::from(&listener), config.send_buffer).map_err(named)?;
    listener.set_nonblocking(true).map_err(named)?;
    let udp = (config.udp)
        .then(|| bind_udp(addr, false).map_err(|e| context(&format!("bind udp {addr}"), e)))
        .transpose()?;
    Ok(Bound {
        tcp: TcpListener::from_std(listener),
        addr,
        udp,
        tls: false,
    })
}

/// The metrics endpoint's listener and its address.
fn bind_metrics(want: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    const BACKLOG: u32 = 128; // scrapers come a few at a time
    let named = |e| context(&format!("bind metrics {want}"), e);
    let socket = listen(want, BACKLOG, None, false).map_err(named)?;
    let addr = socket.local_addr().map_err(named)?;
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
/// port; with [`UDP_BUFFER`]-sized buffers. `reuse_port`: one of a group
/// of loops' sockets on one address (`SO_REUSEPORT`).
fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    share_port(&socket, reuse_port)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let udp = UdpSocket::from_std(socket.into());
    enlarge_udp_buffers(&udp);
    Ok(udp)
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
///
/// `reuse_port`: one of a group of loops' listeners on one address
/// (`SO_REUSEPORT`, see `# Loops`).
fn listen(
    addr: SocketAddr,
    backlog: u32,
    send_buffer: Option<usize>,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Rebind at once after a restart despite connections in TIME_WAIT. Not
    // on Windows, where SO_REUSEADDR would let another process steal the port.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    share_port(&socket, reuse_port)?;
    inherited_options(&socket, send_buffer)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The options set on a listener for the clients it accepts, which inherit
/// them (Linux, the BSDs, Windows). Set before any client connects.
fn inherited_options(socket: &socket2::Socket, send_buffer: Option<usize>) -> io::Result<()> {
    // Urgent ("out-of-band") bytes stay in the stream, so they are echoed
    // like every other byte (RFC 862); without it only recv(MSG_OOB) would
    // see them.
    socket.set_out_of_band_inline(true)?;
    // A fixed send buffer (`Config::send_buffer`); setting it turns the
    // kernel's autotuning off for those sockets.
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    Ok(())
}
