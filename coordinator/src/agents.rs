//! The coordinator's one way to an agent's own HTTP listener (`agent_url` in `nodes/<id>`):
//! `GET <agent_url>/statements?limit=N`, the database's top statements, and
//! `GET <agent_url>/config`, the agent's effective configuration (secrets redacted by the
//! agent). Bounded on every
//! side, because the URL comes from etcd and the agent may be frozen or hostile: only
//! `http://` and `https://` (https trusts only the CA of `--agent-ca-file`), a timeout on the
//! whole exchange, no redirects, at most [`MAX_ANSWER`] bytes read. Every failure is a
//! [`FetchError`] with a stable code, reported for that node alone.

use std::time::Duration;

use cluster::error_chain;
use cluster::secret::PemFile;
use cluster::wire::NodeStatements;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// Largest answer read from an agent: 100 statements of 500 characters fit many times over.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// Counter of agent requests by outcome (`ok` or a [`FetchError`] code).
pub const REQUESTS: &str = "autopilot_coordinator_agent_requests_total";

/// Agent errors' text kept in answers, in characters.
const MAX_AGENT_TEXT: usize = 300;

/// Why one agent's statements could not be had. `code` is stable (scripts branch on it);
/// `message` says what happened and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// `no_agent_url`, `invalid_agent_url`, `agent_ca_missing`, `agent_timeout`,
    /// `agent_unreachable`, `no_statistics`, `agent_refused`, `agent_unsupported`,
    /// `agent_redirect`, `invalid_answer`, `wrong_node`.
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

impl FetchError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The flag that gives the agents' CA, as errors name it.
pub const CA_FLAG: &str = "--agent-ca-file (AUTOPILOT_AGENT_CA_FILE)";

/// An HTTP client for agents' listeners. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AgentClient {
    /// Plain client, no redirects, the timeout on the whole exchange.
    http: reqwest::Client,
    /// Whether https agents can be verified (`--agent-ca-file` given).
    https: bool,
    /// Bound on one agent's answer, for messages.
    timeout: Duration,
}

impl AgentClient {
    /// A client trusting only the certificates of `ca` for https agents (none: https agents
    /// are refused with an error naming the flag), each exchange bounded by `timeout`.
    pub fn new(ca: Option<&PemFile>, timeout: Duration) -> Result<Self, reqwest::Error> {
        crate::tls::install_provider();
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("autopilot-coordinator/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca.pem)?);
        }
        Ok(Self {
            http: b.build()?,
            https: ca.is_some(),
            timeout,
        })
    }

    /// `GET <agent_url>/statements[?limit=N]` of node `node`.
    pub async fn statements(
        &self,
        node: &str,
        agent_url: &str,
        limit: Option<u32>,
    ) -> Result<NodeStatements, FetchError> {
        let r = self.fetch(node, agent_url, limit).await;
        let outcome = match &r {
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
        if let Err(e) = &r {
            tracing::debug!(node, code = e.code, cause = %e, "agent statements unavailable");
        }
        r
    }

    /// `GET <agent_url>/config` of node `node`: the agent's effective configuration as the
    /// JSON it answers (secrets redacted by the agent).
    pub async fn config(
        &self,
        node: &str,
        agent_url: &str,
    ) -> Result<serde_json::Value, FetchError> {
        let r = async {
            let url = agent_path_url(agent_url, "config", None)?;
            let (status, body) = self.exchange(&url).await?;
            judge_status(&url, status, &body, "/config")?;
            serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| {
                FetchError::new(
                    "invalid_answer",
                    format!(
                        "the agent at {} answered 200 with something that is not JSON: {e}",
                        shown(&url)
                    ),
                )
            })
        }
        .await;
        let outcome = match &r {
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
        if let Err(e) = &r {
            tracing::debug!(node, code = e.code, cause = %e, "agent configuration unavailable");
        }
        r
    }

    async fn fetch(
        &self,
        node: &str,
        agent_url: &str,
        limit: Option<u32>,
    ) -> Result<NodeStatements, FetchError> {
        let url = statements_url(agent_url, limit)?;
        let (status, body) = self.exchange(&url).await?;
        judge(node, &url, status, &body)
    }

    /// One bounded GET of `url`: its status and body.
    async fn exchange(&self, url: &Url) -> Result<(StatusCode, Vec<u8>), FetchError> {
        let url = url.clone();
        if url.scheme() == "https" && !self.https {
            return Err(FetchError::new(
                "agent_ca_missing",
                format!(
                    "the agent serves HTTPS ({}); give the coordinator the CA that signed the \
                     agents' certificates with {CA_FLAG}",
                    shown(&url)
                ),
            ));
        }
        let mut resp = self.http.get(url.clone()).send().await.map_err(|e| {
            if e.is_timeout() {
                self.timed_out(&url)
            } else {
                FetchError::new(
                    "agent_unreachable",
                    format!(
                        "cannot reach the agent at {}: {}",
                        shown(&url),
                        error_chain(&e.without_url())
                    ),
                )
            }
        })?;
        let status = resp.status();
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large(&url));
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > MAX_ANSWER {
                        return Err(too_large(&url));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(self.timed_out(&url)),
                Err(e) => {
                    return Err(FetchError::new(
                        "agent_unreachable",
                        format!(
                            "the agent at {} broke off its answer: {}",
                            shown(&url),
                            error_chain(&e.without_url())
                        ),
                    ));
                }
            }
        }
        Ok((status, body))
    }

    fn timed_out(&self, url: &Url) -> FetchError {
        FetchError::new(
            "agent_timeout",
            format!(
                "the agent at {} did not answer within {:?} (stopped, overloaded or cut off)",
                shown(url),
                self.timeout
            ),
        )
    }
}

