//! # conditional_accept: `WSAAccept` with a condition function
//!
//! The Winsock "accepting a connection" page names `WSAAccept` next to
//! `accept` and `AcceptEx`: an accept that calls a function of yours with
//! the caller's address *before* it hands you a socket, and lets that
//! function answer `CF_ACCEPT`, `CF_REJECT` or `CF_DEFER`. This server
//! refuses clients whose address is in a range given with `--deny`, and
//! clients beyond `--max-clients`; every accepted client is served by a worker
//! thread with the blocking echo loop of `accept_one` ("WSAAccept handing
//! each socket to a worker thread", as the page puts it).
//!
//! ## What "before" means, per system
//!
//! * **Windows, with `SO_CONDITIONAL_ACCEPT` set on the listener before
//!   `listen`**: the TCP stack does not complete handshakes by itself any
//!   more; an incoming SYN waits until `WSAAccept` runs the condition
//!   function, and `CF_REJECT` answers it with a reset. The refused client's
//!   `connect` fails with "connection refused": it never had a connection.
//!   Microsoft's `SO_CONDITIONAL_ACCEPT` page lists the price: it disables
//!   the stack's built-in SYN-attack protection (the application now owns
//!   accepting) and effectively the listen backlog (connections are not
//!   accepted on the listener's behalf; a client waits, and retransmits its
//!   SYN, until the application calls `WSAAccept`). So this server keeps
//!   its accept thread doing nothing else.
//! * **Windows without the option** (or if setting it fails, which is
//!   logged): the handshake completes first, the condition function still
//!   decides, and a rejected connection is closed.
//! * **Wine** (8.0, as run by `.ci/windows.sh`): `setsockopt` with
//!   `SO_CONDITIONAL_ACCEPT` fails with `WSAENOPROTOOPT` (10042), and, as its
//!   `ws2_32` source reads, `WSAAccept` is `accept` followed by the condition
//!   function; `CF_REJECT` closes the accepted socket and returns
//!   `WSAECONNREFUSED`. The Linux kernel below has already completed the
//!   handshake, so there a refused client sees its connection accepted and
//!   then closed — as on Unix below.
//! * **Unix** has no conditional accept: the honest equivalent is to accept,
//!   decide from the peer address, and close at once. We close with
//!   `SO_LINGER` 0, so the client gets a reset (as a refused SYN would) and
//!   the server keeps no TIME_WAIT state for it.
//!
//! `CF_DEFER` (decide later; the connection stays queued) is not used here.
//!
//! ## Why a separate example
//!
//! The decision is about *accepting*, whatever serves the client afterwards;
//! with `SO_CONDITIONAL_ACCEPT` it also changes what a pending connection is
//! (not yet a connection), which a readiness loop such as `select_loop` would
//! see as a listener that is readable while nothing has been accepted. Kept
//! apart, each example shows one thing. A readiness loop makes the same
//! decision the Unix way: accept, look at the address, close.
//!
//! ## When it is the right choice
//!
//! Rarely for address ranges: a firewall (nftables, Windows Firewall)
//! drops those before any socket or thread is involved, and conditional
//! accept gives up SYN-attack protection. It is for decisions only the
//! application can make, before the handshake, on Windows: its own load
//! (as `--max-clients` here), per-application rules, or the caller data some
//! protocols carry.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example conditional_accept -- 127.0.0.1:7878 --deny 127.0.0.2/32
//! nc 127.0.0.1 7878               # served
//! nc -s 127.0.0.2 127.0.0.1 7878  # refused
//! ```
//!
//! `--deny CIDR` may be repeated (IPv4 or IPv6, e.g. `10.0.0.0/8`,
//! `::1/128`; a bare address is a range of one). `--max-clients N` (default
//! 256) bounds the worker threads. The first line on stdout is
//! `listening on ADDR` (port 0 picks a free port). It runs until killed.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Most clients served at once unless `--max-clients` says otherwise;
/// beyond it the condition function refuses.
const DEFAULT_MAX_CLIENTS: usize = 256;

