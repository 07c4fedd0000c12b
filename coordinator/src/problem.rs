//! Errors as RFC 9457 problem documents: `application/problem+json` with a stable `code`
//! that scripts branch on and a `detail` that tells a human what to do.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cluster::error_chain;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem document. `type` is `urn:autopilot:problem:<code>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:autopilot:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem class (the HTTP reason phrase).
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code, e.g. `cluster_not_found`, `candidate_behind`.
    pub code: String,
    /// What happened and what to do about it.
    pub detail: String,
    /// Seconds to wait before retrying (rate limits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    /// A problem with `status`, stable `code` and a `detail` for humans.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:autopilot:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: detail.into(),
            retry_after_seconds: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    /// 404 with `code`.
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }
    /// 409 with `code`.
    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }
    /// 401: no usable token.
    pub fn unauthenticated(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }
    /// 403: the token sees the target but its role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    /// 404 for a cluster that does not exist *or* is outside the token's namespaces: the two
    /// must look the same, so tenants cannot discover each other's clusters.
    pub fn cluster_not_found(ns: &str, project: &str, cluster: &str) -> Self {
        Self::not_found(
            "cluster_not_found",
            format!(
                "no cluster {ns}/{project}/{cluster} is visible to this token; check the names \
                 with `autopilotctl list`"
            ),
        )
    }
    /// 503: etcd did not answer. Logs the cause (never a secret: store errors name keys only).
    pub fn store(err: &cluster::store::StoreError) -> Self {
        tracing::warn!(cause = %store_cause(err), "etcd request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!(
                "the coordinator could not {}; etcd may be down or slow, retry in a few seconds",
                err.op()
            ),
        )
    }
    /// 429 with a retry hint.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests with this token; retry in {retry_after} s"),
        );
        p.retry_after_seconds = Some(retry_after);
        p
    }

    /// 429 for a client address that spent its budget of failed or unauthenticated requests:
    /// answered before anything is looked up or written.
    pub fn client_throttled(retry_after: u64) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "client_throttled",
            format!(
                "too many failed or unauthenticated requests from this address; retry in \
                 {retry_after} s with a valid token"
            ),
        );
        p.retry_after_seconds = Some(retry_after);
        p
    }

    /// The same problem, asking the client to retry after `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_seconds = Some(secs);
        self
    }
}

/// A store error as one plain line for logs: the operation, what kind of failure, and the
/// gRPC status message when there is one (`…: etcd unavailable: tcp connect error`), never
/// the gRPC client's debug text (`Status { code: …, source: tonic::transport::Error(…) }`).
pub fn store_cause(err: &cluster::store::StoreError) -> String {
    let chain = error_chain(err);
    let head = err.to_string();
    match grpc_message(&chain) {
        Some(m) if !m.is_empty() => format!("{head}: {m}"),
        _ if chain.contains("grpc") || chain.contains("Status {") || chain.contains("tonic") => {
            head
        }
        _ => chain,
    }
}

/// The `message: "…"` of a gRPC status in `text`, if any.
fn grpc_message(text: &str) -> Option<String> {
    let at = text.find("message: \"")? + "message: \"".len();
    let rest = &text[at..];
    let end = rest.find('"')?;
    Some(rest[..end].chars().take(200).collect())
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after_seconds;
        let body = serde_json::to_vec(&self).expect("a problem serialises");
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"autopilot\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_logged_without_grpc_debug_text() {
        #[derive(Debug, thiserror::Error)]
        #[error(
            "grpc request error: code: 'The service is currently unavailable', message: \
             \"tcp connect error\", source: tonic::transport::Error(Transport, \
             ConnectError(\"tcp connect error\", Os {{ code: 111 }}))"
        )]
        struct Grpc;
        let e = cluster::store::StoreError::Unavailable {
            op: "list keys under /autopilot/a/b/c/".into(),
            source: Box::new(Grpc),
        };
        let line = store_cause(&e);
        assert_eq!(
            line,
            "list keys under /autopilot/a/b/c/: etcd unavailable: tcp connect error"
        );
        let p = Problem::store(&e);
        for bad in ["tonic", "Status {", "source:", "Os {", "code:"] {
            assert!(!p.detail.contains(bad), "{}", p.detail);
            assert!(!line.contains(bad), "{line}");
        }
    }

    #[test]
    fn a_problem_has_a_stable_type_and_code() {
        let p = Problem::conflict("candidate_behind", "x");
        assert_eq!(p.kind, "urn:autopilot:problem:candidate_behind");
        assert_eq!(p.status, 409);
        assert_eq!(p.title, "Conflict");
        let r = p.into_response();
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
    }
}
