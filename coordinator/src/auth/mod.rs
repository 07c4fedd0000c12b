//! Who is calling and what they may see: bearer tokens ([`token`]), their documents in etcd
//! ([`store`]), and the caller's scope ([`Caller`]).
//!
//! Scope rules: a token sees the namespaces it lists (`*` = all); an agent token sees one
//! cluster. Anything outside the scope answers exactly like a missing cluster (404), never
//! 403, so tenants cannot discover each other's clusters. Inside the scope, a role that is too
//! low answers 403.

pub mod store;
pub mod token;

use axum::http::{HeaderMap, header};
use cluster::wire::{Timestamp, TokenCluster, TokenDoc, TokenRole};

use crate::problem::Problem;
use crate::state::AppState;

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Token id (`admin` for the bootstrap admin token); recorded in the audit log.
    pub id: String,
    /// Token name, for `requested_by` fields of the requests it writes.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// Namespaces it sees; `*` = all.
    pub namespaces: Vec<String>,
    /// Agent tokens: the one cluster they see.
    pub cluster: Option<TokenCluster>,
    /// When the token expires (or the earliest expiry up its chain of issuers); a token it
    /// issues expires no later.
    pub expires_at: Option<Timestamp>,
}

impl Caller {
    /// The bootstrap admin: every namespace.
    pub fn admin() -> Self {
        Self {
            id: token::ADMIN_ID.to_owned(),
            name: token::ADMIN_ID.to_owned(),
            role: TokenRole::Admin,
            namespaces: vec!["*".to_owned()],
            cluster: None,
            expires_at: None,
        }
    }

    fn from_doc(d: &TokenDoc) -> Self {
        Self {
            id: d.id.clone(),
            name: d.name.clone(),
            role: d.role,
            namespaces: d.namespaces.clone(),
            cluster: d.cluster.clone(),
            expires_at: d.expires_at,
        }
    }

    /// Whether every namespace is visible (and no cluster restriction applies).
    pub fn sees_all(&self) -> bool {
        self.cluster.is_none() && self.namespaces.iter().any(|n| n == "*")
    }

    /// Whether anything in namespace `ns` is visible.
    pub fn sees_namespace(&self, ns: &str) -> bool {
        match &self.cluster {
            Some(c) => c.namespace == ns,
            None => self.namespaces.iter().any(|n| n == "*" || n == ns),
        }
    }

    /// Whether the cluster `ns/project/cluster` is visible.
    pub fn sees_cluster(&self, ns: &str, project: &str, cluster: &str) -> bool {
        match &self.cluster {
            Some(c) => c.namespace == ns && c.project == project && c.cluster == cluster,
            None => self.sees_namespace(ns),
        }
    }

    /// Whether a token scoped to `namespaces` would see nothing this caller does not.
    pub fn covers(&self, namespaces: &[String]) -> bool {
        self.cluster.is_none()
            && (self.sees_all()
                || namespaces
                    .iter()
                    .all(|n| n != "*" && self.sees_namespace(n)))
    }

    /// Whether the role is at least `need`.
    pub fn has(&self, need: TokenRole) -> bool {
        self.role.rank() >= need.rank()
    }
}

/// A failed authentication: the problem to answer and what is known of the token, for the
/// audit record.
#[derive(Debug)]
pub struct AuthError {
    /// 401 (or 503 when etcd could not be asked).
    pub problem: Box<Problem>,
    /// The token id, when the token parsed.
    pub token_id: Option<String>,
    /// The token's role, when its document was found.
    pub role: Option<TokenRole>,
}

impl AuthError {
    fn new(code: &str, detail: &str, token_id: Option<&str>, role: Option<TokenRole>) -> Self {
        Self {
            problem: Box::new(Problem::unauthenticated(code, detail.to_owned())),
            token_id: token_id.map(str::to_owned),
            role,
        }
    }
}

