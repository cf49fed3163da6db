//! The transport seam: how a connection's bytes reach its socket.
//!
//! A connection never reads or writes its socket itself; it goes through a
//! [`Transport`], which answers five things: read, write, flush what the
//! transport itself holds, whether it needs WRITABLE interest for that, and
//! whether a short read proves the socket drained. The last is the epoll
//! shortcut of [`rules`] (rule 4): it is true of a plain TCP socket, which
//! the kernel drains byte for byte, and false of anything that keeps bytes
//! of its own between the socket and the caller — TLS, whose library may
//! hold decrypted bytes after a short read of plaintext, for which no new
//! event will come. So the rule is asked of the transport, never applied by
//! a loop to a socket.
//!
//! The server's connections are `ServerStream`s: with the `tls` feature
//! plain TCP or TLS by listener (`crate::tls`), one `match` per call.
//!
//! Plain TCP is the socket itself: `impl Transport for TcpStream`, each
//! method one line the compiler inlines, so it costs nothing over calling
//! the socket. Loops are generic over the transport (static dispatch), not
//! built on `dyn Transport`. The server's connections use it; the stress
//! client's may too. (Where `std::io::Read` or `Write` is in scope as well,
//! a `TcpStream` has two `read`s: say `Transport::read(&mut stream, buf)`;
//! generic code bound by `T: Transport` sees only this one.)

use std::io::{self, Read};

use mio::net::TcpStream;

use crate::rules;

/// The transport of the server's connections: with the `tls` feature plain
/// TCP or TLS by listener (`crate::tls`), else plain TCP alone.
#[cfg(feature = "tls")]
pub(crate) type ServerStream = crate::tls::Stream;
/// The transport of the server's connections: plain TCP (no `tls` feature).
#[cfg(not(feature = "tls"))]
pub(crate) type ServerStream = TcpStream;

/// A connection's byte stream over a TCP socket (see the module docs).
///
/// Errors follow the socket's: `WouldBlock` when nothing can move now,
/// `Interrupted` to retry, anything else breaks the connection.
pub trait Transport {
    /// The TCP socket underneath: to register it, set options on it, and
    /// ask the kernel about it.
    fn socket(&self) -> &TcpStream;

    /// The same, mutably: `mio` registration takes `&mut`.
    fn socket_mut(&mut self) -> &mut TcpStream;

    /// One read of the peer's bytes into `buf`: `Ok(0)` is end of stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes as much of `data` as can go now and returns how much (rule 1
    /// for writes: until `WouldBlock`, or a short write where that proves
    /// the socket full); 0 only if nothing could go.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;

    /// Sends what the transport itself still holds from earlier writes (TLS
    /// records, say), as far as the socket takes it. Called when the socket
    /// is writable.
    fn flush(&mut self) -> io::Result<()>;

    /// Whether the transport holds output of its own, so the connection
    /// needs WRITABLE interest even with nothing pending itself.
    fn wants_write(&self) -> bool;

    /// Whether a read that returned `n` of the `asked` bytes proves the
    /// socket drained, so the read that would only say `WouldBlock` may be
    /// skipped; `unproven` when an event said it may not
    /// ([`rules::short_read_unproven`]). A transport that buffers bytes
    /// between the socket and its reader must say `false`.
    fn read_proves_drained(&self, n: usize, asked: usize, unproven: bool) -> bool;

    /// Queues whatever ends the stream in-band, once the last byte we owe
    /// is handed over: TLS's `close_notify`. The connection closes only when
    /// [`Transport::wants_write`] then says it went out. Plain TCP has
    /// nothing to send (closing the socket sends FIN).
    fn end_output(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Ends our side of the stream (after the last byte we owe) while the
    /// connection stays open. Plain TCP sends FIN; TLS first sends its
    /// `close_notify`, and FIN once every record is out.
    fn close_write(&mut self) -> io::Result<()> {
        self.socket().shutdown(std::net::Shutdown::Write)
    }
}

/// Plain TCP: the socket itself, with the epoll shortcut where it holds
/// ([`rules::SHORT_IO_MEANS_DRAINED`]).
impl Transport for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }

    fn socket_mut(&mut self) -> &mut TcpStream {
        self
    }

    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        rules::write_until_full(&*self, data)
    }

    /// Nothing to do: every byte written went to the socket.
    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Never: plain TCP holds nothing of its own.
    #[inline]
    fn wants_write(&self) -> bool {
        false
    }

    #[inline]
    fn read_proves_drained(&self, n: usize, asked: usize, unproven: bool) -> bool {
        rules::read_proves_drained(n, asked, unproven)
    }
}
