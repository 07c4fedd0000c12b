//! `coordinator serve` flags (each also from an environment variable) and the validated
//! [`Config`] built from them. Secrets (the admin token, TLS keys) are read from files or the
//! environment and never printed: `Config`'s `Debug` shows where they came from only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use cluster::secret::{EtcdTls, PemFile, Secret, SecretBytes, TlsIdentity};

use crate::limits::{LimitArgs, Limits};
use crate::webhooks::{self, Webhook};

/// Flags of `coordinator serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout at start).
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// etcd endpoints, comma-separated (`http://` or `https://`).
    #[arg(
        long,
        env = "AUTOPILOT_ETCD_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix the agents use (`store.prefix` in their config).
    #[arg(long, env = "AUTOPILOT_PREFIX", default_value = "/autopilot")]
    pub prefix: String,
    /// CA certificate (PEM) for `https://` etcd endpoints.
    #[arg(long, env = "AUTOPILOT_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`.
    #[arg(long, env = "AUTOPILOT_ETCD_CERT_FILE", requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key (PEM) for etcd's `--client-cert-auth`.
    #[arg(long, env = "AUTOPILOT_ETCD_KEY_FILE", requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// File holding the bootstrap admin token (first line). The environment variable
    /// AUTOPILOT_ADMIN_TOKEN holds the token itself instead.
    #[arg(long, env = "AUTOPILOT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key-file.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Largest accepted request body, bytes.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Bound on producing an answer (event streams: on the first byte only).
    #[arg(long, env = "AUTOPILOT_COORDINATOR_REQUEST_TIMEOUT",
        value_parser = humantime::parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
    /// Requests per second per token on average (0: no limit); per coordinator.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_RATE_LIMIT", default_value_t = 20.0)]
    pub rate_limit: f64,
    /// Requests per token in one burst.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,
    /// How long a token lookup may be reused; revocation reaches every coordinator within it.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_TOKEN_CACHE",
        value_parser = humantime::parse_duration, default_value = "1s")]
    pub token_cache: Duration,
    /// How long audit records are kept.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_AUDIT_RETENTION",
        value_parser = humantime::parse_duration, default_value = "90days")]
    pub audit_retention: Duration,
    /// How often this coordinator deletes audit records past the retention.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_AUDIT_PRUNE_INTERVAL",
        value_parser = humantime::parse_duration, default_value = "1min")]
    pub audit_prune_interval: Duration,
    /// Log format on stderr: `text` or `json`. RUST_LOG sets the level (default info).
    #[arg(long, env = "AUTOPILOT_COORDINATOR_LOG_FORMAT", default_value = "text",
        value_parser = ["text", "json"])]
    pub log_format: String,
    /// YAML file listing webhook endpoints that get every new cluster event as a signed
    /// CloudEvent (docs/api.md, "Webhooks"). Without it no webhook is called.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_WEBHOOKS_FILE")]
    pub webhooks_file: Option<PathBuf>,
    /// CA certificates (PEM) that signed the agents' listener certificates: `GET
    /// …/statements` asks each node's agent at its `agent_url`, and https agents are only
    /// asked with this (they are trusted against it alone).
    #[arg(long, env = "AUTOPILOT_AGENT_CA_FILE")]
    pub agent_ca_file: Option<PathBuf>,
    /// Bound on one agent's answer (connect, send, read) when the coordinator asks the
    /// agents (`GET …/statements`); a frozen agent costs at most this.
    #[arg(long, env = "AUTOPILOT_AGENT_TIMEOUT", value_parser = humantime::parse_duration,
        default_value = "3s")]
    pub agent_timeout: Duration,
    /// Connection, stream and failure limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// A flag or file that is not usable; the message names it and says what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct ConfigError {
    /// The flag or variable.
    pub what: String,
    /// What is wrong with it.
    pub why: String,
}

