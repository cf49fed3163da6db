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
//! (`WouldBlock`, or on epoll a short read; see [`crate::sys`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::stats::{Counter, Counters};
use crate::sys::{READ_INTEREST, SHORT_IO_MEANS_DRAINED};

/// Echoed bytes the peer has not taken yet, oldest first.
///
/// A ring ([`VecDeque`]): appending copies only the bytes appended, and a
/// partial write only moves the start, so a connection deep in back-pressure
/// costs its neighbours nothing extra per event. It grows with the bytes
/// actually owed — doubling, but never past the connection's cap — so a large
/// `--max-pending` costs memory only for a peer that really stops reading.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The bytes owed, in order.
    bytes: VecDeque<u8>,
}

/// The smallest allocation a pending buffer starts with: a few pages, so
/// that a burst of small appends does not reallocate for each.
const MIN_PENDING_CAPACITY: usize = 4096;

impl Pending {
    /// Bytes still owed to the peer.
    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends `data`, growing the ring geometrically up to `cap` (the
    /// caller never lets the pending bytes exceed it).
    fn append(&mut self, data: &[u8], cap: usize) {
        let needed = self.bytes.len() + data.len();
        if needed > self.bytes.capacity() {
            let target = (self.bytes.capacity() * 2)
                .max(MIN_PENDING_CAPACITY)
                .min(cap)
                .max(needed);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.extend(data);
    }

    /// The oldest owed bytes that are contiguous in memory: what the next
    /// write sends. Empty only when nothing is owed.
    fn front(&self) -> &[u8] {
        let (front, back) = self.bytes.as_slices();
        if front.is_empty() {
            back
        } else {
            front
        }
    }

    /// Forgets the first `n` bytes: the socket took them.
    fn consume(&mut self, n: usize) {
        self.bytes.drain(..n);
    }
}

/// Output buffers not owned by any connection, kept for reuse.
///
/// A slow reader that catches up gives its buffer back; the next one that
/// falls behind takes it, so steady back-pressure allocates nothing. The pool
/// is bounded in count and in the size of what it keeps: a burst of slow
/// readers, or one huge buffer, costs memory once, not forever.
#[derive(Debug)]
pub(crate) struct BufferPool {
    /// Buffers ready to be lent, emptied. Boxed on purpose: a connection
    /// holds its pending output as one pointer (it stays small while idle),
    /// and lending moves that pointer.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Pending>>,
    /// Most buffers kept; beyond it a returned buffer is freed.
    keep: usize,
}

/// A returned buffer larger than this is freed rather than pooled: its
/// memory goes back to the allocator (and the OS) once its peer caught up.
const POOLED_CAPACITY: usize = 64 * 1024;

impl BufferPool {
    /// A pool keeping at most `keep` spare buffers.
    pub(crate) fn new(keep: usize) -> Self {
        BufferPool {
            spare: Vec::new(),
            keep,
        }
    }

    fn take(&mut self) -> Box<Pending> {
        self.spare.pop().unwrap_or_default()
    }

    fn give_back(&mut self, mut pending: Box<Pending>) {
        if self.spare.len() < self.keep && pending.bytes.capacity() <= POOLED_CAPACITY {
            pending.bytes.clear();
            self.spare.push(pending);
        }
    }
}

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
}

/// What an event said about a connection. All hints: the next read or
/// write tells the truth.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hints {
    /// Input may have arrived.
    pub(crate) readable: bool,
    /// The send buffer may have room.
    pub(crate) writable: bool,
    /// The peer may have closed or reset (read-closed, hang-up or error).
    pub(crate) closing: bool,
    /// Urgent (out-of-band) data may be waiting: epoll's `EPOLLPRI`.
    pub(crate) urgent: bool,
}

/// One accepted client.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The socket, registered with the loop's poll under this connection's
    /// slab key.
    stream: TcpStream,
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
    /// [`crate::sys::SHORT_IO_MEANS_DRAINED`]) and we read until the read
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
}

