//! One client: its socket, the echo it still owes, and what we know of its
//! readiness.
//!
//! A connection knows nothing of the loop except the [`Registry`] it uses to
//! change its own interest. The loop lends it what is shared ([`Io`]: the one
//! read buffer, the pool of output buffers, the counters) and calls
//! [`Connection::serve`] when an event names it; `serve` does the steps of the
//! echo in order and says what should happen next ([`Status`]).
//!
//! # Buffers and state
//!
//! Bytes are read into the loop's read buffer and written straight back. Only
//! what the socket does not take right now is copied into this connection's
//! [`Pending`] output, and only then does the connection hold a buffer (and
//! ask for WRITABLE events). The pending output is capped: at the cap we stop
//! reading from this peer until it drains, so the peer's own sends block — TCP
//! flow control does the back-pressure, and memory stays bounded.
//!
//! Readiness is edge-triggered: an event says "something changed", not "this
//! much is there". So the connection remembers `maybe_readable` — unread
//! input may be waiting — from the event until a read proves otherwise
//! (`WouldBlock`, or a short read where the transport says that proves it:
//! [`Transport::read_proves_drained`]).
//!
//! Every byte goes through the connection's [`Transport`] (plain TCP by
//! default, the socket itself); the connection never touches its socket's
//! data directly.
//!
//! A trusted balancer's connection (`--proxy-protocol`) first reads its
//! PROXY header, no byte past it, and echoes nothing until the loop has
//! admitted the client the header names ([`Status::Header`]).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Registry, Token};

use crate::logging::context;
use crate::pending::{BufferPool, Pending};
use crate::proxy::{self, Parsed};
use crate::rules::{self, READ_INTEREST};
use crate::stats::{Counter, Counters};
use crate::transport::Transport;

/// What the loop lends a connection while serving it.
#[derive(Debug)]
pub(crate) struct Io<'a> {
    /// The loop's one read buffer.
    pub(crate) buf: &'a mut [u8],
    /// Where pending-output buffers come from and go back to.
    pub(crate) pool: &'a mut BufferPool,
    /// The server's counters (bytes in and out, pending bytes).
    pub(crate) counters: &'a Counters,
    /// `--max-pending`: most bytes one connection may owe its peer.
    pub(crate) max_pending: usize,
    /// Reads allowed for this connection in this turn (fairness).
    pub(crate) reads_per_turn: usize,
    /// False during shutdown: flush the echo of what was read, then send
    /// FIN and discard input until the peer closes.
    pub(crate) reading: bool,
}

/// What the loop should do with a connection after serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Nothing to do until the next event.
    Waiting,
    /// Its read budget ran out with input possibly left: serve it again next
    /// turn (no new event will come for data that is already there).
    ReadAgain,
    /// The peer shut down its side and everything was echoed: close it.
    Finished,
    /// `--proxy-protocol`: the balancer's header is read, and says the
    /// connection is for `client` (its source, or the balancer itself for
    /// LOCAL and UNKNOWN). Admit or refuse that client; then serve again.
    Header {
        /// Whom to judge, count and log.
        client: SocketAddr,
        /// What the header said.
        header: proxy::Header,
    },
    /// `--proxy-protocol`: what came is not an acceptable header. Close
    /// it; none of it was echoed.
    BadHeader(proxy::Error),
}

/// What an event said about a connection. All hints: the next read or
/// write tells the truth.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hints {
    /// Input may have arrived.
    pub(crate) readable: bool,
    /// The send buffer may have room.
    pub(crate) writable: bool,
    /// A short read may not prove the socket drained: the peer closed or
    /// reset, or sent urgent data ([`rules::short_read_unproven`]).
    pub(crate) short_read_unproven: bool,
}

