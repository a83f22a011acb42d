//! Optional TLS (rustls) for brick connections, configured from PEM files.
//!
//! The brick server holds one certificate for its port (`weft brickd --tls-cert/--tls-key`);
//! with `--tls-ca` it also demands client certificates signed by that CA. A brick with
//! `option transport.socket.ssl-enabled on` refuses clients that did not connect with TLS,
//! and one with `option auth.ssl-allow` serves only the certificate names it lists.
//! A client with `ssl-enabled` verifies the server against `ssl-ca-list` and may present
//! its own certificate (`ssl-own-cert`, `ssl-private-key`).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore, ServerConfig,
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate in {}: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// The brick server's TLS setup: its acceptor, and whether it asks clients for certificates.
#[derive(Clone)]
pub struct ServerTls {
    /// Accepts TLS connections with the server's certificate.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// True when clients are asked for a certificate signed by the client CA
    /// (`--tls-ca`): the server then refuses TLS clients without one at the handshake, and
    /// bricks may name the certificates they serve (`auth.ssl-allow`).
    pub verifies_clients: bool,
}

/// The server's TLS setup with its certificate and key; with `client_ca`, clients are asked
/// for a certificate and one that this CA did not sign fails the TLS handshake. A TLS client
/// that presents none gets through TLS and is then refused by the brick server's handshake
/// with a reason (see `ServerTls::verifies_clients`).
pub fn acceptor(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTls, String> {
    let b = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let b = match client_ca {
        Some(ca) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            // A missing certificate is refused after TLS, where the refusal can say why.
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let cfg = b
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| format!("certificate {} and key do not fit: {e}", cert.display()))?;
    Ok(ServerTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        verifies_clients: client_ca.is_some(),
    })
}

/// A TLS connector trusting `ca`, presenting `own` (certificate, key) when given.
pub fn connector(
    ca: &Path,
    own: Option<(&Path, &Path)>,
) -> Result<tokio_rustls::TlsConnector, String> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?);
    let cfg = match own {
        Some((c, k)) => b
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(|e| format!("client certificate {}: {e}", c.display()))?,
        None => b.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// The first byte of a TLS handshake record; a Weft frame starts with 'W'.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;
