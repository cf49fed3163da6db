//! TLS on the loop (the `tls` feature): the server's certificate and key,
//! and `TlsStream`, the [`Transport`] that carries a connection's
//! plaintext through rustls.
//!
//! The loop does not change for TLS; the transport answers the seam's
//! questions differently (the guide's "Readiness under TLS" says why):
//!
//! - *A short read of plaintext proves nothing* ([`Transport::read_proves_drained`]
//!   is `false`): rustls may hold decrypted bytes, or whole records, that no
//!   new event will announce. The connection reads on until `WouldBlock`, and
//!   a read budget cut short puts it on the loop's read-again queue.
//! - *A read may need a write*: the handshake, session tickets and key
//!   updates are answered from inside `read`, and whatever the socket does
//!   not take stays in rustls and shows as [`Transport::wants_write`], which
//!   keeps WRITABLE interest on.
//! - *The end of the stream is in-band*: the peer's `close_notify` (or a
//!   bare FIN) ends input; once the echo is flushed the connection sends
//!   `close_notify`, then FIN.
//!
//! # What a TLS connection holds
//!
//! Besides its pending echo (at most `--max-pending`), rustls holds at most
//! [`BUFFERED_MAX`]: records to send (its buffer limit, [`SEND_LIMIT`]),
//! decrypted bytes not yet read (16 KiB, rustls's own limit), and the part
//! of a record still arriving (one record). Encrypting stops at
//! [`SEND_LIMIT`] until the socket takes what is there, and new records are
//! read from the socket only once every decrypted byte was taken, so neither
//! grows with what the peer does.
//!
//! A handshake has its own deadline (`--tls-handshake-timeout`); failures
//! are counted by reason (`tls_handshake_failures_total{reason=…}`).

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, RootCertStore, ServerConfig,
    ServerConnection,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use rustls;

use crate::stats::Counter;
use crate::transport::Transport;

/// Most bytes of records waiting to be sent that rustls may hold for one
/// connection: encrypting stops there until the socket takes them. Four
/// full records, so one `writev` carries a 64 KiB echo.
pub const SEND_LIMIT: usize = 64 * 1024;

/// Most bytes rustls holds for one connection besides its pending echo:
/// [`SEND_LIMIT`] of records to send (plus one record's overhead), 16 KiB
/// decrypted and unread, and one record arriving (16 KiB + 2 KiB). The
/// documented constant of the bound: a TLS connection holds at most
/// `--max-pending` + this.
pub const BUFFERED_MAX: usize = SEND_LIMIT + 256 + 16 * 1024 + 18 * 1024;

/// Sessions the server remembers for TLS 1.2 clients that resume by session
/// ID (TLS 1.3 and ticket-capable 1.2 clients resume by ticket, which holds
/// nothing here): bounded, the oldest forgotten first. About 100 bytes each.
pub const SESSION_CACHE: usize = 4096;

/// Why a handshake failed: each one a series of
/// `tls_handshake_failures_total{reason=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not finished within `--tls-handshake-timeout`.
    Timeout,
    /// The first bytes were not TLS (plaintext on the TLS port), or a record
    /// was malformed.
    NotTls,
    /// No protocol version, cipher suite or key-exchange group in common.
    Incompatible,
    /// Mutual TLS: the client sent no certificate, or one not signed by
    /// `--tls-client-ca`.
    ClientCertificate,
    /// The client refused us with an alert (typically: it does not trust
    /// our certificate).
    PeerAlert,
    /// The client closed or reset the connection mid-handshake.
    Closed,
    /// Anything else rustls refused.
    Other,
}

impl Failure {
    /// What rustls's error says about the handshake.
    fn of(e: &rustls::Error) -> Failure {
        match e {
            rustls::Error::InvalidMessage(_) => Failure::NotTls,
            rustls::Error::PeerIncompatible(_) => Failure::Incompatible,
            rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
                Failure::ClientCertificate
            }
            rustls::Error::AlertReceived(_) => Failure::PeerAlert,
            _ => Failure::Other,
        }
    }

    /// The counter it adds to.
    pub(crate) fn counter(self) -> Counter {
        match self {
            Failure::Timeout => Counter::TlsFailedTimeout,
            Failure::NotTls => Counter::TlsFailedNotTls,
            Failure::Incompatible => Counter::TlsFailedIncompatible,
            Failure::ClientCertificate => Counter::TlsFailedClientCertificate,
            Failure::PeerAlert => Counter::TlsFailedPeerAlert,
            Failure::Closed => Counter::TlsFailedClosed,
            Failure::Other => Counter::TlsFailedOther,
        }
    }
}

/// One TLS connection, server or client side: the socket and rustls's
/// state for it, a [`Transport`] (the module docs say how it answers).
#[derive(Debug)]
pub struct TlsStream {
    /// The socket the records travel on.
    tcp: TcpStream,
    /// rustls's state: handshake, keys, and the buffers of
    /// [`BUFFERED_MAX`].
    tls: Connection,
    /// Our `close_notify` is queued: never twice.
    close_notify_sent: bool,
    /// FIN is owed once the records rustls holds (`close_notify` last) are
    /// out: FIN before them would cut them off.
    fin_owed: bool,
    /// The finished handshake was reported ([`TlsStream::take_established`]).
    counted: bool,
    /// Why the handshake failed, once a TLS error (or the deadline) ended it.
    failure: Option<Failure>,
}

