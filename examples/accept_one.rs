//! # accept_one: the basic socket program, one client, blocking calls
//!
//! This is the "accept a connection" recipe from the Winsock documentation,
//! written with Rust's blocking `std::net` sockets: create a socket, bind it,
//! listen, accept ONE client, echo everything it sends until it shuts down its
//! side, shut down our side, close. Every step is commented with the Winsock
//! call it corresponds to (the BSD/POSIX call has the same name, except
//! `closesocket`, which is `close` there) and the errors it can return.
//!
//! ## When it is the right choice
//!
//! When there is exactly one peer at a time: a test fixture, a debugging
//! stub, a one-shot transfer. Nothing else can be served while this client is
//! connected, because every call blocks the only thread. The other examples
//! (`thread_per_connection`, `fork_per_connection`, `minimal_loop`) and the
//! echoloop server itself show the ways to serve many clients; `docs/guide.md`
//! compares them.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example accept_one -- 127.0.0.1:7878
//! nc 127.0.0.1 7878          # in another terminal; type lines, then Ctrl-D
//! ```
//!
//! The first line on stdout is `listening on ADDR` (give port 0 to let the
//! system choose a free port; the line tells which one it chose). The program
//! exits 0 after the one client has finished.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};

fn main() {
    if let Err(e) = run() {
        eprintln!("accept_one: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".to_string());

    // Step 0 -- WSAStartup. A Winsock program must call WSAStartup before any
    // other socket call. Rust's std does it for us, once, lazily, on the
    // first socket operation, asking for Winsock 2.2 (it panics in the
    // unlikely case that fails: WSASYSNOTREADY, WSAVERNOTSUPPORTED,
    // WSAEPROCLIM). On Unix there is no such step.

    // Steps 1 to 3 -- getaddrinfo + socket + bind + listen, all inside
    // `TcpListener::bind`:
    // * getaddrinfo: `addr` may be a host name ("localhost:7878"); it is
    //   resolved first and each resulting address is tried in turn. Errors: the
    //   name does not resolve (WSAHOST_NOT_FOUND / EAI_NONAME) or the string
    //   is not `host:port` (InvalidInput).
    // * socket(AF_INET or AF_INET6, SOCK_STREAM, IPPROTO_TCP). Errors: out of
    //   descriptors or buffers (WSAEMFILE / EMFILE, WSAENOBUFS / ENOBUFS), the
    //   address family is not supported (WSAEAFNOSUPPORT, e.g. IPv6 disabled).
    //   std creates the socket non-inheritable (no handle/fd leaks to child
    //   processes).
    // * bind(addr). Errors: the port is in use (WSAEADDRINUSE / EADDRINUSE,
    //   ErrorKind::AddrInUse), the address is not one of this host's
    //   (WSAEADDRNOTAVAIL / EADDRNOTAVAIL), a port below 1024 without
    //   privilege on Unix (EACCES, ErrorKind::PermissionDenied). On Unix std
    //   sets SO_REUSEADDR first, so a restarted server can bind again while old
    //   connections sit in TIME_WAIT; on Windows it does not, because there
    //   SO_REUSEADDR would let another process steal the port.
    // * listen(backlog). std passes a backlog of 128 (the queue of
    //   connections the kernel has completed but we have not accepted yet;
    //   the kernel may cap it, e.g. at net.core.somaxconn on Linux). Errors:
    //   WSAEADDRINUSE (Windows can report the port conflict here), WSAENOBUFS.
    let listener = TcpListener::bind(&addr).map_err(|e| context(&format!("bind {addr}"), e))?;

    // Port 0 means "any free port": report the one we got, so a test or a
    // user can connect to it. Rust's stdout is line-buffered, so this line is
    // written out at once even when stdout is a pipe.
    println!("listening on {}", listener.local_addr()?);

    // Step 4 -- accept. Blocks until a client has connected (the kernel does
    // the TCP handshake on its own; accept only takes the finished connection
    // from the backlog) and returns a NEW socket for that client; the listening
    // socket stays as it was. Errors: the client reset before we accepted it
    // (WSAECONNRESET on Windows, ECONNABORTED on Unix): harmless, a real
    // server just accepts again; out of descriptors (WSAEMFILE / EMFILE,
    // ENFILE), WSAENOBUFS. On Unix, std retries it when a signal interrupts
    // it (EINTR).
    let (mut stream, peer) = listener.accept().map_err(|e| context("accept", e))?;
    eprintln!("accept_one: client {peer} connected");

    // closesocket(listening socket). The recipe serves a single client, so
    // it closes the listening socket now: from here on, new connection
    // attempts are refused (RST) instead of waiting in a backlog nobody reads.
    // In Rust, closing a socket is dropping it.
    drop(listener);

    // Step 5 -- the recv/send loop: echo until the client shuts down its side.
    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed: u64 = 0;
    loop {
        // recv: blocks until at least one byte has arrived, then returns what
        // is there (up to buf.len()); a message the client sent in one send
        // may arrive in several pieces, and several sends in one piece.
        // Ok(0) means the client has shut down its sending side (FIN):
        // "orderly shutdown", no more data will come. Errors: the client
        // reset the connection (WSAECONNRESET / ECONNRESET), the connection
        // was aborted or timed out (WSAECONNABORTED, WSAETIMEDOUT), a signal
        // arrived (EINTR on Unix: just call it again).
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(context("recv", e)),
        };

        // send: a blocking send may accept fewer bytes than asked (a
        // partial write); `write_all` calls it again with the rest until
        // everything is in the kernel's send buffer. It blocks while that
        // buffer is full, i.e. while the client is not reading: a client that
        // sends without reading stalls us here, and then stalls itself. The
        // threaded and event-loop examples do not share that problem across
        // clients. Errors: WSAECONNRESET / ECONNRESET, WSAECONNABORTED,
        // EPIPE on Unix when the peer has gone (Rust ignores SIGPIPE, so
        // this is an error and not a killed process).
        stream
            .write_all(&buf[..n])
            .map_err(|e| context("send", e))?;
        echoed += n as u64;
    }

    // Step 6 -- shutdown(SD_SEND) / shutdown(SHUT_WR): tell the client we
    // will send nothing more (a FIN after the last echoed byte). Everything
    // we wrote before is still delivered. Errors: WSAENOTCONN / ENOTCONN if
    // the connection is already gone (the client reset it meanwhile).
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| context("shutdown", e))?;
    eprintln!("accept_one: client {peer} done, {echoed} bytes echoed");

    // Step 7 -- closesocket / close: dropping the stream releases the
    // socket. Drop ignores close errors (there is nothing useful to do about
    // them for a socket).
    drop(stream);

    // Step 8 -- WSACleanup: nothing to write, and std (since 2025,
    // rust-lang/rust#141809; older toolchains called it at exit) does not
    // call it either: the OS releases every socket and all of Winsock's state
    // when the process exits, which is faster than tearing it down by hand.
    // (A library that unloads Winsock while its process goes on would need
    // it.) On Unix there is no such step.
    Ok(())
}

/// Prefix an error with the name of the call that returned it, keeping its
/// kind: "accept: Too many open files (os error 24)".
fn context(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}
