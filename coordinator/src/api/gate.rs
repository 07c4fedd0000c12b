//! The gate every `/v1` request passes: the client address's failure budget (spent: 429 at
//! once, nothing looked up or written), authenticate, rate-limit, check the scope (outside
//! it: 404, like a missing cluster), check the role (inside the scope but too low: 403). Every
//! denial spends one of the address's failure budget and goes to the audit log (aggregated
//! per address, see `audit::denials`); mutating handlers record their outcome with
//! [`Gate::finish`].

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode};
use cluster::wire::{AuditOutcome, TokenRole};

use crate::audit::Entry;
use crate::auth::{self, Caller};
use crate::problem::Problem;
use crate::state::AppState;

/// What a request needs.
pub struct Need<'a> {
    /// The audit action, e.g. `cluster.switchover`.
    pub action: &'static str,
    /// The audit target, e.g. `ns/project/cluster`.
    pub target: String,
    /// The least role.
    pub role: TokenRole,
    /// The cluster the request is about, if any (scope check).
    pub cluster: Option<(&'a str, &'a str, &'a str)>,
}

/// An admitted request: the caller and what to audit.
pub struct Gate {
    /// Who is calling.
    pub caller: Caller,
    /// Audit action.
    action: &'static str,
    /// Audit target.
    target: String,
    /// Client address.
    client: SocketAddr,
    /// For the audit log.
    state: AppState,
}

/// [`admit`] for a request about one cluster: the cluster is the audit target and the scope.
pub async fn cluster(
    st: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    action: &'static str,
    role: TokenRole,
    p: &crate::view::ClusterPath,
) -> Result<Gate, Problem> {
    admit(
        st,
        headers,
        client,
        Need {
            action,
            target: p.target(),
            role,
            cluster: Some(p.triple()),
        },
    )
    .await
}

/// Admits the request or answers with a problem (audited as denied).
pub async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    need: Need<'_>,
) -> Result<Gate, Problem> {
    let ip = client.ip().to_string();
    if let Err(wait) = state.failures().peek(&ip) {
        let p = Problem::client_throttled(wait);
        metrics::counter!("autopilot_coordinator_denied_total", "code" => p.code.clone())
            .increment(1);
        state.auditor().count_throttled(
            Entry {
                caller: None,
                token: None,
                action: need.action,
                target: &need.target,
                client,
            },
            p.status,
            &p.code,
        );
        return Err(p);
    }
    let deny = |caller: Option<Caller>, token: Option<(String, Option<TokenRole>)>, p: Problem| {
        let state = state.clone();
        let target = need.target.clone();
        let ip = ip.clone();
        async move {
            // A 503 (etcd unreachable) is not the client's failure.
            if p.status != 503 {
                let _ = state.failures().check(&ip);
            }
            metrics::counter!("autopilot_coordinator_denied_total", "code" => p.code.clone())
                .increment(1);
            state
                .auditor()
                .record(
                    Entry {
                        caller: caller.as_ref(),
                        token,
                        action: need.action,
                        target: &target,
                        client,
                    },
                    AuditOutcome::Denied,
                    p.status,
                    Some(p.code.clone()),
                    None,
                )
                .await;
            p
        }
    };
    let caller = match auth::authenticate(state, headers).await {
        Ok(c) => c,
        Err(e) => {
            let token = e.token_id.map(|id| (id, e.role));
            return Err(deny(None, token, *e.problem).await);
        }
    };
    if let Err(wait) = state.limiter().check(&caller.id) {
        return Err(deny(Some(caller), None, Problem::rate_limited(wait)).await);
    }
    if let Some((ns, project, cluster)) = need.cluster
        && !caller.sees_cluster(ns, project, cluster)
    {
        let p = Problem::cluster_not_found(ns, project, cluster);
        return Err(deny(Some(caller), None, p).await);
    }
    if !caller.has(need.role) {
        let p = Problem::forbidden(format!(
            "this needs a token with the {} role; this token has the {} role: ask an admin",
            need.role.as_str(),
            caller.role.as_str()
        ));
        return Err(deny(Some(caller), None, p).await);
    }
    Ok(Gate {
        caller,
        action: need.action,
        target: need.target,
        client,
        state: state.clone(),
    })
}

impl Gate {
    /// Records how a mutating call ended and passes the result through.
    pub async fn finish<T>(
        &self,
        result: Result<(StatusCode, T), Problem>,
        detail: Option<String>,
    ) -> Result<(StatusCode, T), Problem> {
        let (outcome, status, code) = match &result {
            Ok((s, _)) => (AuditOutcome::Ok, s.as_u16(), None),
            Err(p) => (AuditOutcome::Failed, p.status, Some(p.code.clone())),
        };
        self.state
            .auditor()
            .record(
                Entry {
                    caller: Some(&self.caller),
                    token: None,
                    action: self.action,
                    target: &self.target,
                    client: self.client,
                },
                outcome,
                status,
                code,
                detail,
            )
            .await;
        result
    }
}
