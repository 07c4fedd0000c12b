//! HTTPS for the API when `--tls-cert-file`/`--tls-key-file` are given: the same rustls
//! configuration as the agents' listeners (`listen::tls`: aws-lc-rs, never ring — see
//! dependencies.md gotcha 1 — and ALPN `http/1.1` only, since the server speaks HTTP/1.1: a
//! client offered `h2` would otherwise negotiate a protocol the server does not speak, as curl
//! does by default).

use std::sync::Arc;

use cluster::secret::{PemFile, SecretBytes};

/// Installs aws-lc-rs as the process-wide rustls provider (once; later calls are no-ops).
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The server configuration for `cert` and `key`. The error names the files, never the key.
pub fn server_config(
    cert: &PemFile,
    key: &SecretBytes,
) -> Result<Arc<rustls::ServerConfig>, String> {
    install_provider();
    listen::tls::server_config(&cert.pem, key.expose()).map_err(|e| {
        format!(
            "load TLS certificate {} and key {}: {e}",
            cert.path.display(),
            key.path.display()
        )
    })
}