fn main() {
    let policy = match parse_args(std::env::args().skip(1)) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("conditional_accept: {e}");
            eprintln!("usage: conditional_accept [ADDR] [--deny CIDR]... [--max-clients N]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&policy) {
        eprintln!("conditional_accept: {e}");
        std::process::exit(1);
    }
}

fn run(policy: &Policy) -> io::Result<()> {
    let listener = sys::listen(policy.addr)?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        match sys::accept(&listener, policy) {
            Accepted::Client(stream, peer) => spawn_worker(stream, peer, policy),
            Accepted::Refused(peer, verdict) => {
                eprintln!("conditional_accept: refused {peer}: {verdict}");
            }
            Accepted::Gone => {} // the client gave up before we accepted it
            Accepted::Failed(e) => {
                // EMFILE, ENOBUFS, ...: the connection stays queued, so
                // accepting again at once would fail again at once.
                eprintln!("conditional_accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What one accept attempt produced.
enum Accepted {
    Client(TcpStream, SocketAddr),
    Refused(SocketAddr, Verdict),
    Gone,
    Failed(io::Error),
}

/// The decision the condition function makes.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Accept,
    Denied(Cidr),
    Full(usize),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => write!(f, "accepted"),
            Verdict::Denied(range) => write!(f, "in denied range {range}"),
            Verdict::Full(max) => write!(f, "{max} clients already served (--max-clients)"),
        }
    }
}

/// The command line: where to listen and the rules the accept thread
/// applies (the count is shared with the workers).
struct Policy {
    /// Where to listen.
    addr: SocketAddr,
    /// Ranges from `--deny`.
    deny: Vec<Cidr>,
    /// `--max-clients`: most clients served at once.
    max_clients: usize,
    /// Clients being served now; each worker holds one `Permit`.
    active: Arc<AtomicUsize>,
}

impl Policy {
    fn judge(&self, peer: IpAddr) -> Verdict {
        if let Some(range) = self.deny.iter().find(|r| r.contains(peer)) {
            Verdict::Denied(*range)
        } else if self.active.load(Ordering::SeqCst) >= self.max_clients {
            Verdict::Full(self.max_clients)
        } else {
            Verdict::Accept
        }
    }
}

/// One served client, counted in `Policy::active` until dropped.
struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The worker thread: the blocking recv/send loop of `accept_one`.
fn spawn_worker(stream: TcpStream, peer: SocketAddr, policy: &Policy) {
    policy.active.fetch_add(1, Ordering::SeqCst);
    let permit = Permit(Arc::clone(&policy.active));
    let spawned = thread::Builder::new()
        .name(format!("client {peer}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let _permit = permit;
            if let Err(e) = serve(stream) {
                eprintln!("conditional_accept: {peer}: {e}");
            }
        });
    if let Err(e) = spawned {
        // The closure (stream and permit) is dropped: client closed, count back.
        eprintln!("conditional_accept: spawn: {e}; dropping {peer}");
    }
}

/// recv and send it all back until the client shuts down its side, then
/// shutdown(SD_SEND); the socket is closed when `stream` is dropped.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(context("recv", e)),
        };
        stream
            .write_all(&buf[..n])
            .map_err(|e| context("send", e))?;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| context("shutdown", e))
}

