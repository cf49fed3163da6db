//! What one loop owns alone: its poll, the sockets registered with it, its
//! read buffer and the writer of its counter slot. Built before the loop
//! runs (so every failure is a start-up failure), then moved into it; what
//! all loops share is [`crate::shared`].

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Waker};

use crate::logging::context;
use crate::stats::Counters;
use crate::token::Source;
use crate::udp::Udp;

/// A listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The socket, registered under the token of `Source::Listener(its index)`.
    pub(crate) socket: TcpListener,
    /// Where it listens (with the real port when 0 was asked).
    pub(crate) addr: SocketAddr,
    /// Its clients speak TLS (`--tls-listen`), with the shared
    /// configuration's certificate.
    pub(crate) tls: bool,
    /// It may have connections waiting: set by its event, cleared when
    /// `accept` says `WouldBlock`. Kept across turns because the accept
    /// budget may stop us first, and no new event comes for clients already
    /// in the backlog.
    pub(crate) ready: bool,
}

/// One listen address's sockets, bound but not yet registered.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The TCP listener (non-blocking).
    pub(crate) tcp: TcpListener,
    /// Its address, port 0 resolved.
    pub(crate) addr: SocketAddr,
    /// With `--udp`, the UDP socket on the same address and port.
    pub(crate) udp: Option<UdpSocket>,
    /// A `--tls-listen` address (never with UDP).
    pub(crate) tls: bool,
}

/// Everything one loop owns before it starts.
#[derive(Debug)]
pub(crate) struct Part {
    /// The loop's one poll instance; every socket below is registered with it.
    pub(crate) poll: Poll,
    /// Listening sockets, in the order they were given.
    pub(crate) listeners: Vec<Listener>,
    /// With `--udp`, the UDP socket beside each listener, same address.
    pub(crate) udp: Vec<Udp>,
    /// With `--metrics`, its listener and address, until the loop takes it.
    pub(crate) metrics: Option<(TcpListener, SocketAddr)>,
    /// The loop's one read buffer, allocated before start so that a size
    /// the machine cannot give fails start-up instead of aborting later.
    pub(crate) read_buffer: Vec<u8>,
    /// The only writer of this loop's counter slot (readers hold a
    /// [`Reader`](crate::stats::Reader) of it).
    pub(crate) counters: Counters,
}

impl Part {
    /// Creates the poll and registers `sockets` (listener `i` and its UDP
    /// socket under `Source::Listener(i)` and `Source::Udp(i)`) and the
    /// metrics listener with it. Returns the part and its waker, which goes
    /// to what the loops share.
    pub(crate) fn new(
        sockets: Vec<Bound>,
        metrics: Option<(TcpListener, SocketAddr)>,
        read_buffer: Vec<u8>,
    ) -> io::Result<(Part, Waker)> {
        let poll = Poll::new().map_err(|e| context("poll", e))?;
        let waker =
            Waker::new(poll.registry(), Source::Waker.token()).map_err(|e| context("waker", e))?;
        let registry = poll.registry();
        let mut listeners = Vec::with_capacity(sockets.len());
        let mut udps = Vec::new();
        for (i, bound) in sockets.into_iter().enumerate() {
            let Bound {
                mut tcp,
                addr,
                udp,
                tls,
            } = bound;
            registry
                .register(&mut tcp, Source::Listener(i).token(), Interest::READABLE)
                .map_err(|e| context(&format!("register {addr}"), e))?;
            listeners.push(Listener {
                socket: tcp,
                addr,
                tls,
                ready: false,
            });
            if let Some(mut udp) = udp {
                registry
                    .register(&mut udp, Source::Udp(i).token(), Interest::READABLE)
                    .map_err(|e| context(&format!("register udp {addr}"), e))?;
                udps.push(Udp::new(udp, addr));
            }
        }
        let mut metrics = metrics;
        if let Some((socket, addr)) = &mut metrics {
            registry
                .register(socket, Source::MetricsListener.token(), Interest::READABLE)
                .map_err(|e| context(&format!("register metrics {addr}"), e))?;
        }
        let part = Part {
            poll,
            listeners,
            udp: udps,
            metrics,
            read_buffer,
            counters: Counters::default(),
        };
        Ok((part, waker))
    }
}
