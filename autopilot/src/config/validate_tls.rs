//! `store.etcd.tls`: the CA, client certificate and key files, read at load time.
//!
//! Every file is optional, but `cert_file` and `key_file` go together. Relative paths resolve
//! against the config file's directory. Messages name the field and the path, never the
//! contents. A `tls` section requires every endpoint to be `https://`.

use super::locate::{FieldPath, Target};
use super::model::{EtcdTls, PemFile, SecretBytes, TlsIdentity};
use super::raw::RawTls;
use super::validate::Validator;

impl Validator<'_> {
    /// `store.etcd.tls` under `at` (`store.etcd`); `endpoints` must all be `https://`.
    pub(super) fn tls(&mut self, at: &FieldPath, raw: RawTls, endpoints: &[String]) -> EtcdTls {
        let RawTls {
            ca_file,
            cert_file,
            key_file,
        } = raw;
        let tls_at = at.key("tls");
        for (i, url) in endpoints.iter().enumerate() {
            if url.starts_with("http://") {
                self.problem(
                    &at.key("endpoints").index(i),
                    Target::Value,
                    format!(
                        "{url:?} is plain http but store.etcd.tls is set; use https:// endpoints with tls, expected a URL like https://127.0.0.1:2379"
                    ),
                );
            }
        }
        let ca = ca_file.and_then(|f| self.pem_file(&tls_at.key("ca_file"), &f, "certificate"));
        let identity = match (cert_file, key_file) {
            (Some(cert), Some(key)) => {
                let cert = self.pem_file(&tls_at.key("cert_file"), &cert, "certificate");
                let key = self
                    .pem_file(&tls_at.key("key_file"), &key, "private key")
                    .map(|k| SecretBytes::new(k.path, k.pem));
                cert.zip(key).map(|(cert, key)| TlsIdentity { cert, key })
            }
            (Some(_), None) => {
                self.problem_at(
                    &tls_at.key("key_file"),
                    &tls_at.key("cert_file"),
                    "missing while cert_file is set; expected key_file: PATH with the client certificate's private key",
                );
                None
            }
            (None, Some(_)) => {
                self.problem_at(
                    &tls_at.key("cert_file"),
                    &tls_at.key("key_file"),
                    "missing while key_file is set; expected cert_file: PATH with the client certificate",
                );
                None
            }
            (None, None) => None,
        };
        EtcdTls { ca, identity }
    }

    /// Reads a PEM file named at `field`; `what` says what it should hold. The message names
    /// the path, never the contents.
    fn pem_file(&mut self, field: &FieldPath, file: &str, what: &str) -> Option<PemFile> {
        if file.is_empty() {
            self.problem(
                field,
                Target::Value,
                format!("is empty; expected the path of a PEM {what} file"),
            );
            return None;
        }
        let path = self.resolve(file);
        let shown = path.display();
        let message = match std::fs::read(&path) {
            Err(e) => format!("cannot read {shown} ({e}); expected a readable PEM {what} file"),
            Ok(pem) if !pem.windows(11).any(|w| w == b"-----BEGIN ") => {
                format!("{shown} is not PEM; expected a PEM {what} file (-----BEGIN ...)")
            }
            Ok(pem) => return Some(PemFile { path, pem }),
        };
        self.problem(field, Target::Value, message);
        None
    }
}
