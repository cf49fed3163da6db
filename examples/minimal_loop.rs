//! # minimal_loop: the smallest correct readiness event loop (mio)
//!
//! One thread, one `mio::Poll`, every socket non-blocking. The loop sleeps in
//! `poll` until the OS says some socket is ready, then does on that socket
//! whatever it can without blocking. Read this before `src/`: the real server
//! is this loop plus limits, timeouts, fairness, shutdown and statistics.
//!
//! What it must get right, and does (see `docs/guide.md` for the why):
//! * mio's readiness is edge-triggered: after an event, accept and read are
//!   repeated until they return `WouldBlock`, or no new event may ever come.
//! * Events can be spurious: an event is only a hint to try; every handler
//!   copes with `WouldBlock` at once, at no cost.
//! * Partial writes: what the socket does not take now is kept in that
//!   connection's `pending` buffer, and WRITABLE interest is registered only
//!   while it is non-empty (otherwise every turn would wake up for nothing).
//!   While bytes are pending we stop reading that client: its data waits in
//!   the kernel, TCP flow control slows it down, and our memory per client
//!   stays bounded (at most one read's worth).
//! * Half-close: when a client shuts down its write side (read returns 0),
//!   everything received is still echoed, then the connection is closed.
//!   Any error closes that connection only.
//!
//! Left out on purpose (the real server has them): a limit on connections,
//! pausing accept on EMFILE, idle timeouts, fairness between a fast client and
//! the others, graceful shutdown.
//!
//! ## When it is the right choice
//!
//! Many clients, mostly idle or I/O-bound, on one thread: memory and CPU per
//! call grow with the number of *ready* sockets, not of connected ones.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example minimal_loop -- 127.0.0.1:7878
//! nc 127.0.0.1 7878
//! ```
//!
//! The first line on stdout is `listening on ADDR` (port 0 picks a free
//! port). It runs until killed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::ToSocketAddrs;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token; connections use their slab key as token.
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet taken by the socket (the peer is slow).
    pending: Vec<u8>,
    /// What we are registered for: READABLE, or WRITABLE while `pending` is
    /// non-empty.
    interest: Interest,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("minimal_loop: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let mut addrs = arg.to_socket_addrs().map_err(|e| context(&arg, e))?;
    let addr = addrs.next().ok_or(ErrorKind::AddrNotAvailable)?;
    let mut listener = TcpListener::bind(addr).map_err(|e| context("bind", e))?;
    println!("listening on {}", listener.local_addr()?);

    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024]; // one read buffer for all clients

    loop {
        // Sleep until something is ready (no timeout: nothing to time out).
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue; // a signal, not an error
            }
            return Err(context("poll", e));
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                // Accept until WouldBlock: one event may stand for many clients.
                loop {
                    match listener.accept() {
                        Ok((mut stream, _peer)) => {
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            match poll
                                .registry()
                                .register(&mut stream, token, Interest::READABLE)
                            {
                                Ok(()) => {
                                    let (pending, interest) = (Vec::new(), Interest::READABLE);
                                    entry.insert(Conn {
                                        stream,
                                        pending,
                                        interest,
                                    });
                                }
                                Err(e) => eprintln!("minimal_loop: register: {e}"), // drop it
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                        Err(e) => {
                            // E.g. EMFILE. We stop here; the next connection
                            // attempt raises a new event. (src/ pauses and
                            // retries on a timer instead.)
                            eprintln!("minimal_loop: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }

            // A connection. The token may be stale (closed earlier in this
            // same batch of events): then there is nothing to do.
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut close = serve(conn, &mut buf).unwrap_or_else(|e| {
                eprintln!("minimal_loop: connection {key}: {e}");
                true
            });
            // WRITABLE only while bytes are pending, READABLE otherwise.
            let wanted = if conn.pending.is_empty() {
                Interest::READABLE
            } else {
                Interest::WRITABLE
            };
            if !close && wanted != conn.interest {
                conn.interest = wanted;
                if let Err(e) = poll
                    .registry()
                    .reregister(&mut conn.stream, event.token(), wanted)
                {
                    eprintln!("minimal_loop: reregister: {e}");
                    close = true;
                }
            }
            if close {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
                // Dropping the stream closes the socket (FIN to the client).
            }
        }
    }
}

/// Does all the work that is possible right now without blocking. Returns
/// `Ok(true)` when the connection is finished (client half-closed and all
/// echoed). Called for every event, readable or writable or spurious alike:
/// it simply tries both directions.
fn serve(conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    // 1. Flush what the client could not take before.
    let sent = write_some(&mut conn.stream, &conn.pending)?;
    conn.pending.drain(..sent);

    // 2. Read until WouldBlock, echoing each chunk at once, but only while
    //    nothing is pending (backpressure: see the module doc).
    while conn.pending.is_empty() {
        match conn.stream.read(buf) {
            Ok(0) => return Ok(true), // half-close, and everything was echoed
            Ok(n) => {
                let sent = write_some(&mut conn.stream, &buf[..n])?;
                conn.pending.extend_from_slice(&buf[sent..n]); // keep the rest
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(context("read", e)),
        }
    }
    Ok(false)
}

/// Writes as much of `data` as the socket takes now; returns how much.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(context("write", e)),
        }
    }
    Ok(sent)
}

/// Prefix an error with the name of the call that returned it.
fn context(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}
