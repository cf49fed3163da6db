//! Many clients on one thread: non-blocking sockets on a `mio::Poll`, each
//! sending its own verifiable stream ([`super::stream_bytes`]) and checking
//! every byte that comes back.
//!
//! The test drives the fleet turn by turn and steers each peer between
//! turns — how much it may still read (`read_allowance`: slow readers,
//! non-readers), how far ahead it may write (`window`: pipelining depth),
//! when it half-closes, resets or vanishes. One thread can so play hundreds
//! of hostile clients without a thread each, which matters on a 2-core CI
//! machine where the server under test needs the CPU too.
//!
//! Readiness is edge-triggered: a peer remembers it may be readable or
//! writable until a call says `WouldBlock`, so a peer held back by its
//! allowance resumes without a new event.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{linger_zero, stream_bytes, Rng, TIMEOUT};

/// Reads or writes one peer may do per turn before the others get theirs.
const OPS_PER_TURN: usize = 4;

/// One client of the fleet.
#[derive(Debug)]
pub struct Peer {
    /// Which stream it sends (see [`stream_bytes`]).
    pub id: usize,
    /// `None` once we closed it (after end of stream, a reset, a drop).
    stream: Option<TcpStream>,
    /// When its connect returned.
    pub connected_at: Instant,
    /// Bytes written so far.
    pub sent: u64,
    /// Bytes read back so far, all verified.
    pub received: u64,
    /// Stop writing after this many bytes; `None`: until the server closes.
    pub send_limit: Option<u64>,
    /// Shut down the write side once `send_limit` bytes are sent.
    pub fin_after_send: bool,
    /// Bytes it may still read; `u64::MAX` for no limit. A slow reader gets
    /// this topped up by the test now and then; a non-reader keeps 0.
    pub read_allowance: u64,
    /// Most bytes sent but not yet echoed back (pipelining depth).
    pub window: u64,
    /// Size of each write, drawn from this range.
    pub write_size: (usize, usize),
    /// Size of each read, drawn from this range.
    pub read_size: (usize, usize),
    /// Draws the sizes.
    rng: Rng,
    /// The write side is shut down.
    pub fin_sent: bool,
    /// When the server's end of stream was read.
    pub eof_at: Option<Instant>,
    /// The first error a read or write returned (a reset, a broken pipe).
    pub error: Option<io::ErrorKind>,
    /// Offset of the first echoed byte that was wrong, if any.
    pub corrupt_at: Option<u64>,
    /// Unread input may be waiting.
    readable: bool,
    /// The send buffer may have room.
    writable: bool,
}

impl Peer {
    /// Still open on our side.
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Bytes sent and not (yet) echoed back.
    fn in_flight(&self) -> u64 {
        self.sent - self.received
    }

    /// A one-line account for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "peer {}: sent {} received {} fin_sent {} eof {:?} error {:?} corrupt_at {:?} open {}",
            self.id,
            self.sent,
            self.received,
            self.fin_sent,
            self.eof_at.map(|t| t.duration_since(self.connected_at)),
            self.error,
            self.corrupt_at,
            self.is_open()
        )
    }
}

