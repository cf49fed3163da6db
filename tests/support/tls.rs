//! TLS for the tests: certificates made here (a CA, a server certificate
//! and a client certificate signed by it, with rcgen), written to files
//! where a program needs them; the server configuration the library builds
//! from them; a rustls client; Python's `ssl` client (`tls_client.py`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use echoloop::tls::rustls::pki_types::pem::PemObject;
use echoloop::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use echoloop::tls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use echoloop::tls::Identity;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A test CA and what it signed, written to a directory of its own.
#[derive(Debug)]
pub struct Pki {
    /// The CA's certificate (and key, to sign more).
    pub ca: Pem,
    /// The server's, for `localhost` and `127.0.0.1`.
    pub server: Pem,
    /// A client's, for mutual TLS.
    pub client: Pem,
    /// Where the files are: `ca.pem`, `server.pem`, `server.key`, …
    pub dir: PathBuf,
}

impl Pki {
    /// A fresh CA, server and client certificate, in a new directory named
    /// after `test`.
    pub fn new(test: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (params.distinguished_name).push(DnType::CommonName, "echoloop test CA");
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let sign = |names: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let params = CertificateParams::new(names).unwrap();
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        };
        let server = sign(&["localhost", "127.0.0.1"]);
        let client = sign(&["echoloop test client"]);
        let ca = Pem {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let dir = std::env::temp_dir().join(format!("echoloop-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            ca,
            server,
            client,
            dir,
        };
        for (name, text) in [
            ("ca.pem", &pki.ca.cert),
            ("server.pem", &pki.server.cert),
            ("server.key", &pki.server.key),
            ("client.pem", &pki.client.cert),
            ("client.key", &pki.client.key),
        ] {
            std::fs::write(pki.dir.join(name), text).unwrap();
        }
        pki
    }

    /// The path of one of its files, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// The server configuration the library builds from the server's
    /// certificate files, requiring client certificates signed by the CA
    /// when `mutual`.
    pub fn server_config(&self, mutual: bool) -> Arc<rustls::ServerConfig> {
        let identity =
            Identity::from_pem_files(&self.file("server.pem"), &self.file("server.key")).unwrap();
        let ca = mutual.then(|| self.file("ca.pem"));
        echoloop::tls::server_config(identity, ca.as_deref()).unwrap()
    }

    /// A client that trusts the CA, presenting the client certificate when
    /// `with_cert`; it keeps sessions to resume (rustls's default cache).
    pub fn client_config(&self, with_cert: bool) -> Arc<ClientConfig> {
        self.client_config_as(with_cert.then_some(&self.client))
    }

    /// A client that trusts this CA, presenting `cert` (made by any CA).
    pub fn client_config_as(&self, cert: Option<&Pem>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.cert.as_bytes()).unwrap())
            .unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if let Some(pem) = cert {
            let chain = vec![CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The crypto provider the server uses (ring).
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A blocking TLS client connection to `addr` for `localhost`.
pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` and completes the handshake (an error if the server
/// refuses it).
pub fn connect_tls(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<TlsClient> {
    tls_over(crate::support::connect(addr), config)
}

/// Completes a TLS handshake over `tcp`, connected already (with
/// [`crate::support::connect_with`], say, for a small receive buffer).
pub fn tls_over(tcp: TcpStream, config: &Arc<ClientConfig>) -> std::io::Result<TlsClient> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Sends `msg` and reads exactly its echo back.
#[track_caller]
pub fn tls_round_trip(stream: &mut TlsClient, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    stream.flush().unwrap();
    let mut got = vec![0; msg.len()];
    stream.read_exact(&mut got).unwrap();
    crate::support::assert_same(&got, msg);
}

/// Runs Python's `ssl` client (`tls_client.py`) against `addr`: sends
/// `bytes`, ends with `ending` (`close_notify` or `fin`), and returns its
/// one-line verdict; `None` when Python is not here (and may be skipped).
pub fn python_client(
    test: &str,
    addr: SocketAddr,
    ca: &str,
    bytes: usize,
    ending: &str,
) -> Option<String> {
    let python = crate::support::tools::program(test, "python3", "python3")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_client.py");
    let out = crate::support::run_tool(
        "tls_client.py",
        std::process::Command::new(python).arg(script).args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ca,
            "localhost",
            &bytes.to_string(),
            ending,
        ]),
    );
    Some(out.unwrap_or_else(|e| panic!("{e}")))
}

/// The TLS address in a `… listening on ADDR (TLS)` line.
#[track_caller]
pub fn tls_listening_addr(line: &str) -> SocketAddr {
    let line = line.trim_end().trim_end_matches("(TLS)");
    crate::support::Binary::listening_addr(line)
}

/// Starts an in-process server with a plain listener and a TLS one on
/// 127.0.0.1:0 (certificate of `pki`, client certificates required when
/// `mutual`), after `tweak`; returns it and its TLS address.
pub fn start_tls(
    pki: &Pki,
    mutual: bool,
    tweak: impl FnOnce(&mut echoloop::Config),
) -> (crate::support::TestServer, SocketAddr) {
    let mut config = echoloop::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
        tls: Some(pki.server_config(mutual)),
        ..echoloop::Config::default()
    };
    tweak(&mut config);
    let server = echoloop::Server::bind(config).expect("bind test server");
    let tls = server.local_tls_addrs()[0];
    (crate::support::TestServer::run(server), tls)
}

/// Sends `data` without ever reading (rustls's own `Stream` reads while it
/// writes, which would take the echo a test means to leave unread): blocks
/// while the socket is full.
pub fn send_only(stream: &mut TlsClient, data: &[u8]) -> std::io::Result<()> {
    stream.conn.set_buffer_limit(None);
    stream.conn.writer().write_all(data)?;
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock)?;
    }
    Ok(())
}