/// An address range, `ADDR/PREFIX` (IPv4 or IPv6). Parsed by hand: it is
/// a few lines, and the example stands alone.
#[derive(Clone, Copy, Debug)]
struct Cidr {
    net: IpAddr,
    prefix: u32,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("--deny {s:?}: {addr:?} is not an IP address"))?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => bits,
                Some(p) => p.parse().ok().filter(|p| *p <= bits).ok_or_else(|| {
                    format!("--deny {s:?}: the prefix length must be 0 to {bits}")
                })?,
            };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` has the same first `prefix` bits as `net` (an IPv4
    /// client on an IPv6 socket arrives as ::ffff:a.b.c.d and is compared as
    /// IPv4).
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n).into(), u32::from(a).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let ignored = bits - self.prefix; // low bits outside the prefix
        net.checked_shr(ignored).unwrap_or(0) == ip.checked_shr(ignored).unwrap_or(0)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// `[ADDR] [--deny CIDR]... [--max-clients N]`; a bad argument is one line
/// of error.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Policy, String> {
    let mut addr = None;
    let mut deny = Vec::new();
    let mut max_clients = DEFAULT_MAX_CLIENTS;
    while let Some(arg) = args.next() {
        if arg == "--deny" {
            let value = args
                .next()
                .ok_or("--deny needs a CIDR, e.g. 127.0.0.2/32")?;
            deny.push(Cidr::parse(&value)?);
        } else if arg == "--max-clients" {
            let value = args.next().unwrap_or_default();
            max_clients = value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("--max-clients {value:?}: not a positive integer"))?;
        } else if arg.starts_with('-') {
            return Err(format!("unknown flag {arg:?}"));
        } else if addr.is_none() {
            let parsed = arg
                .parse()
                .map_err(|_| format!("{arg:?} is not an address like 127.0.0.1:7878"))?;
            addr = Some(parsed);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok(Policy {
        addr: addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7878))),
        deny,
        max_clients,
        active: Arc::new(AtomicUsize::new(0)),
    })
}

/// Prefix an error with the name of the call that returned it.
fn context(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Unix: `accept`, then decide, then close at once.
#[cfg(unix)]
mod sys {
    use std::io::{self, ErrorKind};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    use super::{context, Accepted, Policy, Verdict};

    /// socket + bind + listen.
    pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).map_err(|e| context(&format!("bind {addr}"), e))
    }

    pub fn accept(listener: &TcpListener, policy: &Policy) -> Accepted {
        // accept: the kernel has completed the handshake already.
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::Interrupted => return Accepted::Gone,
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => return Accepted::Gone,
            Err(e) => return Accepted::Failed(context("accept", e)),
        };
        match policy.judge(peer.ip()) {
            Verdict::Accept => Accepted::Client(stream, peer),
            verdict => {
                // setsockopt(SO_LINGER, {on, 0 s}) then close: a reset, and
                // no TIME_WAIT. If it fails the close is a plain FIN.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                Accepted::Refused(peer, verdict)
            }
        }
    }
}

/// Windows: `WSAAccept` with a condition function, on a listener with
/// `SO_CONDITIONAL_ACCEPT`.
#[cfg(windows)]
mod sys {
    use std::cell::Cell;
    use std::io;
    use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
    use std::os::windows::io::{AsRawSocket, FromRawSocket, RawSocket};

    use socket2::{Domain, Protocol, Socket, Type};
    use windows_sys::Win32::Networking::WinSock::{
        setsockopt, WSAAccept, WSAGetLastError, AF_INET, AF_INET6, CF_ACCEPT, CF_REJECT,
        INVALID_SOCKET, QOS, SOCKADDR_STORAGE, SOCKET, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, WSABUF,
        WSAECONNABORTED, WSAECONNREFUSED, WSAECONNRESET, WSAEINTR,
    };

    use super::{context, Accepted, Policy, Verdict};

    /// socket, setsockopt(SO_CONDITIONAL_ACCEPT) — it must precede listen
    /// (WSAEINVAL after) — bind, listen.
    pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| context("socket", e))?;
        let on: u32 = 1; // a DWORD used as a BOOL
                         // SAFETY: a valid socket; optval points to a DWORD of optlen bytes.
        let rc = unsafe {
            setsockopt(
                socket.as_raw_socket() as SOCKET,
                SOL_SOCKET,
                SO_CONDITIONAL_ACCEPT,
                (&on as *const u32).cast::<u8>(),
                std::mem::size_of::<u32>() as i32,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            eprintln!(
                "conditional_accept: setsockopt(SO_CONDITIONAL_ACCEPT): {e}; \
                 clients will be refused after the handshake instead"
            );
        }
        socket
            .bind(&addr.into())
            .map_err(|e| context(&format!("bind {addr}"), e))?;
        socket.listen(128).map_err(|e| context("listen", e))?;
        Ok(socket.into())
    }

    /// What the condition function sees: the policy, and where it leaves the
    /// reason for a refusal (read after WSAAccept returns).
    struct Condition<'a> {
        policy: &'a Policy,
        refused: Cell<Option<(SocketAddr, Verdict)>>,
    }

    pub fn accept(listener: &TcpListener, policy: &Policy) -> Accepted {
        let condition = Condition {
            policy,
            refused: Cell::new(None),
        };
        let mut addr = SOCKADDR_STORAGE::default();
        let mut len = std::mem::size_of::<SOCKADDR_STORAGE>() as i32;
        // SAFETY: a listening socket; addr/len describe a SOCKADDR_STORAGE;
        // `on_connect` matches LPCONDITIONPROC, and the context it receives
        // is the address of `condition`, which outlives this blocking call
        // (the function is only called during it, on this thread).
        let socket = unsafe {
            WSAAccept(
                listener.as_raw_socket() as SOCKET,
                (&mut addr as *mut SOCKADDR_STORAGE).cast(),
                &mut len,
                Some(on_connect),
                &condition as *const Condition<'_> as usize,
            )
        };
        if socket == INVALID_SOCKET {
            // SAFETY: plain call; reads this thread's last Winsock error.
            return match unsafe { WSAGetLastError() } {
                // Our CF_REJECT (WSAECONNREFUSED is what WSAAccept reports).
                WSAECONNREFUSED => match condition.refused.take() {
                    Some((peer, verdict)) => Accepted::Refused(peer, verdict),
                    None => Accepted::Gone,
                },
                WSAECONNRESET | WSAECONNABORTED | WSAEINTR => Accepted::Gone,
                code => Accepted::Failed(context("WSAAccept", io::Error::from_raw_os_error(code))),
            };
        }
        // SAFETY: WSAAccept returned a new connected socket that nothing else
        // owns; the TcpStream now owns it and closes it on drop.
        let stream = unsafe { TcpStream::from_raw_socket(socket as RawSocket) };
        match stream.peer_addr() {
            Ok(peer) => Accepted::Client(stream, peer),
            Err(e) => Accepted::Failed(context("getpeername", e)),
        }
    }

    /// The condition function. Winsock calls it inside WSAAccept with the
    /// caller's address in `caller_id` (a sockaddr); it answers CF_ACCEPT or
    /// CF_REJECT. It must not unwind into Winsock: nothing in it can panic.
    #[allow(clippy::too_many_arguments)] // the signature Winsock defines
    unsafe extern "system" fn on_connect(
        caller_id: *mut WSABUF,
        _caller_data: *mut WSABUF,
        _sqos: *mut QOS,
        _gqos: *mut QOS,
        _callee_id: *mut WSABUF,
        _callee_data: *mut WSABUF,
        _group: *mut u32,
        context: usize,
    ) -> i32 {
        // SAFETY: `context` is the address of the Condition that `accept`
        // passed to WSAAccept, alive for the whole call.
        let condition = unsafe { &*(context as *const Condition<'_>) };
        // SAFETY: Winsock passes either null or a WSABUF whose `buf` holds
        // `len` bytes of the caller's sockaddr.
        let peer = unsafe { caller_id.as_ref() }
            .filter(|id| !id.buf.is_null())
            .and_then(|id| {
                // SAFETY: as above, `len` readable bytes at the non-null `buf`.
                let bytes = unsafe { std::slice::from_raw_parts(id.buf, id.len as usize) };
                parse_sockaddr(bytes)
            });
        // An address we cannot read matches no range; the count still applies.
        let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        match condition.policy.judge(peer.ip()) {
            Verdict::Accept => CF_ACCEPT as i32,
            verdict => {
                condition.refused.set(Some((peer, verdict)));
                CF_REJECT as i32
            }
        }
    }

    /// A SOCKADDR_IN (family, port, 4 address bytes) or SOCKADDR_IN6
    /// (family, port, flow info, 16 address bytes); the port is big-endian.
    fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
        let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
        let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
        if family == AF_INET {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::from((ip, port)))
        } else if family == AF_INET6 {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::from((Ipv6Addr::from(ip), port)))
        } else {
            None
        }
    }
}