impl TlsStream {
    /// A server-side TLS connection over an accepted socket.
    pub(crate) fn new(tcp: TcpStream, config: &Arc<ServerConfig>) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(TlsStream::over(tcp, tls.into()))
    }

    /// A client-side TLS connection to `name` over a socket that is
    /// connecting or connected: its first flush sends the ClientHello (after
    /// anything written on the socket itself, a PROXY header say).
    pub fn client(
        tcp: TcpStream,
        config: &Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let tls = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        Ok(TlsStream::over(tcp, tls.into()))
    }

    /// `tls` over `tcp`, its send buffer limited to [`SEND_LIMIT`].
    fn over(tcp: TcpStream, mut tls: Connection) -> TlsStream {
        tls.set_buffer_limit(Some(SEND_LIMIT));
        TlsStream {
            tcp,
            tls,
            close_notify_sent: false,
            fin_owed: false,
            counted: false,
            failure: None,
        }
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Once, when the handshake has finished: whether it resumed a session.
    pub fn take_established(&mut self) -> Option<bool> {
        if self.counted || self.tls.is_handshaking() {
            return None;
        }
        self.counted = true;
        Some(self.tls.handshake_kind() == Some(HandshakeKind::Resumed))
    }

    /// Why the handshake failed, if it did not finish: the TLS error seen,
    /// or else the peer left ([`Failure::Closed`]). `None` once established.
    pub(crate) fn handshake_failure(&self) -> Option<Failure> {
        (self.tls.is_handshaking()).then(|| self.failure.unwrap_or(Failure::Closed))
    }

    /// The deadline passed with the handshake unfinished.
    pub(crate) fn timed_out(&mut self) {
        self.failure = Some(Failure::Timeout);
    }

    /// Writes the records rustls holds until they are out or the socket is
    /// full (`WouldBlock` is not an error here: `wants_write` stays true).
    fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads records from the socket and processes them: the handshake is
    /// answered at once (as far as the socket takes it). `Ok(())` when
    /// something was read; `WouldBlock` when the socket had nothing.
    fn receive_records(&mut self) -> io::Result<()> {
        let handshaking = self.tls.is_handshaking();
        let n = self.tls.read_tls(&mut self.tcp)?;
        if n == 0 && handshaking {
            self.failure.get_or_insert(Failure::Closed);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed during the TLS handshake",
            ));
        }
        if let Err(e) = self.tls.process_new_packets() {
            if handshaking {
                self.failure = Some(Failure::of(&e));
            }
            // The alert rustls queued tells the peer why; best effort.
            let _ = self.send_records();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tls: {e}"),
            ));
        }
        self.send_records()
    }
}

impl Transport for TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Decrypted bytes first; only when rustls holds none, records from the
    /// socket. `Ok(0)` at the peer's `close_notify`, or at a FIN after the
    /// handshake (both end input); `WouldBlock` only when rustls holds no
    /// plaintext and the socket is drained — the one proof of "drained".
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // FIN without close_notify: for an echo, the end of input.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            self.receive_records()?;
        }
    }

    /// Hands plaintext to rustls, which encrypts it into records, and
    /// writes them; stops when rustls holds [`SEND_LIMIT`] the socket did
    /// not take. What rustls took counts as written: it is in the bound.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            self.send_records()?;
            if self.tls.wants_write() || taken == data.len() {
                return Ok(taken);
            }
            let n = self.tls.writer().write(&data[taken..])?;
            if n == 0 {
                return Ok(taken);
            }
            taken += n;
        }
    }

    /// Sends the records rustls holds; then the FIN owed after them.
    fn flush(&mut self) -> io::Result<()> {
        self.send_records()?;
        if self.fin_owed && !self.tls.wants_write() {
            self.fin_owed = false;
            self.tcp.shutdown(std::net::Shutdown::Write)?;
        }
        Ok(())
    }

    fn wants_write(&self) -> bool {
        self.tls.wants_write() || self.fin_owed
    }

    /// Never: rustls may hold plaintext a short read left behind.
    fn read_proves_drained(&self, _n: usize, _asked: usize, _unproven: bool) -> bool {
        false
    }

    fn end_output(&mut self) -> io::Result<()> {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.tls.send_close_notify();
        }
        self.send_records()
    }

    fn close_write(&mut self) -> io::Result<()> {
        self.end_output()?;
        self.fin_owed = true;
        self.flush()
    }
}

/// A connection's transport: plain TCP or TLS (the server's by listener,
/// the stress client's by `--tls`). An enum, not `dyn`: one match per call,
/// and a plain connection stays the size of its socket plus a tag (the TLS
/// state is boxed).
#[derive(Debug)]
pub enum Stream {
    /// A client of a `--listen` address.
    Plain(TcpStream),
    /// A client of a `--tls-listen` address.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TLS side, if this is a TLS connection.
    pub fn tls_mut(&mut self) -> Option<&mut TlsStream> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(tls),
        }
    }

    /// The TLS side, if this is a TLS connection.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(tls),
        }
    }
}