/// The validated configuration of a coordinator.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// etcd endpoints.
    pub etcd_endpoints: Vec<String>,
    /// TLS to etcd.
    pub etcd_tls: Option<EtcdTls>,
    /// Key prefix.
    pub prefix: String,
    /// The bootstrap admin token; `None` when neither file nor variable is set (then only
    /// issued tokens work, and somebody must have issued an admin token before).
    pub admin_token: Option<Secret>,
    /// HTTPS certificate chain and key.
    pub tls: Option<(PemFile, SecretBytes)>,
    /// Largest request body.
    pub body_limit: usize,
    /// Answer within this.
    pub request_timeout: Duration,
    /// Requests per second per token.
    pub rate_limit: f64,
    /// Burst per token.
    pub rate_burst: u32,
    /// Token lookup reuse.
    pub token_cache: Duration,
    /// Audit retention.
    pub audit_retention: Duration,
    /// Audit prune period.
    pub audit_prune_interval: Duration,
    /// Log as JSON.
    pub log_json: bool,
    /// Connection, stream and failure limits.
    pub limits: Limits,
    /// Webhook endpoints (empty: none).
    pub webhooks: Vec<Webhook>,
    /// The CA agents' https listeners are verified against; `None`: https agents are not
    /// asked.
    pub agent_ca: Option<PemFile>,
    /// Bound on one agent's answer.
    pub agent_timeout: Duration,
}

/// Shortest admin token accepted: it is compared by hash, so it must be hard to guess.
pub const MIN_ADMIN_TOKEN_LEN: usize = 24;

fn read(what: &str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError {
        what: format!("{what}={}", path.display()),
        why: format!("cannot read the file: {e}"),
    })
}

impl ServeArgs {
    /// Checks the flags and reads the files they name. `env` looks environment variables up
    /// (`AUTOPILOT_ADMIN_TOKEN`, the webhooks' `secret_env`), passed in so tests need no
    /// process environment.
    pub fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let admin_env = env("AUTOPILOT_ADMIN_TOKEN");
        let admin_token = match (&self.admin_token_file, admin_env) {
            (Some(path), _) => {
                let bytes = read("--admin-token-file", path)?;
                let text = String::from_utf8(bytes).map_err(|_| ConfigError {
                    what: format!("--admin-token-file={}", path.display()),
                    why: "the token must be UTF-8 text".into(),
                })?;
                let first = text.lines().next().unwrap_or("").trim().to_owned();
                Some(Secret::new(format!("file {}", path.display()), first))
            }
            (None, Some(v)) => Some(Secret::new(
                "environment variable AUTOPILOT_ADMIN_TOKEN".into(),
                v.trim().to_owned(),
            )),
            (None, None) => None,
        };
        if let Some(t) = &admin_token
            && t.expose().len() < MIN_ADMIN_TOKEN_LEN
        {
            return Err(ConfigError {
                what: format!("admin token from {t}"),
                why: format!(
                    "shorter than {MIN_ADMIN_TOKEN_LEN} characters; generate one with \
                     `openssl rand -hex 32`"
                ),
            });
        }
        if self.etcd_endpoints.is_empty() || self.etcd_endpoints.iter().any(|e| e.is_empty()) {
            return Err(ConfigError {
                what: "--etcd-endpoints".into(),
                why: "give at least one endpoint, e.g. http://127.0.0.1:2379".into(),
            });
        }
        if !self.prefix.starts_with('/') {
            return Err(ConfigError {
                what: format!("--prefix={}", self.prefix),
                why: "must start with '/'".into(),
            });
        }
        if !(self.rate_limit >= 0.0 && self.rate_limit.is_finite()) {
            return Err(ConfigError {
                what: format!("--rate-limit={}", self.rate_limit),
                why: "must be a number >= 0".into(),
            });
        }
        if self.body_limit < 1024 {
            return Err(ConfigError {
                what: format!("--body-limit={}", self.body_limit),
                why: "must be at least 1024 bytes".into(),
            });
        }
        let limits = self.limits.validate()?;
        let etcd_tls = if self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some() {
            let ca = match &self.etcd_ca_file {
                Some(p) => Some(PemFile {
                    pem: read("--etcd-ca-file", p)?,
                    path: p.clone(),
                }),
                None => None,
            };
            let identity = match (&self.etcd_cert_file, &self.etcd_key_file) {
                (Some(c), Some(k)) => Some(TlsIdentity {
                    cert: PemFile {
                        pem: read("--etcd-cert-file", c)?,
                        path: c.clone(),
                    },
                    key: SecretBytes::new(k.clone(), read("--etcd-key-file", k)?),
                }),
                _ => None,
            };
            Some(EtcdTls { ca, identity })
        } else {
            None
        };
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => Some((
                PemFile {
                    pem: read("--tls-cert-file", c)?,
                    path: c.clone(),
                },
                SecretBytes::new(k.clone(), read("--tls-key-file", k)?),
            )),
            _ => None,
        };
        let agent_ca = match &self.agent_ca_file {
            Some(p) => Some(agent_ca(p)?),
            None => None,
        };
        if self.agent_timeout < Duration::from_millis(100)
            || self.agent_timeout >= self.request_timeout
        {
            return Err(ConfigError {
                what: format!(
                    "--agent-timeout={}",
                    humantime::format_duration(self.agent_timeout)
                ),
                why: format!(
                    "must be at least 100ms and shorter than --request-timeout ({})",
                    humantime::format_duration(self.request_timeout)
                ),
            });
        }
        let webhooks = match &self.webhooks_file {
            Some(path) => webhooks::config::load("--webhooks-file", path, env)?,
            None => Vec::new(),
        };
        Ok(Config {
            listen: self.listen,
            etcd_endpoints: self.etcd_endpoints,
            etcd_tls,
            prefix: self.prefix.trim_end_matches('/').to_owned(),
            admin_token,
            tls,
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            token_cache: self.token_cache,
            audit_retention: self.audit_retention,
            audit_prune_interval: self.audit_prune_interval,
            log_json: self.log_format == "json",
            limits,
            webhooks,
            agent_ca,
            agent_timeout: self.agent_timeout,
        })
    }
}

