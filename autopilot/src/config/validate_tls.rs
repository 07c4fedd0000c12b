//! `store.etcd.tls` and `telemetry.tls`: CA, certificate and key files, read at load time.
//!
//! Every file is optional, but a certificate and its key go together. Relative paths resolve
//! against the config file's directory. Messages name the field and the path, never the
//! contents. A `store.etcd.tls` section requires every endpoint to be `https://`; its files
//! are only checked to be PEM (etcd-client parses them when it connects). The listener's files
//! are parsed here with the listener's own code (`listen::tls`): a certificate that does not
//! parse, a key that is not the certificate's or a CA bundle without a certificate is a
//! problem at load time, not a failed start.

use super::locate::{FieldPath, Target};
use super::model::ListenerTls;
use super::raw::{RawListenerTls, RawTls};
use super::validate::{Validator, root};
use cluster::secret::{EtcdTls, PemFile, SecretBytes, TlsIdentity};
use listen::tls;

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

impl Validator<'_> {
    /// `telemetry.tls`: the listener's certificate and key (parsed, and checked to belong
    /// together) and the CA bundle peers' listeners are verified against. `advertise` must
    /// then be `https://` (checked here, where the certificate is known).
    pub(super) fn listener_tls(
        &mut self,
        raw: RawListenerTls,
        advertise: Option<&str>,
    ) -> ListenerTls {
        let RawListenerTls { cert, key, ca } = raw;
        let at = root("telemetry").key("tls");
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => {
                let cert = self
                    .pem_file(&at.key("cert"), &cert, "certificate")
                    .and_then(|c| self.parsed(&at.key("cert"), c, tls::certificates));
                let key = self
                    .pem_file(&at.key("key"), &key, "private key")
                    .and_then(|k| self.parsed(&at.key("key"), k, tls::private_key))
                    .map(|k| SecretBytes::new(k.path, k.pem));
                cert.zip(key).and_then(|(cert, key)| {
                    match tls::server_config(&cert.pem, key.expose()) {
                        Ok(_) => Some(TlsIdentity { cert, key }),
                        Err(e) => {
                            self.problem(
                                &at.key("key"),
                                Target::Value,
                                format!(
                                    "{} does not fit the certificate {} ({e}); expected the private key of telemetry.tls.cert",
                                    key.path.display(),
                                    cert.path.display()
                                ),
                            );
                            None
                        }
                    }
                })
            }
            (Some(_), None) => {
                self.problem_at(
                    &at.key("key"),
                    &at.key("cert"),
                    "missing while cert is set; expected key: PATH with the certificate's private key",
                );
                None
            }
            (None, Some(_)) => {
                self.problem_at(
                    &at.key("cert"),
                    &at.key("key"),
                    "missing while key is set; expected cert: PATH with the listener's certificate chain",
                );
                None
            }
            (None, None) => None,
        };
        let ca = ca.and_then(|f| {
            let file = self.pem_file(&at.key("ca"), &f, "CA certificate")?;
            self.parsed(&at.key("ca"), file, tls::trust_anchors)
        });
        if let Some(url) = advertise.filter(|a| a.starts_with("http://"))
            && identity.is_some()
        {
            self.problem(
                &root("telemetry").key("advertise"),
                Target::Value,
                format!(
                    "{url:?} is plain http but telemetry.tls.cert is set (the listener serves HTTPS only); expected an https:// URL like https://10.0.0.5:9187"
                ),
            );
        }
        ListenerTls { identity, ca }
    }

    /// `file` when `parse` accepts its contents; else a problem naming the path.
    fn parsed<T>(
        &mut self,
        field: &FieldPath,
        file: PemFile,
        parse: impl Fn(&[u8]) -> Result<T, tls::TlsError>,
    ) -> Option<PemFile> {
        match parse(&file.pem) {
            Ok(_) => Some(file),
            Err(e) => {
                self.problem(
                    field,
                    Target::Value,
                    format!(
                        "{} {e}; expected a PEM file as openssl writes it",
                        file.path.display()
                    ),
                );
                None
            }
        }
    }
}