/// A set of client peers on one poll.
#[derive(Debug)]
pub struct Fleet {
    poll: Poll,
    events: Events,
    pub peers: Vec<Peer>,
    buf: Vec<u8>,
    /// Some peer stopped for its per-turn budget with work left: the next
    /// turn must not block.
    leftover: bool,
    /// Longest a turn of [`Fleet::run_until`] waits for readiness: how
    /// often the test's own timers (pacing) are looked at.
    pub tick: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet {
            poll: Poll::new().expect("client poll"),
            events: Events::with_capacity(1024),
            peers: Vec::new(),
            buf: vec![0; 256 * 1024],
            leftover: false,
            tick: Duration::from_millis(10),
        }
    }

    /// Connects a peer sending stream `id` (a blocking connect, then
    /// non-blocking I/O); it reads and writes without limit until told
    /// otherwise. With `buffers`, the socket's send and receive buffers are
    /// fixed at that many bytes (which turns off the kernel's autotuning):
    /// that keeps what a hostile client parks in kernel memory small and
    /// known. Returns its index.
    #[track_caller]
    pub fn connect(&mut self, addr: SocketAddr, id: usize, buffers: Option<usize>) -> usize {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("client socket");
        if let Some(size) = buffers {
            socket.set_send_buffer_size(size).expect("SO_SNDBUF");
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        socket.connect(&addr.into()).expect("connect to server");
        let std: std::net::TcpStream = socket.into();
        let connected_at = Instant::now();
        std.set_nodelay(true).expect("TCP_NODELAY");
        std.set_nonblocking(true).expect("non-blocking");
        let mut stream = TcpStream::from_std(std);
        let index = self.peers.len();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register client");
        self.peers.push(Peer {
            id,
            stream: Some(stream),
            connected_at,
            sent: 0,
            received: 0,
            send_limit: Some(0),
            fin_after_send: false,
            read_allowance: u64::MAX,
            window: u64::MAX,
            write_size: (64 * 1024, 64 * 1024),
            read_size: (64 * 1024, 64 * 1024),
            rng: Rng::new(id as u64 ^ 0x5EED),
            fin_sent: false,
            eof_at: None,
            error: None,
            corrupt_at: None,
            readable: false,
            writable: false,
        });
        index
    }

    /// Peers still open on our side.
    pub fn open(&self) -> usize {
        self.peers.iter().filter(|p| p.is_open()).count()
    }

    /// Waits up to `timeout` for readiness (not at all if work is left from
    /// the last turn), then lets every peer read and write what its limits
    /// allow.
    pub fn turn(&mut self, timeout: Duration) {
        let timeout = if self.leftover {
            Duration::ZERO
        } else {
            timeout
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("client poll: {e}"),
        }
        for event in self.events.iter() {
            let peer = &mut self.peers[event.token().0];
            peer.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
            peer.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
        }
        self.leftover = false;
        for i in 0..self.peers.len() {
            self.leftover |= self.serve(i);
        }
    }

    /// Runs turns until `done` holds, panicking with `what` after `limit`.
    #[track_caller]
    pub fn run_until(
        &mut self,
        what: &str,
        limit: Duration,
        mut between: impl FnMut(&mut Fleet) -> bool,
    ) {
        let deadline = Instant::now() + limit.max(TIMEOUT);
        while !between(self) {
            if Instant::now() >= deadline {
                let stuck: Vec<String> = self
                    .peers
                    .iter()
                    .filter(|p| p.is_open())
                    .take(5)
                    .map(Peer::describe)
                    .collect();
                panic!(
                    "timed out after {limit:?} waiting for {what}; {} peers open, e.g.\n{}",
                    self.open(),
                    stuck.join("\n")
                );
            }
            self.turn(self.tick);
        }
    }

    /// Closes peer `i` with a reset (SO_LINGER 0).
    pub fn reset(&mut self, i: usize) {
        if let Some(stream) = self.peers[i].stream.take() {
            linger_zero(&stream);
        }
    }

    /// Closes peer `i` the ordinary way (FIN, or RST if input is unread).
    pub fn drop_peer(&mut self, i: usize) {
        self.peers[i].stream = None;
    }

    /// Writes, then reads, for peer `i` within its limits and the per-turn
    /// budget. Returns whether it stopped with work left.
    fn serve(&mut self, i: usize) -> bool {
        let peer = &mut self.peers[i];
        // Out of the peer while serving it (put back below unless closed).
        let Some(mut stream) = peer.stream.take() else {
            return false;
        };
        let mut left = peer.write(&mut stream);
        peer.fin_when_sent(&stream);
        match peer.read(&mut stream, &mut self.buf) {
            Some(more) => left |= more,
            None => return false, // a reset: nothing more will come; close
        }
        if peer.eof_at.is_none() {
            peer.stream = Some(stream);
        }
        left
    }
}

impl Peer {
    /// Writes what the limits (send limit, window) allow, at most
    /// [`OPS_PER_TURN`] writes. Returns whether it stopped with more to
    /// write.
    fn write(&mut self, stream: &mut TcpStream) -> bool {
        let mut ops = 0;
        while self.writable && !self.fin_sent && self.eof_at.is_none() && self.error.is_none() {
            let limit_left = self.send_limit.map_or(u64::MAX, |l| l - self.sent);
            let window_left = self.window.saturating_sub(self.in_flight());
            let want = self.rng.range(self.write_size.0, self.write_size.1) as u64;
            let n = want.min(limit_left).min(window_left) as usize;
            if n == 0 {
                break;
            }
            if ops == OPS_PER_TURN {
                return true;
            }
            ops += 1;
            match stream.write(stream_bytes(self.id, self.sent, n)) {
                Ok(0) => {
                    self.error.get_or_insert(io::ErrorKind::WriteZero);
                }
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error.get_or_insert(e.kind());
                }
            }
        }
        false
    }

    /// Shuts down the write side once everything is sent, if told to.
    fn fin_when_sent(&mut self, stream: &TcpStream) {
        if self.fin_after_send
            && !self.fin_sent
            && self.error.is_none()
            && self.send_limit == Some(self.sent)
        {
            if let Err(e) = stream.shutdown(Shutdown::Write) {
                self.error.get_or_insert(e.kind());
            }
            self.fin_sent = true;
        }
    }

    /// Reads what the allowance allows, at most [`OPS_PER_TURN`] reads,
    /// checking every byte against the stream it sent. Returns whether it
    /// stopped with more to read, or `None` after a read error (a reset).
    fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> Option<bool> {
        let mut ops = 0;
        while self.readable && self.read_allowance > 0 && self.eof_at.is_none() {
            if ops == OPS_PER_TURN {
                return Some(true);
            }
            ops += 1;
            let want = (self.rng.range(self.read_size.0, self.read_size.1) as u64)
                .min(self.read_allowance)
                .min(buf.len() as u64) as usize;
            match stream.read(&mut buf[..want]) {
                Ok(0) => self.eof_at = Some(Instant::now()),
                Ok(n) => self.check(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error.get_or_insert(e.kind());
                    return None;
                }
            }
        }
        Some(false)
    }

    /// Takes in `got`, the next bytes of the echo: notes the first that
    /// differs from what was sent, and counts them against the allowance.
    fn check(&mut self, got: &[u8]) {
        let n = got.len() as u64;
        if self.corrupt_at.is_none() {
            // Slice equality is a memcmp, even in debug builds; find the
            // first difference only when there is one.
            let want = stream_bytes(self.id, self.received, got.len());
            if got != want {
                let at = got.iter().zip(want).position(|(a, b)| a != b);
                self.corrupt_at = Some(self.received + at.unwrap_or(0) as u64);
            }
        }
        self.received += n;
        if self.read_allowance != u64::MAX {
            self.read_allowance -= n;
        }
    }
}