/// Reads `--agent-ca-file`: it must hold at least one PEM certificate.
fn agent_ca(path: &PathBuf) -> Result<PemFile, ConfigError> {
    let pem = read("--agent-ca-file", path)?;
    let bad = |why: String| ConfigError {
        what: format!("--agent-ca-file={}", path.display()),
        why,
    };
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(PemFile {
            pem,
            path: path.clone(),
        }),
        Ok(_) => Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA that signed \
             the agents' telemetry.tls certificates"
                .into(),
        )),
        Err(e) => Err(bad(format!("is not a PEM certificate bundle: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_with_admin(token: &str) -> impl Fn(&str) -> Option<String> + '_ {
        move |k| (k == "AUTOPILOT_ADMIN_TOKEN").then(|| token.to_owned())
    }

    fn args(extra: &[&str]) -> ServeArgs {
        let mut v = vec!["t", "--etcd-endpoints", "http://127.0.0.1:2379"];
        v.extend_from_slice(extra);
        T::try_parse_from(v).expect("parse").a
    }

    /// docs/api.md says every flag of `serve` also reads an environment variable.
    #[test]
    fn every_flag_reads_an_environment_variable() {
        use clap::CommandFactory;
        let cmd = T::command();
        let missing: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.get_long().is_some() && a.get_long() != Some("help"))
            .filter(|a| a.get_env().is_none())
            .map(|a| format!("--{}", a.get_long().unwrap_or_default()))
            .collect();
        assert!(missing.is_empty(), "flags without a variable: {missing:?}");
    }

    #[test]
    fn a_short_admin_token_is_refused_and_never_printed() {
        let err = args(&[])
            .validate(&env_with_admin("short-secret"))
            .expect_err("an error");
        let msg = err.to_string();
        assert!(msg.contains("shorter than"), "{msg}");
        assert!(!msg.contains("short-secret"), "the token leaked: {msg}");
        let long = "x".repeat(32);
        let ok = args(&[]).validate(&env_with_admin(&long)).expect("valid");
        assert!(!format!("{ok:?}").contains(&"x".repeat(32)));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = args(&["--prefix", "nope"])
            .validate(&no_env)
            .expect_err("an error");
        assert!(err.to_string().contains("--prefix=nope"));
        let err = args(&["--admin-token-file", "/does/not/exist"])
            .validate(&no_env)
            .expect_err("an error");
        assert!(
            err.to_string()
                .contains("--admin-token-file=/does/not/exist")
        );
    }

    #[test]
    fn the_agent_ca_and_timeout_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let flag = format!("--agent-ca-file={}", junk.display());
        let err = args(&["--agent-ca-file", &junk.display().to_string()])
            .validate(&no_env)
            .expect_err("an error");
        assert!(err.to_string().contains(&flag), "{err}");
        let err = args(&["--agent-ca-file", "/does/not/exist"])
            .validate(&no_env)
            .expect_err("an error");
        assert!(
            err.to_string().contains("--agent-ca-file=/does/not/exist"),
            "{err}"
        );
        let err = args(&["--agent-timeout", "10s"])
            .validate(&no_env)
            .expect_err("an error");
        assert!(err.to_string().contains("--agent-timeout=10s"), "{err}");
        let ok = args(&[]).validate(&no_env).expect("valid");
        assert_eq!(ok.agent_timeout, Duration::from_secs(3));
        assert!(ok.agent_ca.is_none());
    }
}
