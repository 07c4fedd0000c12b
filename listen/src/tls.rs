//! HTTPS on a capped listener: the rustls server configuration for a certificate and key
//! (aws-lc-rs, never ring — dependencies.md gotcha 1; TLS 1.2 and 1.3; ALPN `http/1.1`, the
//! only protocol the listeners speak) and the acceptor that runs the handshake.
//!
//! The TLS layer sits on top of [`super::Guarded`]: a connection takes its place under the
//! caps and its idle timer *before* the handshake, so caps and idle handling apply to TLS
//! connections as to plain ones. The handshake itself runs in the connection's task (never
//! in the accept loop) and is bounded by [`super::Limits::header_read_timeout`]: a client
//! that opens a connection and never finishes its handshake holds its slot for no longer than
//! one that never finishes its request head. Failed handshakes are counted and logged
//! (throttled) by the listener's accept-error handler, as `reason="tls_handshake"`.
//!
//! The same parsing is used by configuration validation (`telemetry.tls`), so a certificate
//! that does not parse, or a key that does not belong to it, is a configuration problem at
//! load time rather than a failed start. Messages never contain key material.

use std::sync::Arc;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Limits;

/// Why a certificate, key or CA bundle cannot be used; each names what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate (chain) or CA bundle has no usable certificate.
    #[error("{0}")]
    Certificate(String),
    /// The private key cannot be read.
    #[error("{0}")]
    Key(String),
    /// Both parse, but rustls refuses them together (the key is not the certificate's).
    #[error("{0}")]
    Mismatch(String),
}

/// The certificates of a PEM bundle, in order; at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(certs) if certs.is_empty() => Err(TlsError::Certificate(
            "holds no PEM CERTIFICATE block".to_owned(),
        )),
        Ok(certs) => Ok(certs),
        Err(e) => Err(TlsError::Certificate(format!(
            "has a CERTIFICATE block that cannot be read ({e})"
        ))),
    }
}

/// The first private key of a PEM file (PKCS#8, SEC1 or PKCS#1). The message never quotes
/// the file (pem errors may carry a line of it).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        TlsError::Key(match e {
            pem::Error::NoItemsFound => {
                "holds no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block)"
                    .to_owned()
            }
            _ => "has a private key block that cannot be read (bad PEM or base64)".to_owned(),
        })
    })
}

/// The number of CA certificates in `pem` usable as trust anchors; an error when none is.
pub fn trust_anchors(pem: &[u8]) -> Result<usize, TlsError> {
    let certs = certificates(pem)?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Certificate(
            "holds no certificate usable as a CA (none parses as X.509)".to_owned(),
        ));
    }
    Ok(added)
}

/// The server configuration for the PEM certificate chain `cert` and private key `key`.
pub fn server_config(cert: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = private_key(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(format!("no TLS version available ({e})")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch(format!("rustls refuses the pair: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The acceptor for a listener under `limits`: the handshake must complete within the
/// header-read timeout.
pub fn acceptor(config: Arc<ServerConfig>, limits: &Limits) -> RustlsAcceptor {
    RustlsAcceptor::new(RustlsConfig::from_config(config))
        .handshake_timeout(limits.header_read_timeout)
}
