//! # thread_per_connection: one blocking thread per client, with a bound
//!
//! The "pass each accepted socket to a worker thread" model: the main thread
//! only accepts; every client gets its own thread that runs the same blocking
//! recv/send loop as `accept_one`. The code stays as simple as the
//! one-client program, and a slow client only blocks its own thread.
//!
//! ## The bound, and what happens when it is reached
//!
//! Each thread costs a kernel task, a stack (reserved address space, of which
//! only the touched pages use memory: here 64 KiB asked for, plus the 16 KiB
//! buffer) and scheduler work, so an unbounded server can be pushed over by a
//! connection flood. This one runs at most `MAX_THREADS` client threads
//! (second argument, default 64), counted by a small semaphore (a
//! `Mutex<usize>` and a `Condvar`).
//!
//! At the bound, the accept loop WAITS: it stops calling `accept` until a
//! client thread finishes. New clients are not refused; their connections
//! are completed by the kernel and queue in the listen backlog, and they are
//! served, in order, as threads free up. When the backlog itself is full, the
//! kernel drops (Linux) or resets (Windows) further connection attempts.
//! We chose waiting because it is fair and gentle under short bursts: nobody
//! gets an error for arriving a little late. Its cost: a client waiting in
//! the backlog sees no error, only silence, for as long as MAX_THREADS other
//! clients stay connected, and idle clients can hold every slot forever. The
//! alternative, refusing (accept and close at once), answers promptly but
//! turns away clients during a burst; the echoloop server refuses at its
//! `--max-connections` limit, because a loop holds thousands of idle clients
//! cheaply and a refusal at that size is a real overload.
//!
//! ## When it is the right choice
//!
//! Tens to a few thousand concurrent clients, blocking code or libraries
//! you cannot make non-blocking, per-client work that is CPU-heavy (threads
//! use every core; a single loop uses one). Past that, memory and context
//! switches grow with the number of clients, not with the traffic: see the
//! readiness loop (`minimal_loop`, `src/`) and `docs/guide.md`.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example thread_per_connection -- 127.0.0.1:7878 64
//! nc 127.0.0.1 7878          # as many at once as you like
//! ```
//!
//! The first line on stdout is `listening on ADDR` (port 0 picks a free
//! port). It runs until killed (Ctrl-C).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

const DEFAULT_MAX_THREADS: usize = 64;

fn main() {
    if let Err(e) = run() {
        eprintln!("thread_per_connection: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7878".to_string());
    let max_threads = match args.next() {
        None => DEFAULT_MAX_THREADS,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                let msg = format!("MAX_THREADS must be a positive integer, got {s:?}");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
            }
        },
    };

    // socket + bind + listen, as in accept_one.
    let listener = TcpListener::bind(&addr).map_err(|e| context(&format!("bind {addr}"), e))?;
    println!("listening on {}", listener.local_addr()?);

    let slots = Arc::new(Slots::new(max_threads));
    loop {
        // Wait for a free slot BEFORE accepting: at the bound, clients queue
        // in the kernel's backlog rather than in our memory.
        let permit = slots.acquire();

        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            // The client gave up between the handshake and our accept:
            // nothing to serve, accept the next one.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
            Err(e) => {
                // Typically out of descriptors (EMFILE) or buffers. The
                // pending connection stays in the backlog, so accepting again
                // at once would fail again at once: pause briefly instead of
                // spinning the CPU. (The permit is released when dropped.)
                eprintln!("thread_per_connection: accept: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };

        // The thread owns the stream and the permit; the permit is given
        // back when the thread ends, however it ends (even by a panic).
        let spawned = thread::Builder::new()
            .name(format!("client {peer}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _permit = permit;
                match serve(stream) {
                    Ok(n) => eprintln!("thread_per_connection: {peer}: done, {n} bytes echoed"),
                    Err(e) => eprintln!("thread_per_connection: {peer}: {e}"),
                }
            });
        if let Err(e) = spawned {
            // The OS refused a new thread (EAGAIN: a limit on tasks or
            // memory). The closure, with the stream and the permit, has been
            // dropped: the client is disconnected and the slot is free again.
            eprintln!("thread_per_connection: spawn: {e}");
        }
    }
}

/// The blocking echo loop of `accept_one`: recv, send it all back, until the
/// client shuts down its side; then shut down ours. Returns the bytes echoed.
fn serve(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut echoed = 0u64;
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
        echoed += n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| context("shutdown", e))?;
    Ok(echoed)
    // closesocket: `stream` is dropped here.
}

/// A counting semaphore: at most `max` permits out at once.
struct Slots {
    in_use: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// One slot, given back on drop.
struct Permit(Arc<Slots>);

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            in_use: Mutex::new(0),
            freed: Condvar::new(),
            max,
        }
    }

    /// Blocks while all slots are taken. (A poisoned lock only means some
    /// thread panicked while holding it; the counter is still right.)
    fn acquire(self: &Arc<Self>) -> Permit {
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        while *in_use >= self.max {
            in_use = self
                .freed
                .wait(in_use)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *in_use += 1;
        Permit(Arc::clone(self))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut in_use = self.0.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        *in_use -= 1;
        self.0.freed.notify_one();
    }
}

/// Prefix an error with the name of the call that returned it.
fn context(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}