/// The bearer token of a request, if there is an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::new(
            "token_missing",
            "no token: send `Authorization: Bearer <token>` (autopilotctl reads it from \
             --token, AUTOPILOT_TOKEN or its config file)",
            None,
            None,
        ));
    };
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` work too.
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AuthError::new(
                "token_invalid",
                "the Authorization header must be `Bearer <token>`",
                None,
                None,
            )
        })
}

/// Authenticates a request: the admin token, or an issued token that is known, matches its
/// hash, is not revoked and has not expired (checked on every request; see [`store`] for
/// how fresh the answer is).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, AuthError> {
    let presented = bearer(headers)?;
    if let Some(admin_hash) = state.admin_hash()
        && token::constant_time_eq(token::hash(presented).as_bytes(), admin_hash.as_bytes())
    {
        return Ok(Caller::admin());
    }
    let invalid = |id: Option<&str>, role| {
        AuthError::new(
            "token_invalid",
            "the token is not valid: ask an admin for a token (`autopilotctl token create`)",
            id,
            role,
        )
    };
    let Some(p) = token::parse(presented) else {
        return Err(invalid(None, None));
    };
    let doc = match state.tokens().get(p.id).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return Err(invalid(Some(p.id), None)),
        Err(e) => {
            return Err(AuthError {
                problem: Box::new(Problem::store(&e)),
                token_id: Some(p.id.to_owned()),
                role: None,
            });
        }
    };
    if !token::verify(p.secret, &doc.hash) {
        return Err(invalid(Some(p.id), None));
    }
    if doc.revoked_at.is_some() {
        return Err(AuthError::new(
            "token_revoked",
            "the token was revoked: ask an admin for a new one",
            Some(p.id),
            Some(doc.role),
        ));
    }
    if doc
        .expires_at
        .is_some_and(|t| t <= cluster::wire::Timestamp::now())
    {
        return Err(AuthError::new(
            "token_expired",
            "the token has expired: ask an admin for a new one",
            Some(p.id),
            Some(doc.role),
        ));
    }
    let mut caller = Caller::from_doc(&doc);
    caller.expires_at = lineage(state, &doc, caller.expires_at).await?;
    Ok(caller)
}

/// How many issuers up a token's chain are checked (tokens issued by tokens issued by …).
const MAX_LINEAGE: usize = 16;

/// A token lives only while every token up its chain of issuers (`created_by`) does: a
/// revoked, expired or deleted issuer takes its descendants with it. Returns the earliest
/// expiry along the chain.
async fn lineage(
    state: &AppState,
    doc: &TokenDoc,
    mut expires_at: Option<Timestamp>,
) -> Result<Option<Timestamp>, AuthError> {
    let now = Timestamp::now();
    let mut parent = doc.created_by.clone();
    for _ in 0..MAX_LINEAGE {
        if parent == token::ADMIN_ID {
            return Ok(expires_at);
        }
        let dead = |why: &str| {
            AuthError::new(
                "token_revoked",
                &format!(
                    "the token that issued this one {why}, which ends this one too: ask an admin for a new one"
                ),
                Some(&doc.id),
                Some(doc.role),
            )
        };
        let p = match state.tokens().get(&parent).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(dead("no longer exists")),
            Err(e) => {
                return Err(AuthError {
                    problem: Box::new(Problem::store(&e)),
                    token_id: Some(doc.id.clone()),
                    role: None,
                });
            }
        };
        if p.revoked_at.is_some() {
            return Err(dead("was revoked"));
        }
        if p.expires_at.is_some_and(|t| t <= now) {
            return Err(dead("has expired"));
        }
        expires_at = match (expires_at, p.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        parent = p.created_by;
    }
    Ok(expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(namespaces: &[&str], cluster: Option<(&str, &str, &str)>) -> Caller {
        Caller {
            id: "t".into(),
            name: "t".into(),
            role: TokenRole::Viewer,
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            cluster: cluster.map(|(n, p, c)| TokenCluster {
                namespace: n.into(),
                project: p.into(),
                cluster: c.into(),
            }),
            expires_at: None,
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc"] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("header"));
            assert_eq!(bearer(&h).ok(), Some("abc"), "{v}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert!(bearer(&h).is_err());
    }

    #[test]
    fn scopes() {
        let all = caller(&["*"], None);
        assert!(all.sees_all() && all.sees_cluster("a", "p", "c"));
        assert!(all.covers(&["*".into()]));
        let a = caller(&["a"], None);
        assert!(a.sees_cluster("a", "p", "c") && !a.sees_namespace("b"));
        assert!(a.covers(&["a".into()]));
        assert!(!a.covers(&["*".into()]) && !a.covers(&["a".into(), "b".into()]));
        let agent = caller(&["a"], Some(("a", "p", "c")));
        assert!(agent.sees_cluster("a", "p", "c"));
        assert!(!agent.sees_cluster("a", "p", "d"));
        assert!(!agent.covers(&["a".into()]));
    }
}