/// One accepted client, over transport `T`.
#[derive(Debug)]
pub(crate) struct Connection<T: Transport = TcpStream> {
    /// The transport, whose socket is registered with the loop's poll under
    /// this connection's slab key.
    stream: T,
    /// Echo owed to the peer; `None` while caught up, so an idle connection
    /// owns no buffer.
    pending: Option<Box<Pending>>,
    /// Unread input may be waiting in the kernel: set by a readable event,
    /// cleared only when a read proves the socket empty. Stays set while we
    /// hold off reading at the pending cap, so we resume without an event.
    maybe_readable: bool,
    /// The peer shut down its write side (a read returned 0). We still owe
    /// it the echo of everything before that.
    read_closed: bool,
    /// An event said that a short read may *not* mean the socket is
    /// drained, so the epoll shortcut must not be taken (see
    /// [`rules::SHORT_IO_MEANS_DRAINED`]) and we read until the read
    /// itself says 0, `WouldBlock` or an error:
    /// - the peer closed: data and FIN can arrive together and raise one
    ///   event, and the end of stream is still to be read after a short read;
    /// - urgent data arrived: Linux's `recv` never reads across the urgent
    ///   mark (tcp(7)), so a read that stops there is short with the rest of
    ///   the segment still queued.
    ///
    /// Either way no further event comes. Cleared by `WouldBlock`.
    short_read_unproven: bool,
    /// Shutdown only: we sent FIN after the last echo and now wait for the
    /// peer's. Closing while its input is unread would send RST instead,
    /// and an RST makes the kernel discard the echo still in our send
    /// buffer — bytes we promised to deliver.
    fin_sent: bool,
    /// Shutdown only: the peer sent something since the loop last asked
    /// [`Connection::owes_nothing`]. A peer still sending would get a reset
    /// if we closed now.
    heard_since_check: bool,
    /// WRITABLE is in the registered interest. Tracked so that interest is
    /// changed (a syscall) only when it must be.
    write_interest: bool,
    /// In the loop's queue of connections to read again next turn. The
    /// loop's bookkeeping, kept here so the check costs no lookup.
    pub(crate) queued: bool,
    /// `--proxy-protocol`: a balancer's PROXY header still to be read
    /// before anything is echoed. Boxed: most connections never have one.
    header: Option<Box<AwaitedHeader>>,
}

/// A balancer's connection whose PROXY header is not complete yet.
#[derive(Debug)]
struct AwaitedHeader {
    /// The balancer: the client when the header names none.
    balancer: SocketAddr,
    /// The header's bytes so far: only bytes [`proxy::parse`] said are the
    /// header's are read, so the data behind it stays in the socket.
    bytes: Vec<u8>,
}

impl<T: Transport> Connection<T> {
    /// Registers a freshly accepted socket for READABLE events under `token`.
    ///
    /// Registration reports data that is already there, so nothing that
    /// arrived before this call is missed.
    pub(crate) fn register(
        mut stream: T,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Connection<T>> {
        registry.register(stream.socket_mut(), token, READ_INTEREST)?;
        Ok(Connection {
            stream,
            pending: None,
            maybe_readable: false,
            read_closed: false,
            short_read_unproven: false,
            fin_sent: false,
            heard_since_check: false,
            write_interest: false,
            queued: false,
            header: None,
        })
    }

    /// The transport (for what the loop counts of it: TLS handshakes).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn stream(&self) -> &T {
        &self.stream
    }