/// Each call goes to the plain socket or the TLS stream (`ref` for `&self`
/// methods, `mut` for `&mut self` ones).
macro_rules! each {
    (ref $self:expr, $s:ident => $call:expr) => {
        match $self {
            Stream::Plain($s) => $call,
            Stream::Tls(tls) => {
                let $s = tls.as_ref();
                $call
            }
        }
    };
    (mut $self:expr, $s:ident => $call:expr) => {
        match $self {
            Stream::Plain($s) => $call,
            Stream::Tls(tls) => {
                let $s = tls.as_mut();
                $call
            }
        }
    };
}

impl Transport for Stream {
    fn socket(&self) -> &TcpStream {
        each!(ref self, s => Transport::socket(s))
    }
    fn socket_mut(&mut self) -> &mut TcpStream {
        each!(mut self, s => Transport::socket_mut(s))
    }
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(mut self, s => Transport::read(s, buf))
    }
    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        each!(mut self, s => Transport::write(s, data))
    }
    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        each!(mut self, s => Transport::flush(s))
    }
    #[inline]
    fn wants_write(&self) -> bool {
        each!(ref self, s => Transport::wants_write(s))
    }
    #[inline]
    fn read_proves_drained(&self, n: usize, asked: usize, unproven: bool) -> bool {
        each!(ref self, s => Transport::read_proves_drained(s, n, asked, unproven))
    }
    fn end_output(&mut self) -> io::Result<()> {
        each!(mut self, s => Transport::end_output(s))
    }
    fn close_write(&mut self) -> io::Result<()> {
        each!(mut self, s => Transport::close_write(s))
    }
}

/// The certificate chain and key of a TLS server, with what to check of
/// clients: everything `--tls-cert`, `--tls-key` and `--tls-client-ca`
/// give, parsed and checked before any socket is bound.
#[derive(Debug)]
pub struct Identity {
    /// The chain, end-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a PEM certificate chain and a PEM private key. The error is
    /// one line naming the file.
    pub fn from_pem_files(cert: &str, key: &str) -> Result<Identity, String> {
        let chain = certificates(cert, "--tls-cert")?;
        let key_text = read(key, "--tls-key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| {
            format!("--tls-key {key}: no private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")
        })?;
        Ok(Identity { chain, key })
    }

    /// A self-signed certificate for `names` (host names or IP addresses),
    /// made now with a fresh ECDSA P-256 key.
    pub fn self_signed(names: &[String]) -> Result<Identity, String> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| format!("--tls-self-signed: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
        Ok(Identity {
            chain: vec![made.cert.der().clone()],
            key,
        })
    }

    /// The SHA-256 fingerprint of the end-entity certificate
    /// ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        self.chain.first().map_or_else(String::new, fingerprint)
    }
}

/// The SHA-256 fingerprint of a certificate, as `openssl x509 -fingerprint
/// -sha256` prints it (`AB:CD:…`).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// The names a self-signed certificate should carry for these listen
/// addresses: each address, `localhost`, and the loopback addresses when
/// an address is unspecified (`0.0.0.0`, `[::]`), where clients on this
/// host come by loopback.
pub fn listen_names(addrs: &[SocketAddr]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    for addr in addrs {
        let ip = addr.ip();
        let ips = if ip.is_unspecified() {
            vec!["127.0.0.1".to_string(), "::1".to_string()]
        } else {
            vec![ip.to_string()]
        };
        for ip in ips {
            if !names.contains(&ip) {
                names.push(ip);
            }
        }
    }
    names
}

/// The rustls server configuration every loop shares: TLS 1.2 and 1.3 with
/// rustls's safe defaults, on the ring provider; resumption by tickets
/// (TLS 1.3 and 1.2) and a session cache of [`SESSION_CACHE`]; with
/// `client_ca` (a PEM file), a client certificate signed by it is required.
/// Fails, in one line, on a key that does not match the certificate.
pub fn server_config(
    identity: Identity,
    client_ca: Option<&str>,
) -> Result<Arc<ServerConfig>, String> {
    // ring's provider is deprecated as of rustls 0.23.48 for lacking the
    // post-quantum key exchange (X25519MLKEM768) that aws-lc-rs has: chosen
    // anyway for its build (Cargo.toml says why); clients get X25519.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "--tls-client-ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-client-ca {path}: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca {path}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "--tls-key does not match the certificate of --tls-cert".to_string()
            }
            e => format!("--tls-cert/--tls-key: {e}"),
        })?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("tls: {e}"))?;
    Ok(Arc::new(config))
}

/// The certificates of PEM file `path`, errors naming `flag`.
fn certificates(path: &str, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{flag} {path}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// The bytes of `path`, or an error naming it and the flag that gave it.
fn read(path: &str, flag: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{flag} {path}: {e}"))
}
