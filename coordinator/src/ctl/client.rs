//! The HTTP client of `autopilotctl`: where the coordinator is and which token to send
//! (flag, then environment, then config file), requests, and errors mapped to exit codes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::problem::Problem;

/// Exit codes (documented in docs/cli.md).
pub mod exit {
    /// Something else went wrong.
    pub const OTHER: u8 = 1;
    /// Bad flags (clap's own code).
    pub const USAGE: u8 = 2;
    /// No token, a bad token, or the token may not do this (HTTP 401, 403).
    pub const AUTH: u8 = 3;
    /// No such cluster, node or token — or not visible to the token (HTTP 404).
    pub const NOT_FOUND: u8 = 4;
    /// Refused in the cluster's current state (HTTP 409): pending switchover, candidate
    /// behind, maintenance on, …
    pub const CONFLICT: u8 = 5;
    /// The request itself is invalid (HTTP 400, 413).
    pub const BAD_REQUEST: u8 = 6;
    /// The coordinator or etcd could not be reached or is overloaded (connection errors,
    /// timeouts, HTTP 429, 5xx): retry later.
    pub const UNAVAILABLE: u8 = 7;
}

/// A failed command: what to tell the user and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CtlError {
    /// One line (or a few) saying what happened and what to do.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl CtlError {
    /// An error with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    fn from_problem(p: &Problem) -> Self {
        let code = match p.status {
            401 | 403 => exit::AUTH,
            404 => exit::NOT_FOUND,
            409 => exit::CONFLICT,
            400 | 413 | 422 => exit::BAD_REQUEST,
            429 | 500..=599 => exit::UNAVAILABLE,
            _ => exit::OTHER,
        };
        Self::new(
            code,
            format!("{} [{}, HTTP {}]", p.detail, p.code, p.status),
        )
    }
}

/// The config file (`~/.config/autopilot/autopilotctl.yaml` or `--config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Coordinator URL.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the token (first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https URL.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl FileConfig {
    /// Reads `path`; a missing default file is an empty config, a missing explicit one an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, CtlError> {
        match std::fs::read_to_string(path) {
            Ok(text) => yaml_serde::from_str(&text).map_err(|e| {
                CtlError::new(exit::USAGE, format!("config file {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(e) => Err(CtlError::new(
                exit::USAGE,
                format!("read config file {}: {e}", path.display()),
            )),
        }
    }
}

/// Reads the first line of a token file.
pub fn read_token_file(path: &Path) -> Result<String, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CtlError::new(
            exit::USAGE,
            format!("read token file {}: {e}", path.display()),
        )
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

/// A coordinator to talk to.
pub struct Client {
    /// The HTTP client (timeouts, trusted CA).
    http: Http,
    /// Base URL without a trailing slash.
    base: String,
    /// The base URL as messages show it: without a user name or password.
    shown: String,
    /// The bearer token, if any.
    token: Option<String>,
}

/// `url` without the credentials it may carry (`https://user:pw@host` → `https://host`), for
/// messages: a password given inside `--url` is never printed.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string().trim_end_matches('/').to_owned()
        }
        Ok(_) => url.trim_end_matches('/').to_owned(),
        Err(_) if url.contains('@') => "(the --url given, not shown: it holds an '@')".into(),
        Err(_) => url.to_owned(),
    }
}

impl Client {
    /// A client for `url` with `token`, trusting `ca` (PEM) in addition to the system roots.
    pub fn new(
        url: &str,
        token: Option<String>,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, CtlError> {
        crate::tls::install_provider();
        let mut b = Http::builder().connect_timeout(timeout).timeout(None);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| {
                CtlError::new(exit::USAGE, format!("read CA file {}: {e}", ca.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                CtlError::new(exit::USAGE, format!("CA file {}: {e}", ca.display()))
            })?;
            b = b.tls_certs_only([cert]);
        }
        let http = b
            .build()
            .map_err(|e| CtlError::new(exit::OTHER, format!("build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            shown: redact_url(url),
            token,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    fn send(&self, r: RequestBuilder) -> Result<Response, CtlError> {
        let resp = r.send().map_err(|e| {
            CtlError::new(
                exit::UNAVAILABLE,
                format!(
                    "cannot reach the coordinator at {}: {}; check --url / AUTOPILOT_URL and \
                     that the coordinator runs",
                    self.shown,
                    cluster::error_chain(&e.without_url())
                ),
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        Err(match serde_json::from_str::<Problem>(&text) {
            Ok(p) => CtlError::from_problem(&p),
            Err(_) => CtlError::from_problem(&Problem::new(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                "unexpected_answer",
                format!(
                    "the server at {} answered HTTP {status} without a problem document; is \
                     it an Autopilot coordinator?",
                    self.shown
                ),
            )),
        })
    }

    /// A JSON request; the JSON answer.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        let mut r = self.request(method, path).timeout(Duration::from_secs(30));
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = self.send(r)?;
        resp.json::<Value>().map_err(|e| {
            CtlError::new(
                exit::OTHER,
                format!("the coordinator's answer is not JSON: {}", e.without_url()),
            )
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, None)
    }

    /// Follows a server-sent event stream, calling `on_event(id, type, data)` for each event
    /// until it returns `false`, the stream ends, or (when `idle` is set) nothing arrives for
    /// that long. Returns the last event id seen.
    pub fn events(
        &self,
        path: &str,
        last_id: Option<&str>,
        idle: Option<Duration>,
        on_event: &mut dyn FnMut(&str, &str, &str) -> bool,
    ) -> Result<Option<String>, CtlError> {
        let mut r = self
            .request(Method::GET, path)
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            r = r.header("last-event-id", id);
        }
        if let Some(idle) = idle {
            r = r.timeout(idle);
        }
        let resp = self.send(r)?;
        let mut reader = BufReader::new(resp);
        let (mut id, mut kind, mut data) = (None::<String>, String::new(), String::new());
        let mut seen = last_id.map(str::to_owned);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(seen),
                Ok(_) => {}
                // With `idle` a read timeout is the normal end of a non-following read.
                Err(_) if idle.is_some() => return Ok(seen),
                Err(e) => {
                    return Err(CtlError::new(
                        exit::UNAVAILABLE,
                        format!("the event stream broke: {e}"),
                    ));
                }
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if !data.is_empty() {
                    if let Some(i) = &id {
                        seen = Some(i.clone());
                    }
                    let k = if kind.is_empty() { "message" } else { &kind };
                    if !on_event(id.as_deref().unwrap_or(""), k, &data) {
                        return Ok(seen);
                    }
                }
                id = None;
                kind.clear();
                data.clear();
            } else if let Some(v) = l.strip_prefix("id:") {
                id = Some(v.trim().to_owned());
            } else if let Some(v) = l.strip_prefix("event:") {
                kind = v.trim().to_owned();
            } else if let Some(v) = l.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}
