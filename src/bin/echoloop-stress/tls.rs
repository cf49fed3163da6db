//! `--tls`: the client side of TLS. Each connection's bytes go through the
//! library's TLS transport (`echoloop::tls::TlsStream`, on the same seam as
//! plain TCP), so every rule of reading and writing under TLS is the
//! server's. Here: the client configuration the flags describe, and the
//! verifier `--tls-insecure` puts in place of a real one.

use std::sync::Arc;

use echoloop::tls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use echoloop::tls::rustls::client::Resumption;
use echoloop::tls::rustls::crypto::{self, CryptoProvider};
use echoloop::tls::rustls::pki_types::pem::PemObject;
use echoloop::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use echoloop::tls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};

/// What every TLS connection of a run shares.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// rustls's client configuration (roots or no verification).
    pub config: Arc<ClientConfig>,
    /// The name the server's certificate must carry (SNI too).
    pub name: ServerName<'static>,
}

/// The client configuration of `--tls-ca FILE` (or `--tls-insecure` with
/// `ca` `None`) for the server `name`, presenting `identity` (`--tls-cert`,
/// `--tls-key`) if given, resuming sessions when `resume` (`--tls-resume`);
/// an error names the flag.
pub fn client(
    ca: Option<&str>,
    identity: Option<(&str, &str)>,
    name: &str,
    resume: bool,
) -> Result<ClientTls, String> {
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let config = match ca {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("--tls-ca {path}: {e}"))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&text) {
                let cert = cert.map_err(|e| format!("--tls-ca {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-ca {path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("--tls-ca {path}: no PEM certificate in it"));
            }
            authenticate(builder.with_root_certificates(roots), identity)?
        }
        None => {
            eprintln!(
                "echoloop-stress: --tls-insecure: the server's certificate is NOT verified \
                 (any certificate, any name)"
            );
            let verifier = Arc::new(AnyCertificate(provider));
            let builder = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            authenticate(builder, identity)?
        }
    };
    let mut config = config;
    if !resume {
        config.resumption = Resumption::disabled();
    }
    let name =
        ServerName::try_from(name.to_string()).map_err(|e| format!("--tls-sni {name}: {e}"))?;
    Ok(ClientTls {
        config: Arc::new(config),
        name,
    })
}

/// The last step of the configuration: with `identity` (certificate and
/// key files), the client certificate every connection presents.
fn authenticate(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<(&str, &str)>,
) -> Result<ClientConfig, String> {
    let Some((cert, key)) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {key}: {e}"))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))
}

/// The crypto provider the server uses too (ring; Cargo.toml says why).
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// `--tls-insecure`: any certificate is accepted, for any name; the
/// handshake's signatures are still checked (the peer holds the key of the
/// certificate it sent), so the traffic is encrypted, to an unknown peer.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
