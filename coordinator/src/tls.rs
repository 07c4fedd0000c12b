//! HTTPS for the API when `--tls-cert-file`/`--tls-key-file` are given: rustls with the
//! aws-lc-rs provider (the workspace standard; never ring, see dependencies.md gotcha 1).

use axum_server::tls_rustls::RustlsConfig;

use cluster::secret::{PemFile, SecretBytes};

/// Installs aws-lc-rs as the process-wide rustls provider (once; later calls are no-ops).
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The server configuration for `cert` and `key`. The error names the files, never the key.
pub async fn server_config(cert: &PemFile, key: &SecretBytes) -> Result<RustlsConfig, String> {
    install_provider();
    RustlsConfig::from_pem(cert.pem.clone(), key.expose().to_vec())
        .await
        .map_err(|e| {
            format!(
                "load TLS certificate {} and key {}: {e}",
                cert.path.display(),
                key.path.display()
            )
        })
}
