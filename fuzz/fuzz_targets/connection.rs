//! One server connection, structure-aware: the fuzzer writes a script of
//! what the peer and the kernel do — sends of any size, urgent data, reads
//! by the peer that make room for any part of a write, `WouldBlock`,
//! `Interrupted`, resets, half-close, idle expiry, graceful shutdown and
//! spurious events — and the connection is served through the transport
//! seam by a transport that plays that script (over a real, registered but
//! otherwise unused loopback socket). After every step: what was written
//! back is exactly the start of what was read, in order; what was read and
//! not yet written is pending, and pending never exceeds `--max-pending`;
//! the pending gauge is exact; "moved" is told exactly when bytes moved; no
//! error without a reset; nothing written after our FIN. At the end the
//! peer takes everything and closes: every byte it sent came back (or,
//! after shutdown began, every byte read before it).

#![no_main]

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Mutex;

use arbitrary::Arbitrary;
use echoloop::fuzzing::connection::{Driver, Served};
use echoloop::rules;
use echoloop::transport::Transport;
use libfuzzer_sys::fuzz_target;
use mio::net::TcpStream;

/// What the fuzzer writes: the settings, then the steps.
#[derive(Arbitrary, Debug)]
struct Script {
    /// The loop's read buffer (clamped to 1..=4096).
    read_buffer: u16,
    /// `--max-pending` (clamped to 1..=16384).
    max_pending: u16,
    /// Reads per turn (clamped to 1..=16).
    reads_per_turn: u8,
    /// Plain TCP's rule for short reads (epoll's shortcut), or a transport
    /// that holds bytes of its own, for which a short read proves nothing
    /// (and whose reads may then return any part).
    shortcut: bool,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// The peer sends this many bytes (up to 8 KiB): a readable event.
    Send(u16),
    /// The peer sends urgent data: reads stop at the mark before these
    /// bytes; the event says a short read proves nothing.
    Urgent(u16),
    /// The peer reads this many bytes: room in the send buffer, a writable
    /// event.
    Take(u16),
    /// The peer shuts down its side (FIN): readable, short read unproven.
    Fin,
    /// The peer resets: every later read and write fails.
    Reset,
    /// The next read or write is interrupted (`EINTR`).
    Interrupt,
    /// Without the shortcut: the next read returns at most this much.
    ReadSize(u16),
    /// An event with any flags, true or not.
    Spurious {
        readable: bool,
        writable: bool,
        unproven: bool,
    },
    /// The server begins its graceful shutdown (and serves the connection).
    Shutdown,
    /// The idle timer expires: the loop closes the connection.
    Expire,
}

/// The byte at offset `i` of the peer's stream: any loss, repeat or
/// reordering changes what the echo must be.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// The kernel and the peer, as the script has made them so far.
#[derive(Debug, Default)]
struct Kernel {
    /// Bytes the peer sent so far.
    sent: u64,
    /// Bytes the server read so far (offset of `inbound`'s front).
    read: u64,
    /// Bytes received, not read yet: `sent - read`.
    inbound: u64,
    /// Bytes before the urgent mark: a read stops there.
    urgent_in: Option<u64>,
    /// The peer's FIN is after `inbound`.
    fin: bool,
    /// The peer reset the connection.
    reset: bool,
    /// The next read or write fails with `Interrupted`.
    interrupt: bool,
    /// Without the shortcut: the most the next read returns.
    next_read: Option<usize>,
    /// Room in the send buffer.
    room: u64,
    /// Bytes the server wrote back.
    written: u64,
    /// The server sent its FIN.
    fin_sent: bool,
}

type Shared = Rc<RefCell<Kernel>>;

/// Plays the script; its socket is only registered, never used.
struct Scripted {
    tcp: Option<TcpStream>,
    kernel: Shared,
    shortcut: bool,
}

/// The kernel's send side, for `rules::write_until_full` (as plain TCP).
struct Sink<'a>(&'a Shared);

