//! # tls_loop: `minimal_loop` with TLS (mio + rustls)
//!
//! The same one-thread loop as `minimal_loop`, every connection's bytes
//! passing through a `rustls::ServerConnection`. The loop is unchanged; what
//! changes is what a read or a write proves (see "Readiness under TLS" in
//! `docs/guide.md`):
//!
//! * A socket read brings *records*, not plaintext: `read_tls` then
//!   `process_new_packets` may yield no plaintext (a handshake message, a
//!   partial record) or several records' worth. A short read of plaintext
//!   proves nothing either way; only `WouldBlock` from the socket, with
//!   rustls's plaintext taken to the last byte, means "wait for an event".
//! * A read may need a write: handshake replies, session tickets and key
//!   updates are queued by rustls while processing what was *read*. After
//!   every read we flush (`write_tls`), and WRITABLE interest is on whenever
//!   rustls still holds records (`wants_write`).
//! * Decrypted bytes can sit in rustls with no event coming: when we stop
//!   reading for back-pressure, the plaintext rustls already holds raises no
//!   new readiness. So a connection that stopped that way is served again
//!   when its output drains — here on its WRITABLE event, which always
//!   re-reads rustls first (the server's read-again queue does the same for
//!   a read budget cut short).
//! * The end is in-band: the peer's `close_notify` (or a bare FIN) ends
//!   input; after the last echo we send our `close_notify`, flush it, then
//!   close (FIN).
//!
//! Memory per client stays bounded: rustls's buffers are limited
//! (`set_buffer_limit`), and while the echo it would not take is pending we
//! read no more.
//!
//! ## Run it
//!
//! ```text
//! cargo run --example tls_loop -- 127.0.0.1:7443 cert.pem key.pem
//! cargo run --example tls_loop -- 127.0.0.1:7443      # a self-signed cert
//! openssl s_client -connect 127.0.0.1:7443 -quiet
//! ```
//!
//! The first line on stdout is `listening on ADDR` (port 0 picks a free
//! port); without certificate files a self-signed one for `localhost` is
//! made, and the second line names the PEM file it was written to. It runs
//! until killed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use slab::Slab;

/// The listener's token; connections use their slab key as token.
const LISTENER: Token = Token(usize::MAX);

/// Most bytes of records rustls may hold to send for one client.
const TLS_BUFFER: usize = 64 * 1024;

struct Conn {
    tcp: TcpStream,
    tls: ServerConnection,
    /// Plaintext read but not yet taken by rustls (it holds `TLS_BUFFER`).
    pending: Vec<u8>,
    /// The peer ended its side; we owe it the echo, then `close_notify`.
    read_closed: bool,
    /// What we are registered for.
    interest: Interest,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("tls_loop: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7443".into());
    let config = server_config(args.get(1), args.get(2))?;
    let mut addrs = arg.to_socket_addrs().map_err(|e| context(&arg, e))?;
    let addr = addrs.next().ok_or(ErrorKind::AddrNotAvailable)?;
    let mut listener = TcpListener::bind(addr).map_err(|e| context("bind", e))?;
    println!("listening on {}", listener.local_addr()?);

    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 16 * 1024];

    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(context("poll", e));
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&listener, &poll, &mut conns, &config);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue; // closed earlier in this batch
            };
            let mut close = serve(conn, &mut buf).unwrap_or_else(|e| {
                eprintln!("tls_loop: connection {key}: {e}");
                true
            });
            // WRITABLE while rustls holds records or plaintext is pending.
            let wanted = if conn.tls.wants_write() || !conn.pending.is_empty() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if !close && wanted != conn.interest {
                conn.interest = wanted;
                let registry = poll.registry();
                if let Err(e) = registry.reregister(&mut conn.tcp, event.token(), wanted) {
                    eprintln!("tls_loop: reregister: {e}");
                    close = true;
                }
            }
            if close {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.tcp);
            }
        }
    }
}

