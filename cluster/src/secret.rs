//! Secrets and TLS material read into memory at load time. `Debug` and `Display` never show
//! a secret's value or a file's contents, only where it came from.

use std::fmt;
use std::path::PathBuf;

/// A secret value. Its `Debug` and `Display` never show the value, only where it came from.
#[derive(Clone)]
pub struct Secret {
    /// Where it was read from, e.g. `file /etc/autopilot/db.pass` or `env DB_PASSWORD`.
    pub origin: String,
    value: String,
}

impl Secret {
    pub fn new(origin: String, value: String) -> Self {
        Self { origin, value }
    }
    /// The secret itself; call only where it is handed to a child process or a server.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret from {}>", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret from {}>", self.origin)
    }
}

/// TLS material for the etcd connection, read into memory at load time.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// PEM CA certificate(s) the etcd server certificate must chain to. Without it no CA is
    /// trusted (this build loads no system roots).
    pub ca: Option<PemFile>,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub identity: Option<TlsIdentity>,
}

/// A client certificate and its private key.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    /// The PEM certificate (chain).
    pub cert: PemFile,
    /// The PEM private key; `Debug` shows only its path.
    pub key: SecretBytes,
}

/// A PEM file read at load time. `Debug` shows the path and size, not the contents.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    /// Where it was read from (resolved against the config directory).
    pub path: PathBuf,
    /// The file's contents.
    pub pem: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes from {}>", self.pem.len(), self.path.display())
    }
}

/// Secret bytes read from a file (a private key). Its `Debug` and `Display` never show the
/// value, only the file, like [`Secret`].
#[derive(Clone)]
pub struct SecretBytes {
    /// The file it was read from.
    pub path: PathBuf,
    value: Vec<u8>,
}

impl SecretBytes {
    pub fn new(path: PathBuf, value: Vec<u8>) -> Self {
        Self { path, value }
    }
    /// The secret itself; call only where it is handed to the TLS library.
    pub fn expose(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret from file {}>", self.path.display())
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret from file {}>", self.path.display())
    }
}