    /// The same, mutably.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn stream_mut(&mut self) -> &mut T {
        &mut self.stream
    }

    /// `--proxy-protocol`: nothing is echoed until a PROXY header from
    /// `balancer` is read ([`Status::Header`]).
    pub(crate) fn expect_header(&mut self, balancer: SocketAddr) {
        let bytes = Vec::new();
        self.header = Some(Box::new(AwaitedHeader { balancer, bytes }));
    }

    /// Whether its PROXY header is still awaited.
    pub(crate) fn awaits_header(&self) -> bool {
        self.header.is_some()
    }

    /// Bytes owed to the peer and still held here.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len())
    }

    /// Bytes the kernel still holds for the peer, unsent or unacknowledged;
    /// `None` where the OS does not say (see [`crate::sys::unacknowledged`]).
    pub(crate) fn unacknowledged(&self) -> Option<usize> {
        crate::sys::unacknowledged(self.stream.socket())
    }

    /// Shutdown: whether closing now loses nothing and resets nothing,
    /// though the peer has not closed its side. True once our FIN is out,
    /// no input is left unread, the peer sent nothing since the last call
    /// (one still sending would be answered with a reset), and its TCP has
    /// acknowledged every byte we wrote. Resets the "sent something" mark.
    pub(crate) fn owes_nothing(&mut self) -> bool {
        let quiet = !std::mem::take(&mut self.heard_since_check);
        self.fin_sent
            && quiet
            && !self.maybe_readable
            && !self.stream.wants_write()
            && self.unacknowledged() == Some(0)
    }

    /// Serves one readiness event (or a turn from the loop's read-again
    /// queue, with no flags set). Returns what to do next and whether any
    /// byte moved (for the idle timer); an error means the connection is
    /// broken and must be closed.
    ///
    /// The flags are hints: an event may be spurious, and costs nothing then.
    pub(crate) fn serve(
        &mut self,
        hints: Hints,
        registry: &Registry,
        token: Token,
        io: &mut Io<'_>,
    ) -> io::Result<(Status, bool)> {
        let mut moved = false;
        let Hints {
            readable,
            writable,
            short_read_unproven,
        } = hints;
        self.maybe_readable |= readable || short_read_unproven;
        self.short_read_unproven |= short_read_unproven;
        if self.header.is_some() {
            // Nothing owed yet; during shutdown, nothing to wait for.
            let status = match io.reading {
                true => self.read_header(io)?,
                false => Status::Finished,
            };
            return Ok((status, false));
        }

        // a. Output first: what we owe was read before anything new (and
        //    what the transport holds of earlier writes before that).
        if writable && self.stream.wants_write() {
            self.stream.flush().map_err(|e| context("flush", e))?;
        }
        if writable && self.pending.is_some() {
            moved |= self.flush(io)?;
        }

        // b. Read and echo, within this turn's budget and the pending cap.
        //    During shutdown: once the echo is flushed, send FIN and read
        //    (discarding) until the peer closes too.
        let mut more = false;
        if io.reading {
            let read_any;
            (more, read_any) = self.read_input(io, false)?;
            moved |= read_any;
        } else if self.pending.is_none() {
            if !self.fin_sent {
                self.stream
                    .close_write()
                    .map_err(|e| context("shutdown", e))?;
                self.fin_sent = true;
            }
            let read_any;
            (more, read_any) = self.read_input(io, true)?;
            self.heard_since_check |= read_any;
        }

        // c. The peer is done sending and nothing is owed: end our output
        //    in-band (TLS's close_notify); finished once that went out too.
        let done = self.read_closed && self.pending.is_none() && {
            (self.stream.end_output()).map_err(|e| context("close_notify", e))?;
            !self.stream.wants_write()
        };

        // d. Ask for WRITABLE only while output is pending.
        self.update_interest(registry, token)?;

        // e. Finished, or served again, or waiting.
        let status = if done {
            Status::Finished
        } else if more {
            Status::ReadAgain
        } else {
            Status::Waiting
        };
        Ok((status, moved))
    }

    /// Reads until the socket is drained, the budget is spent or the pending
    /// cap is reached, echoing each chunk (or, when `discard`, dropping it).
    /// Returns (budget ran out with input maybe left, whether anything was
    /// read).
    fn read_input(&mut self, io: &mut Io<'_>, discard: bool) -> io::Result<(bool, bool)> {
        let mut reads = 0;
        let mut read_any = false;
        while self.maybe_readable && !self.read_closed {
            // Back-pressure: never read more than the pending output can
            // hold, so memory stays within the cap whatever the peer does.
            let room = if discard {
                io.buf.len()
            } else {
                io.max_pending
                    .saturating_sub(self.pending_len())
                    .min(io.buf.len())
            };
            if room == 0 {
                break; // resume when a writable event drains the output
            }
            if reads == io.reads_per_turn {
                return Ok((true, read_any));
            }
            reads += 1;
            match self.stream.read(&mut io.buf[..room]) {
                Ok(0) => {
                    self.read_closed = true;
                    self.maybe_readable = false;
                }
                Ok(n) => {
                    read_any = true;
                    if (self.stream).read_proves_drained(n, room, self.short_read_unproven) {
                        self.maybe_readable = false;
                    }
                    if !discard {
                        io.counters.add(Counter::BytesIn, n as u64);
                        self.echo(n, io)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                    self.short_read_unproven = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(context("read", e)),
            }
        }
        Ok((false, read_any))
    }

    /// Reads the PROXY header, never a byte past it: each read asks for no
    /// more than [`proxy::parse`] says is certainly the header's. Stops at
    /// `WouldBlock`, at the read budget, or once the header is decided.
    /// The peer closing first is [`Status::Finished`].
    fn read_header(&mut self, io: &mut Io<'_>) -> io::Result<Status> {
        let Some(awaited) = self.header.as_mut() else {
            return Ok(Status::Waiting);
        };
        let mut reads = 0;
        while self.maybe_readable {
            let needed = match proxy::parse(&awaited.bytes) {
                Ok(Parsed::Incomplete { needed }) => needed,
                Ok(Parsed::Complete { header, .. }) => {
                    let client = match header {
                        proxy::Header::Proxied { source, .. } => source,
                        proxy::Header::Local | proxy::Header::Unknown => awaited.balancer,
                    };
                    self.header = None;
                    return Ok(Status::Header { client, header });
                }
                Err(e) => return Ok(Status::BadHeader(e)),
            };
            if reads == io.reads_per_turn {
                return Ok(Status::ReadAgain);
            }
            reads += 1;
            let room = needed.min(io.buf.len());
            // From the socket itself, past the transport: the header comes
            // before anything the transport speaks (a TLS handshake).
            match io::Read::read(self.stream.socket_mut(), &mut io.buf[..room]) {
                Ok(0) => {
                    self.read_closed = true;
                    return Ok(Status::Finished);
                }
                Ok(n) => awaited.bytes.extend_from_slice(&io.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                    self.short_read_unproven = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(context("read", e)),
            }
        }
        Ok(Status::Waiting)
    }

    /// Echoes the first `n` bytes of the read buffer: straight to the socket
    /// when nothing is owed, and whatever it does not take into pending
    /// output. Behind existing pending output, straight to pending: order.
    fn echo(&mut self, n: usize, io: &mut Io<'_>) -> io::Result<()> {
        let data = &io.buf[..n];
        let written = match self.pending {
            None => write_some(&mut self.stream, data, io.counters)?,
            Some(_) => 0,
        };
        if written < n {
            let rest = &data[written..];
            let pending = self.pending.get_or_insert_with(|| io.pool.take());
            pending.append(rest, io.max_pending);
            io.counters.add(Counter::PendingBytes, rest.len() as u64);
        }
        Ok(())
    }

    /// Writes pending output until it is gone or the socket is full. Returns
    /// whether any byte moved.
    fn flush(&mut self, io: &mut Io<'_>) -> io::Result<bool> {
        let mut moved = false;
        while let Some(pending) = self.pending.as_mut() {
            let front = pending.front();
            let offered = front.len();
            let n = write_some(&mut self.stream, front, io.counters)?;
            pending.consume(n);
            io.counters.sub(Counter::PendingBytes, n as u64);
            moved |= n > 0;
            if pending.len() == 0 {
                if let Some(empty) = self.pending.take() {
                    io.pool.give_back(empty);
                }
            } else if n < offered {
                break; // the socket is full: wait for WRITABLE
            }
        }
        Ok(moved)
    }

    /// Registers or drops WRITABLE interest to match whether output is
    /// pending, here or in the transport (rule 3 of [`crate::rules`]).
    fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let pending = self.pending.is_some() || self.stream.wants_write();
        rules::update_interest(
            registry,
            self.stream.socket_mut(),
            token,
            &mut self.write_interest,
            pending,
        )
        .map_err(|e| context("reregister", e))
    }

    /// Closes the connection, returning its pending output (if any) to the
    /// pool and keeping the pending gauge exact. Dropping the socket closes
    /// it, which also removes it from the poll on every backend; after a
    /// clean end of stream the kernel sends FIN.
    pub(crate) fn close(mut self, pool: &mut BufferPool, counters: &Counters) {
        if let Some(pending) = self.pending.take() {
            counters.sub(Counter::PendingBytes, pending.len() as u64);
            pool.give_back(pending);
        }
    }
}

/// Writes as much of `data` as the transport takes now ([`Transport::write`])
/// and counts it.
fn write_some<T: Transport>(stream: &mut T, data: &[u8], counters: &Counters) -> io::Result<usize> {
    let n = stream.write(data).map_err(|e| context("write", e))?;
    counters.add(Counter::BytesOut, n as u64);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use mio::{Events, Poll};

    use super::*;

    /// Plain TCP with a count of its reads, and a switch for the shortcut:
    /// off, it answers as a transport that holds bytes of its own (TLS).
    #[derive(Debug)]
    struct Counted {
        tcp: TcpStream,
        reads: usize,
        shortcut: bool,
    }

    impl Transport for Counted {
        fn socket(&self) -> &TcpStream {
            &self.tcp
        }
        fn socket_mut(&mut self) -> &mut TcpStream {
            &mut self.tcp
        }
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            Transport::read(&mut self.tcp, buf)
        }
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            Transport::write(&mut self.tcp, data)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn wants_write(&self) -> bool {
            false
        }
        fn read_proves_drained(&self, n: usize, asked: usize, unproven: bool) -> bool {
            self.shortcut && self.tcp.read_proves_drained(n, asked, unproven)
        }
    }

    /// Serves one readable event of 100 bytes on a real loopback connection
    /// over `Counted`; returns how many reads the connection made and the
    /// echo the peer got.
    fn reads_for_one_message(shortcut: bool) -> (usize, Vec<u8>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut poll = Poll::new().unwrap();
        let token = Token(0);
        let tcp = TcpStream::from_std(accepted);
        let stream = Counted {
            tcp,
            reads: 0,
            shortcut,
        };
        let mut conn = Connection::register(stream, poll.registry(), token).unwrap();
        peer.write_all(&[7; 100]).unwrap();
        let mut events = Events::with_capacity(8);
        while !events.iter().any(|e| e.is_readable()) {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
        }
        let (mut buf, mut pool, counters) =
            (vec![0; 4096], BufferPool::new(1), Counters::default());
        let mut io = Io {
            buf: &mut buf,
            pool: &mut pool,
            counters: &counters,
            max_pending: 1 << 20,
            reads_per_turn: 16,
            reading: true,
        };
        let hints = Hints {
            readable: true,
            ..Hints::default()
        };
        let (status, moved) = conn.serve(hints, poll.registry(), token, &mut io).unwrap();
        assert_eq!((status, moved), (Status::Waiting, true));
        let mut echo = vec![0; 100];
        peer.read_exact(&mut echo).unwrap();
        (conn.stream.reads, echo)
    }

    /// Whether a short read ends the reading is the transport's answer, not
    /// the loop's: over plain TCP on epoll one read serves the message (the
    /// short read proves the socket drained); a transport that says a short
    /// read proves nothing gets the read that says `WouldBlock` too — and
    /// both echo every byte.
    #[test]
    fn the_transport_decides_whether_a_short_read_drains() {
        let (plain, echo) = reads_for_one_message(true);
        assert_eq!(echo, [7; 100]);
        let expected = if rules::SHORT_IO_MEANS_DRAINED { 1 } else { 2 };
        assert_eq!(plain, expected);
        let (held, echo) = reads_for_one_message(false);
        assert_eq!(echo, [7; 100]);
        assert_eq!(held, 2);
    }
}