/// Accepts until `WouldBlock`, giving each client its rustls state.
fn accept(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>, config: &Arc<ServerConfig>) {
    loop {
        let (mut tcp, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                eprintln!("tls_loop: accept: {e}");
                return;
            }
        };
        let Ok(mut tls) = ServerConnection::new(Arc::clone(config)) else {
            continue;
        };
        tls.set_buffer_limit(Some(TLS_BUFFER));
        let entry = conns.vacant_entry();
        let token = Token(entry.key());
        match poll
            .registry()
            .register(&mut tcp, token, Interest::READABLE)
        {
            Ok(()) => {
                entry.insert(Conn {
                    tcp,
                    tls,
                    pending: Vec::new(),
                    read_closed: false,
                    interest: Interest::READABLE,
                });
            }
            Err(e) => eprintln!("tls_loop: register: {e}"),
        }
    }
}

/// Does everything possible now; `Ok(true)` when the connection is done
/// (the peer ended, everything echoed, our `close_notify` out).
fn serve(conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    // 1. Output first: records rustls holds, then pending plaintext.
    flush(conn)?;
    let taken = conn.tls.writer().write(&conn.pending)?;
    conn.pending.drain(..taken);
    flush(conn)?;

    // 2. Read while nothing is pending: rustls's plaintext first — it may
    //    hold bytes no event will announce — and records from the socket
    //    only when it has none. Stop at WouldBlock from the socket.
    while conn.pending.is_empty() && !conn.read_closed {
        match conn.tls.reader().read(buf) {
            Ok(0) => conn.read_closed = true, // close_notify
            Ok(n) => {
                let taken = conn.tls.writer().write(&buf[..n])?;
                conn.pending.extend_from_slice(&buf[taken..n]);
                flush(conn)?;
                continue;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {} // no plaintext
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => conn.read_closed = true, // FIN
            Err(e) => return Err(e),
        }
        if conn.read_closed {
            break;
        }
        match conn.tls.read_tls(&mut conn.tcp) {
            Ok(0) if conn.tls.is_handshaking() => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                let processed = conn.tls.process_new_packets();
                flush(conn)?; // the handshake's answer, or the alert
                processed.map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(context("read", e)),
        }
    }

    // 3. The peer is done and so is the echo: close_notify, then FIN (by
    //    closing) once rustls has nothing left to send.
    if conn.read_closed && conn.pending.is_empty() {
        conn.tls.send_close_notify();
        flush(conn)?;
        return Ok(!conn.tls.wants_write());
    }
    Ok(false)
}

/// Writes the records rustls holds until they are out or the socket is full.
fn flush(conn: &mut Conn) -> io::Result<()> {
    while conn.tls.wants_write() {
        match conn.tls.write_tls(&mut conn.tcp) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(context("write", e)),
        }
    }
    Ok(())
}

/// TLS 1.2 and 1.3 with rustls's defaults (ring), for the certificate and
/// key in these PEM files, or a self-signed certificate for `localhost`.
fn server_config(cert: Option<&String>, key: Option<&String>) -> io::Result<Arc<ServerConfig>> {
    let invalid = |e: String| io::Error::new(ErrorKind::InvalidInput, e);
    let (chain, key) = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| invalid(format!("{cert}: {e}")))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("{key}: {e}")))?;
            (chain, key)
        }
        _ => {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
                .map_err(|e| invalid(e.to_string()))?;
            let path = std::env::temp_dir().join(format!("tls_loop-{}.pem", std::process::id()));
            std::fs::write(&path, made.cert.pem())?;
            println!("self-signed certificate in {}", path.display());
            let key = PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
            (vec![made.cert.der().clone()], key)
        }
    };
    #[allow(deprecated)] // ring: see Cargo.toml for why this provider
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Prefix an error with the name of the call that returned it.
fn context(call: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{call}: {e}"))
}
