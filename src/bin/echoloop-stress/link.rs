//! The transport under one client TCP connection: every byte the TCP engine (`tcp.rs`)
//! reads or writes goes through a [`Link`], and so does what the
//! readiness rules need to know of it — whether it holds output of its
//! own, whether it wants WRITABLE interest, and whether a short read
//! proves the socket drained.
//!
//! Today there is one transport, plain TCP, and it keeps the epoll
//! shortcut of `echoloop::rules` (a short read proves the socket drained)
//! at no cost: each call is one `match` on a single variant. A transport
//! that decrypts (TLS) may hold plaintext the socket no longer shows, so a
//! short read of it proves nothing; such a variant answers `false` in
//! [`Link::read_proves_drained`] and the engine reads on to `WouldBlock`.
//!
//! The library has no transport trait of its own yet; when it has one,
//! this enum is where the client takes it up.

use std::io::{self, Read};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use echoloop::rules;

/// One connection's transport.
#[derive(Debug)]
pub enum Link {
    /// Bytes straight to and from the socket.
    Plain(TcpStream),
}

impl Link {
    /// The socket under the transport (for the connect's outcome).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Link::Plain(stream) => stream,
        }
    }

    /// Reads what is there into `buf` (`Ok(0)`: the end of the stream).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(stream) => stream.read(buf),
        }
    }

    /// Writes as much of `bytes` as the transport takes now; returns how
    /// much ([`rules::write_until_full`]).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(stream) => rules::write_until_full(&*stream, bytes),
        }
    }

    /// Writes out what the transport itself holds (plain TCP: nothing);
    /// returns whether some is still held, waiting for room.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Link::Plain(_) => Ok(false),
        }
    }

    /// Whether WRITABLE interest is wanted, with (`pending`) or without
    /// payload bytes the socket would not take: plain TCP, only then.
    pub fn wants_writable(&self, pending: bool) -> bool {
        match self {
            Link::Plain(_) => pending,
        }
    }

    /// Whether a read that returned `n` of the `asked` bytes proves the
    /// socket drained (`unproven`: the event said it may not). Plain TCP
    /// follows the readiness rule ([`rules::read_proves_drained`]).
    pub fn read_proves_drained(&self, n: usize, asked: usize, unproven: bool) -> bool {
        match self {
            Link::Plain(_) => rules::read_proves_drained(n, asked, unproven),
        }
    }
}

/// Registered with `mio` as its socket is.
impl Source for Link {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Link::Plain(stream) => stream.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Link::Plain(stream) => stream.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Link::Plain(stream) => stream.deregister(registry),
        }
    }
}