impl Connection {
    /// Registers a freshly accepted socket for READABLE events under `token`.
    ///
    /// Registration reports data that is already there, so nothing that
    /// arrived before this call is missed.
    pub(crate) fn register(
        mut stream: TcpStream,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Connection> {
        registry.register(&mut stream, token, READ_INTEREST)?;
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
        })
    }

    /// Bytes owed to the peer and still held here.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len())
    }

    /// Bytes the kernel still holds for the peer, unsent or unacknowledged;
    /// `None` where the OS does not say (see [`crate::sys::unacknowledged`]).
    pub(crate) fn unacknowledged(&self) -> Option<usize> {
        crate::sys::unacknowledged(&self.stream)
    }

    /// Shutdown: whether closing now loses nothing and resets nothing,
    /// though the peer has not closed its side. True once our FIN is out,
    /// no input is left unread, the peer sent nothing since the last call
    /// (one still sending would be answered with a reset), and its TCP has
    /// acknowledged every byte we wrote. Resets the "sent something" mark.
    pub(crate) fn owes_nothing(&mut self) -> bool {
        let quiet = !std::mem::take(&mut self.heard_since_check);
        self.fin_sent && quiet && !self.maybe_readable && self.unacknowledged() == Some(0)
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
            closing,
            urgent,
        } = hints;
        self.maybe_readable |= readable || closing || urgent;
        self.short_read_unproven |= closing || urgent;

        // a. Output first: what we owe was read before anything new.
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
                    .shutdown(std::net::Shutdown::Write)
                    .map_err(|e| named("shutdown", e))?;
                self.fin_sent = true;
            }
            let read_any;
            (more, read_any) = self.read_input(io, true)?;
            self.heard_since_check |= read_any;
        }

        // c. Ask for WRITABLE only while output is pending.
        self.update_interest(registry, token)?;

        // d. Finished once the peer is done sending and nothing is owed.
        let status = if self.read_closed && self.pending.is_none() {
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
            match (&self.stream).read(&mut io.buf[..room]) {
                Ok(0) => {
                    self.read_closed = true;
                    self.maybe_readable = false;
                }
                Ok(n) => {
                    read_any = true;
                    if SHORT_IO_MEANS_DRAINED && n < room && !self.short_read_unproven {
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
                Err(e) => return Err(named("read", e)),
            }
        }
        Ok((false, read_any))
    }

    /// Echoes the first `n` bytes of the read buffer: straight to the socket
    /// when nothing is owed, and whatever it does not take into pending
    /// output. Behind existing pending output, straight to pending: order.
    fn echo(&mut self, n: usize, io: &mut Io<'_>) -> io::Result<()> {
        let data = &io.buf[..n];
        let written = match self.pending {
            None => write_some(&self.stream, data, io.counters)?,
            Some(_) => 0,
        };
        if written < n {
            let rest = &data[written..];
            let pending = self.pending.get_or_insert_with(|| io.pool.take());
            pending.append(rest, io.max_pending);
            io.counters.add_pending(rest.len());
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
            let n = write_some(&self.stream, front, io.counters)?;
            pending.consume(n);
            io.counters.sub_pending(n);
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
    /// pending. Keeping WRITABLE on an idle socket would wake the loop for
    /// nothing on level-triggered backends and waste a syscall everywhere.
    fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let want_write = self.pending.is_some();
        if want_write != self.write_interest {
            let interest = if want_write {
                READ_INTEREST | Interest::WRITABLE
            } else {
                READ_INTEREST
            };
            registry
                .reregister(&mut self.stream, token, interest)
                .map_err(|e| named("reregister", e))?;
            self.write_interest = want_write;
        }
        Ok(())
    }

    /// Closes the connection, returning its pending output (if any) to the
    /// pool and keeping the pending gauge exact. Dropping the socket closes
    /// it, which also removes it from the poll on every backend; after a
    /// clean end of stream the kernel sends FIN.
    pub(crate) fn close(mut self, pool: &mut BufferPool, counters: &Counters) {
        if let Some(pending) = self.pending.take() {
            counters.sub_pending(pending.len());
            pool.give_back(pending);
        }
    }
}

/// Writes as much of `data` as the socket takes now; returns how much.
///
/// Stops at `WouldBlock`, retries `Interrupted`, and on epoll also stops after
/// a partial write: the send buffer is full and the next call would only say
/// `WouldBlock` (see [`crate::sys::SHORT_IO_MEANS_DRAINED`]).
fn write_some(stream: &TcpStream, data: &[u8], counters: &Counters) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match (&*stream).write(&data[written..]) {
            Ok(0) => return Err(named("write", io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                written += n;
                counters.add(Counter::BytesOut, n as u64);
                if SHORT_IO_MEANS_DRAINED && written < data.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(named("write", e)),
        }
    }
    Ok(written)
}

/// Prefixes an error with the call that returned it ("read: Connection
/// reset by peer"), keeping its kind. Only on the error path.
fn named(call: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{call}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory follows the bytes owed, not the cap: with a 1 GiB cap, 100
    /// pending bytes hold a few KiB, and growth stops at the cap exactly.
    #[test]
    fn pending_grows_with_the_bytes_owed() {
        let mut p = Pending::default();
        p.append(&[7; 100], 1 << 30);
        assert_eq!(p.len(), 100);
        assert!(
            p.bytes.capacity() <= 2 * MIN_PENDING_CAPACITY,
            "{}",
            p.bytes.capacity()
        );
        let cap = 10_000;
        let mut p = Pending::default();
        for _ in 0..100 {
            p.append(&[1; 100], cap);
        }
        assert_eq!(p.len(), cap);
        assert_eq!(p.bytes.capacity(), cap);
    }

    /// An append copies only the bytes appended: what is already owed stays
    /// where it is, even after a partial write consumed the front (the old
    /// buffer compacted — moved every owed byte — on each append).
    #[test]
    fn append_moves_nothing_already_owed() {
        let mut p = Pending::default();
        let data: Vec<u8> = (0..=255).cycle().take(3000).collect();
        p.append(&data, 1 << 20);
        p.consume(1000);
        let before = p.front().as_ptr();
        p.append(&data[..500], 1 << 20);
        assert_eq!(p.front().as_ptr(), before);
        assert_eq!(p.front()[0], data[1000]);
        // Wrapped around the ring, order is kept.
        let mut out = Vec::new();
        while p.len() > 0 {
            let n = p.front().len();
            out.extend_from_slice(p.front());
            p.consume(n);
        }
        assert_eq!(out.len(), 2500);
        assert_eq!(&out[..2000], &data[1000..]);
        assert_eq!(&out[2000..], &data[..500]);
    }
}