/// `<agent_url>/statements` with `limit`; only `http`/`https` base URLs without user info,
/// query or fragment.
pub fn statements_url(agent_url: &str, limit: Option<u32>) -> Result<Url, FetchError> {
    agent_path_url(agent_url, "statements", limit)
}

/// `<agent_url>/<path>` (with `limit` as the query); only `http`/`https` base URLs without
/// user info, query or fragment.
fn agent_path_url(agent_url: &str, path: &str, limit: Option<u32>) -> Result<Url, FetchError> {
    let bad = |why: &str| {
        let url = if agent_url.contains('@') {
            "(not shown: it holds an '@')".to_owned()
        } else {
            format!("{:?}", crate::audit::bounded(agent_url, 100))
        };
        FetchError::new(
            "invalid_agent_url",
            format!("the node document's agent_url {url} {why}"),
        )
    };
    let mut url = Url::parse(agent_url).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("is not http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("carries user information"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.has_host() {
        return Err(bad("is not a base URL (scheme, host, port)"));
    }
    let path = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    if let Some(n) = limit {
        url.set_query(Some(&format!("limit={n}")));
    }
    Ok(url)
}

/// The agent's `{"error": "..."}`.
#[derive(Deserialize)]
struct AgentError {
    /// What the agent says.
    error: String,
}

/// What an answer comes to.
fn judge(
    node: &str,
    url: &Url,
    status: StatusCode,
    body: &[u8],
) -> Result<NodeStatements, FetchError> {
    judge_status(url, status, body, "/statements")?;
    let doc: NodeStatements = serde_json::from_slice(body).map_err(|e| {
        FetchError::new(
            "invalid_answer",
            format!(
                "the agent at {} answered 200 with something that is not a statements \
                 document: {e}",
                shown(url)
            ),
        )
    })?;
    if doc.node != node {
        return Err(FetchError::new(
            "wrong_node",
            format!(
                "the agent at {} answered for node {:?}, not {node:?}; the node document's \
                 agent_url is stale or wrong",
                shown(url),
                crate::audit::bounded(&doc.node, 100)
            ),
        ));
    }
    Ok(doc)
}

/// The errors every answer of an agent may be (`route` names what was asked, for the 404).
fn judge_status(url: &Url, status: StatusCode, body: &[u8], route: &str) -> Result<(), FetchError> {
    let said = || {
        serde_json::from_slice::<AgentError>(body)
            .map(|e| crate::audit::bounded(&e.error, MAX_AGENT_TEXT))
            .unwrap_or_else(|_| "no error document".into())
    };
    if status.is_redirection() {
        return Err(FetchError::new(
            "agent_redirect",
            format!(
                "the agent at {} answered HTTP {status}, a redirect, which is not followed; \
                 check the node's telemetry.advertise",
                shown(url)
            ),
        ));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let code = if route == "/statements" {
            "no_statistics"
        } else {
            "agent_unavailable"
        };
        return Err(FetchError::new(code, said()));
    }
    if status == StatusCode::NOT_FOUND {
        return Err(FetchError::new(
            "agent_unsupported",
            format!(
                "the agent at {} does not serve {route} (an older agent version?)",
                shown(url)
            ),
        ));
    }
    if !status.is_success() {
        return Err(FetchError::new(
            "agent_refused",
            format!("the agent answered HTTP {status}: {}", said()),
        ));
    }
    Ok(())
}

fn too_large(url: &Url) -> FetchError {
    FetchError::new(
        "invalid_answer",
        format!(
            "the agent at {} answered more than {MAX_ANSWER} bytes",
            shown(url)
        ),
    )
}

/// `scheme://host:port` of `url`, for messages.
fn shown(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

#[cfg(test)]
mod tests;