impl io::Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut k = self.0.borrow_mut();
        assert!(!k.fin_sent, "a write after our FIN");
        if k.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if std::mem::take(&mut k.interrupt) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (data.len() as u64).min(k.room);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for (i, &b) in data[..n as usize].iter().enumerate() {
            let at = k.written + i as u64;
            assert_eq!(b, pattern(at), "echo byte {at} is not the byte read there");
        }
        k.written += n;
        k.room -= n;
        assert!(k.written <= k.read, "wrote back more than was read");
        Ok(n as usize)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Scripted {
    fn socket(&self) -> &TcpStream {
        self.tcp.as_ref().expect("held until dropped")
    }
    fn socket_mut(&mut self) -> &mut TcpStream {
        self.tcp.as_mut().expect("held until dropped")
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut k = self.kernel.borrow_mut();
        if k.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if std::mem::take(&mut k.interrupt) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if k.urgent_in == Some(0) {
            k.urgent_in = None; // at the mark: this read goes past it
        }
        let mut n = (buf.len() as u64).min(k.inbound);
        if let Some(before) = k.urgent_in {
            n = n.min(before);
        }
        if !self.shortcut {
            if let Some(most) = k.next_read.take() {
                n = n.min(most.max(1) as u64);
            }
        }
        if n == 0 {
            return if k.fin && k.inbound == 0 {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        for (i, b) in buf[..n as usize].iter_mut().enumerate() {
            *b = pattern(k.read + i as u64);
        }
        k.read += n;
        k.inbound -= n;
        k.urgent_in = k.urgent_in.map(|before| before - n);
        Ok(n as usize)
    }
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        rules::write_until_full(Sink(&self.kernel), data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn wants_write(&self) -> bool {
        false
    }
    fn read_proves_drained(&self, n: usize, asked: usize, unproven: bool) -> bool {
        self.shortcut && rules::read_proves_drained(n, asked, unproven)
    }
    fn close_write(&mut self) -> io::Result<()> {
        let mut k = self.kernel.borrow_mut();
        if k.reset {
            return Err(io::ErrorKind::NotConnected.into());
        }
        k.fin_sent = true;
        Ok(())
    }
}

/// Connected loopback sockets, reused from run to run: registration needs a
/// real one, and a fresh connection per run would use up the ports. Kept as
/// std sockets: a new `mio` wrapper each run starts unregistered (the old
/// poll, and its registration, are gone by then).
static SOCKETS: Mutex<Vec<(std::net::TcpStream, std::net::TcpStream)>> = Mutex::new(Vec::new());

fn socket() -> (TcpStream, std::net::TcpStream) {
    if let Some((ours, client)) = SOCKETS.lock().unwrap().pop() {
        return (TcpStream::from_std(ours), client);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    accepted.set_nonblocking(true).expect("nonblocking");
    (TcpStream::from_std(accepted), client)
}

/// The harness's view of one connection: the driver and the kernel.
struct Harness {
    driver: Driver<Scripted>,
    kernel: Shared,
    max_pending: usize,
    /// Bytes read before shutdown began (`None`: still reading): those are
    /// owed back; later reads are discarded.
    owed_at_shutdown: Option<u64>,
    /// Held for the socket pool.
    client: Option<std::net::TcpStream>,
}

impl Harness {
    /// Bytes read that the server owes back.
    fn owed(&self) -> u64 {
        let read = self.kernel.borrow().read;
        self.owed_at_shutdown.map_or(read, |at| at.min(read))
    }

    /// One event, and the turns the read-again queue gives it after; the
    /// invariants after each. Returns false once the connection is closed.
    ///
    /// A connection may rightly ask to read again for as many turns as it
    /// has bytes to move (with a 1-byte cap and a budget of one read, one
    /// byte a turn), so what is checked is that every such turn moves
    /// something: a turn that asks again having moved nothing, twice in a
    /// row, is the spin the read-again queue must never become.
    fn event(&mut self, readable: bool, writable: bool, unproven: bool) -> bool {
        let mut hints = (readable, writable, unproven);
        let mut idle_turns = 0;
        loop {
            let before = (self.owed(), self.kernel.borrow().written);
            let consumed_before = self.kernel.borrow().read;
            let served = self.driver.serve(hints.0, hints.1, hints.2);
            let after = (self.owed(), self.kernel.borrow().written);
            match served {
                Err(e) => {
                    assert!(self.kernel.borrow().reset, "an error without a reset: {e}");
                    self.check_closed();
                    return false;
                }
                Ok(Served {
                    finished,
                    read_again,
                    moved,
                }) => {
                    self.check();
                    assert_eq!(
                        moved,
                        after != before,
                        "moved {moved}, but owed/written went {before:?} -> {after:?}"
                    );
                    if finished {
                        let k = self.kernel.borrow();
                        assert!(k.fin && k.inbound == 0, "finished before the peer's FIN");
                        assert_eq!(k.written, self.owed(), "finished owing bytes");
                        drop(k);
                        self.driver.close();
                        self.check_closed();
                        return false;
                    }
                    if !read_again {
                        return true;
                    }
                    if after == before && self.kernel.borrow().read == consumed_before {
                        idle_turns += 1;
                        assert!(
                            idle_turns < 2,
                            "the connection asks to read again without moving a byte"
                        );
                    } else {
                        idle_turns = 0;
                    }
                }
            }
            hints = (false, false, false);
        }
    }

    /// The invariants of an open connection.
    fn check(&self) {
        let pending = self.driver.pending_len();
        assert!(
            pending <= self.max_pending,
            "{pending} pending, past the cap {}",
            self.max_pending
        );
        assert_eq!(
            self.driver.stats().pending_bytes,
            pending as u64,
            "pending gauge"
        );
        let k = self.kernel.borrow();
        assert_eq!(
            self.owed(),
            k.written + pending as u64,
            "read = written back + pending"
        );
        if k.fin_sent {
            assert!(
                self.owed_at_shutdown.is_some() && pending == 0,
                "FIN before the echo"
            );
        }
    }

    fn check_closed(&self) {
        assert!(!self.driver.is_open());
        assert_eq!(
            self.driver.stats().pending_bytes,
            0,
            "the gauge after close"
        );
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // Only the socket goes back; the harness returns the client half.
        if let Some(tcp) = self.tcp.take() {
            let tcp = std::net::TcpStream::from(OwnedFd::from(tcp));
            PENDING_RETURN.with(|slot| *slot.borrow_mut() = Some(tcp));
        }
    }
}

thread_local! {
    static PENDING_RETURN: RefCell<Option<std::net::TcpStream>> = const { RefCell::new(None) };
}

fuzz_target!(|script: Script| {
    let kernel: Shared = Rc::default();
    let (tcp, client) = socket();
    let transport = Scripted {
        tcp: Some(tcp),
        kernel: Rc::clone(&kernel),
        shortcut: script.shortcut,
    };
    let max_pending = usize::from(script.max_pending).clamp(1, 16_384);
    let driver = Driver::new(
        transport,
        usize::from(script.read_buffer).clamp(1, 4096),
        max_pending,
        usize::from(script.reads_per_turn).clamp(1, 16),
    )
    .expect("register");
    let mut h = Harness {
        driver,
        kernel,
        max_pending,
        owed_at_shutdown: None,
        client: Some(client),
    };
    run(&mut h, &script.steps);
    let client = h.client.take().expect("held");
    drop(h);
    let tcp = PENDING_RETURN
        .with(|slot| slot.borrow_mut().take())
        .expect("returned on drop");
    SOCKETS.lock().unwrap().push((tcp, client));
});

/// Plays the steps, then the end: the peer takes everything and closes.
fn run(h: &mut Harness, steps: &[Step]) {
    for step in steps {
        let open = {
            let mut k = h.kernel.borrow_mut();
            let event = match *step {
                Step::Send(n) | Step::Urgent(n) => {
                    let n = u64::from(n % 8193);
                    if k.fin || n == 0 {
                        None // nothing sent after FIN
                    } else {
                        if matches!(step, Step::Urgent(_)) && k.urgent_in.is_none() {
                            k.urgent_in = Some(k.inbound);
                        }
                        k.sent += n;
                        k.inbound += n;
                        Some((true, false, matches!(step, Step::Urgent(_))))
                    }
                }
                Step::Take(n) => {
                    k.room += u64::from(n);
                    Some((false, true, false))
                }
                Step::Fin => {
                    k.fin = true;
                    Some((true, false, true))
                }
                Step::Reset => {
                    k.reset = true;
                    Some((true, true, true))
                }
                Step::Interrupt => {
                    k.interrupt = true;
                    None
                }
                Step::ReadSize(n) => {
                    k.next_read = Some(usize::from(n));
                    None
                }
                Step::Spurious {
                    readable,
                    writable,
                    unproven,
                } => Some((readable, writable, unproven)),
                Step::Shutdown => {
                    drop(k);
                    if h.owed_at_shutdown.is_none() {
                        h.owed_at_shutdown = Some(h.kernel.borrow().read);
                        h.driver.shut_down();
                    }
                    // The loop serves every connection as shutdown begins.
                    Some((true, true, false))
                }
                Step::Expire => {
                    drop(k);
                    h.driver.close();
                    h.check_closed();
                    return;
                }
            };
            event
        };
        if let Some((r, w, u)) = open {
            if !h.event(r, w, u) {
                return;
            }
        }
    }
    // The end: the peer reads everything and closes its side.
    {
        let mut k = h.kernel.borrow_mut();
        k.room = u64::MAX / 2;
        k.fin = true;
        k.interrupt = false;
    }
    for _ in 0..1000 {
        if !h.event(true, true, true) {
            let k = h.kernel.borrow();
            if !k.reset {
                assert_eq!(k.written, h.owed(), "lost at the end");
                if h.owed_at_shutdown.is_none() {
                    assert_eq!(k.written, k.sent, "not every byte came back");
                }
            }
            return;
        }
    }
    panic!("the peer took everything and closed, but the connection never finished");
}
