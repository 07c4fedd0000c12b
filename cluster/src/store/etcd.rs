//! [`EtcdStore`]: the [`Store`] trait on etcd v3 (etcd-client 0.21).
//!
//! Every request runs under a short timeout of our own (`request_timeout`) on top of the
//! gRPC one: with every endpoint down the balanced channel would otherwise wait for a
//! ready endpoint for ever. The gRPC channel sends HTTP/2 keep-alive pings so a silently
//! dead connection (and the watch on it) fails within about two ping intervals.
//!
//! TLS (`https://` endpoints) is rustls on aws-lc-rs (etcd-client's `tls-aws-lc`; never
//! `ring`, see dependencies.md gotcha 1). Nothing needs installing: tonic builds its rustls
//! config with the process-wide default provider when one is installed and with
//! `aws_lc_rs::default_provider()` otherwise. A failed handshake (unknown CA, no or wrong
//! client certificate) fails the request as "etcd unavailable" with the TLS error as source;
//! a missing client certificate shows only as a closed connection, so a hint says so.
//!
//! With etcd authentication (`username`), [`EtcdStore::connect`] logs in once; wrong
//! credentials fail it, but an etcd that is down or slow to answer (etcd hashes the password
//! with bcrypt) does not: the store then logs in before its next request, under that
//! request's bound, so an agent with auth starts and rides out an etcd outage like one
//! without. Expired tokens are renewed by etcd-client (`with_auto_token_refresh`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use super::error::Cause;
use super::metrics;
use super::txn;
use super::{
    Claim, Entry, LeaseId, Revision, Store, StoreError, Watch, WatchBroken, WatchEvent,
    WatchMessage,
};
use crate::secret::{EtcdTls, Secret};

mod range;
mod space;
pub use range::RangeQuery;
pub use space::Space;

/// gRPC status codes we branch on (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
mod code {
    pub const CANCELLED: i32 = 1;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNKNOWN: i32 = 2;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// How to reach etcd. `Debug` never shows the password or the TLS key (see [`Secret`]).
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `http://host:port` (or `https://` with TLS) of every member; the client balances
    /// over them.
    pub endpoints: Vec<String>,
    /// etcd user and password, when etcd auth is on.
    pub user: Option<(String, Secret)>,
    /// CA certificate and client identity for `https://` endpoints; `None` with `https://`
    /// endpoints trusts no CA (no system roots are loaded).
    pub tls: Option<EtcdTls>,
    /// Bound on every request; keep it well below TTL/3 so a dead etcd is noticed in time.
    pub request_timeout: Duration,
    /// Bound on establishing a TCP connection to one member.
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval on the channel (and the same again as ping timeout). Must stay
    /// above etcd's `--grpc-keepalive-min-time` (5 s by default): etcd answers more frequent
    /// pings with GOAWAY `too_many_pings`, which breaks every stream on the connection
    /// (watches included). Dead members are noticed by the request timeouts instead.
    pub keep_alive_interval: Duration,
}

impl EtcdOptions {
    /// Defaults for `endpoints`: 1 s requests, 500 ms connect, 10 s pings, no auth.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            user: None,
            tls: None,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
            keep_alive_interval: Duration::from_secs(10),
        }
    }

    /// etcd-client's TLS options: the CA certificate(s), the client identity and a bound on
    /// the handshake. Also used for `https://` endpoints without a `tls` section (then it
    /// trusts no CA).
    fn tls_options(&self) -> TlsOptions {
        let mut t = TlsOptions::new().timeout(self.connect_timeout);
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(Certificate::from_pem(&ca.pem));
            }
            if let Some(id) = &tls.identity {
                t = t.identity(Identity::from_pem(&id.cert.pem, id.key.expose()));
            }
        }
        t
    }
}

/// The etcd implementation of [`Store`]. Cheap to clone (the gRPC channel is shared).
#[derive(Clone)]
pub struct EtcdStore {
    /// The client; cloned per call because its methods take `&mut self`.
    client: Client,
    /// Per-request bound.
    request_timeout: Duration,
    /// Added to transport failures: set when TLS is on without a client certificate.
    hint: Option<&'static str>,
    /// etcd credentials, shared by the store's clones; `None` without auth.
    login: Option<Arc<Login>>,
}

/// An etcd user the store logs in as, before its first request.
struct Login {
    /// User name and password.
    user: String,
    /// The password; shown only by its origin.
    password: Secret,
    /// Logged in (etcd-client holds the token and renews it from here on).
    done: AtomicBool,
    /// One login at a time.
    lock: tokio::sync::Mutex<()>,
}

/// With TLS 1.3 etcd (`--client-cert-auth`) rejects a missing client certificate only after
/// the handshake, so the client sees a closed connection or a broken pipe and nothing more.
const NO_CLIENT_CERT: &str = "the connection was closed after the TLS handshake; no client \
     certificate is configured (store.etcd.tls cert_file and key_file), which etcd requires \
     with --client-cert-auth";

/// A store error's cause with a hint in front of it.
#[derive(Debug, thiserror::Error)]
#[error("{hint}")]
struct Hinted {
    hint: &'static str,
    #[source]
    source: Cause,
}

/// Puts `hint` in front of the cause of an `Unavailable` error whose connection was
/// established (so not "refused", "unknown CA" and the like, which say enough).
fn with_hint(err: StoreError, hint: Option<&'static str>) -> StoreError {
    let Some(hint) = hint else { return err };
    match err {
        StoreError::Unavailable { op, source }
            if !crate::error_chain(&*source).contains("ConnectError") =>
        {
            StoreError::Unavailable {
                op,
                source: Box::new(Hinted { hint, source }),
            }
        }
        other => other,
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Builds the client. Without auth this does not contact etcd (connections are made
    /// lazily), so an agent can start while etcd is down; with auth it authenticates once.
    pub async fn connect(opts: &EtcdOptions) -> Result<Self, StoreError> {
        let op = || format!("connect to etcd at {}", opts.endpoints.join(","));
        let mut co = ConnectOptions::new()
            .with_timeout(opts.request_timeout)
            .with_connect_timeout(opts.connect_timeout)
            .with_keep_alive(opts.keep_alive_interval, opts.keep_alive_interval)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        // With `tls` and an `http://` endpoint etcd-client refuses to connect (InvalidArgs).
        if opts.tls.is_some() || opts.endpoints.iter().any(|e| e.starts_with("https://")) {
            co = co.with_tls(opts.tls_options());
        }
        // Credentials are given after the connect (`Login`): with them etcd-client would log
        // in inside `connect` and give no client at all while etcd is down.
        if opts.user.is_some() {
            co = co.with_auto_token_refresh(true);
        }
        let hint = (opts.endpoints.iter().any(|e| e.starts_with("https://"))
            && opts.tls.as_ref().is_none_or(|t| t.identity.is_none()))
        .then_some(NO_CLIENT_CERT);
        let fut = Client::connect(&opts.endpoints, Some(co));
        let client = match tokio::time::timeout(opts.request_timeout, fut).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(with_hint(classify(op(), e, None), hint)),
            Err(_) => {
                return Err(StoreError::Timeout {
                    op: op(),
                    after: opts.request_timeout,
                });
            }
        };
        let store = Self {
            client,
            request_timeout: opts.request_timeout,
            hint,
            login: opts.user.as_ref().map(|(user, password)| {
                Arc::new(Login {
                    user: user.clone(),
                    password: password.clone(),
                    done: AtomicBool::new(false),
                    lock: tokio::sync::Mutex::new(()),
                })
            }),
        };
        match store.log_in().await {
            Err(e) if e.is_retryable() => {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    "cannot log in to etcd yet; logging in again before the next request"
                );
                Ok(store)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(store),
        }
    }

    /// Logs in as the configured user unless done (or no user is configured), within the
    /// request timeout. Wrong credentials are `PermissionDenied`; an unreachable or slow
    /// etcd is retryable.
    async fn log_in(&self) -> Result<(), StoreError> {
        let Some(login) = &self.login else {
            return Ok(());
        };
        if login.done.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = login.lock.lock().await;
        if login.done.load(Ordering::Acquire) {
            return Ok(());
        }
        let op = || format!("log in to etcd as {}", login.user);
        let creds = Some((login.user.clone(), login.password.expose().to_owned()));
        let mut client = self.client.clone();
        match tokio::time::timeout(self.request_timeout, client.update_user(creds)).await {
            Ok(Ok(())) => {
                login.done.store(true, Ordering::Release);
                Ok(())
            }
            Ok(Err(e)) => Err(with_hint(classify(op(), e, None), self.hint)),
            Err(_) => Err(StoreError::Timeout {
                op: op(),
                after: self.request_timeout,
            }),
        }
    }

    /// Runs one request under the timeout, classifies its error and counts it.
    ///
    /// The client balances requests over all endpoints and does not skip a member that is
    /// down: a request routed there fails at once with a connect error. Such a request never
    /// reached etcd, so it is sent again (the balancer picks anew) until it gets through or
    /// the timeout is spent — one dead member of three must not look like an etcd outage.
    async fn call<T, F, Fut>(
        &self,
        label: &'static str,
        op: impl Fn() -> String,
        lease: Option<LeaseId>,
        mut attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        if let Err(e) = self.log_in().await {
            metrics::request(label, e.outcome_label());
            return Err(e);
        }
        let deadline = Instant::now() + self.request_timeout;
        let res = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, attempt()).await {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(e))
                    if (never_sent(&e) || idempotent(label) && retryable(&e))
                        && Instant::now() + RETRY_PAUSE < deadline =>
                {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Err(e)) => break Err(with_hint(classify(op(), e, lease), self.hint)),
                Err(_) => {
                    break Err(StoreError::Timeout {
                        op: op(),
                        after: self.request_timeout,
                    });
                }
            }
        };
        metrics::request(
            label,
            match &res {
                Ok(_) => "ok",
                Err(e) => e.outcome_label(),
            },
        );
        res
    }
}

/// Pause between attempts of a request that could not reach a member.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The request failed before it reached any etcd member (the connection could not be
/// made), so sending it again cannot apply it twice.
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_ascii_lowercase(),
        etcd_client::Error::TransportError(t) => t.to_string().to_ascii_lowercase(),
        _ => return false,
    };
    text.contains("tcp connect error") || text.contains("connection refused")
}

/// Requests that change nothing when applied twice may be sent again after any transport
/// failure (a member died mid-request), not only when they never left.
fn idempotent(label: &str) -> bool {
    matches!(
        label,
        "keep_alive" | "get" | "get_prefix" | "watch" | "revoke"
    )
}

/// The store no longer knows the lease.
fn lease_gone(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::LeaseKeepAliveError(m) => m.contains("lease not found"),
        E::GRpcStatus(s) => {
            i32::from(s.code()) == code::NOT_FOUND && s.message().contains("lease not found")
        }
        _ => false,
    }
}

/// A failure of the connection or of the member, which another member (or a later
/// attempt) may not have.
fn retryable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) => true,
        // The watch/keep-alive request channel closed: the stream is gone.
        E::LeaseKeepAliveError(_) => !lease_gone(e),
        E::GRpcStatus(s) => {
            let c = i32::from(s.code());
            matches!(
                c,
                code::UNAVAILABLE | code::DEADLINE_EXCEEDED | code::CANCELLED
            ) || s.message().contains("no leader")
                || (matches!(c, code::UNKNOWN | code::INTERNAL) && transport_like(s.message()))
        }
        _ => false,
    }
}

/// Maps an etcd-client error to our terms.
fn classify(op: String, e: etcd_client::Error, lease: Option<LeaseId>) -> StoreError {
    let denied = matches!(&e, etcd_client::Error::GRpcStatus(s)
        if matches!(i32::from(s.code()), code::PERMISSION_DENIED | code::UNAUTHENTICATED));
    if lease_gone(&e) {
        StoreError::LeaseExpired {
            op,
            lease: lease.unwrap_or(LeaseId(0)),
        }
    } else if retryable(&e) {
        StoreError::Unavailable {
            op,
            source: Box::new(e),
        }
    } else if denied {
        StoreError::PermissionDenied {
            op,
            source: Box::new(e),
        }
    } else {
        StoreError::Other {
            op,
            source: Box::new(e),
        }
    }
}

/// tonic reports a connection that died mid-request as `Unknown`/`Internal` with the
/// transport's message; those are retryable like `Unavailable`.
fn transport_like(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "transport",
        "connect",
        "h2 protocol",
        "broken pipe",
        "reset",
        "closed",
        "eof",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn key_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The entries of a range read and the revision it was read at.
fn entries_of(resp: &mut etcd_client::GetResponse) -> (Vec<Entry>, Revision) {
    let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
    let entries = resp
        .take_kvs()
        .into_iter()
        .map(|kv| Entry {
            key: key_string(kv.key()),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        })
        .collect();
    (entries, revision)
}

fn other(op: String, msg: &str) -> StoreError {
    let source: Cause = msg.to_owned().into();
    StoreError::Other { op, source }
}

impl Store for EtcdStore {
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = self
            .call(
                "grant_lease",
                || format!("grant lease with TTL {secs}s"),
                None,
                || {
                    let mut c = self.client.clone();
                    async move { c.lease_grant(secs, None).await }
                },
            )
            .await?;
        if !resp.error().is_empty() {
            return Err(other(format!("grant lease with TTL {secs}s"), resp.error()));
        }
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let ttl = self
            .call(
                "keep_alive",
                || format!("renew lease {lease}"),
                Some(lease),
                || {
                    let mut c = self.client.lease_client();
                    async move {
                        let (mut keeper, mut stream) = c.keep_alive(lease.0).await?;
                        // `keep_alive` consumed the first answer (it fails when the lease is gone)
                        // without telling its TTL; a second ping on the open stream does.
                        keeper.keep_alive().await?;
                        match stream.message().await? {
                            Some(r) => Ok(r.ttl()),
                            None => Err(etcd_client::Error::LeaseKeepAliveError(
                                "keep-alive stream closed".into(),
                            )),
                        }
                    }
                },
            )
            .await;
        metrics::keepalive_duration(started.elapsed());
        let ttl = ttl?;
        if ttl <= 0 {
            return Err(StoreError::LeaseExpired {
                op: format!("renew lease {lease}"),
                lease,
            });
        }
        Ok(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
    }

    async fn lease_keys(&self, lease: LeaseId) -> Result<Vec<String>, StoreError> {
        let resp = self
            .call(
                "lease_keys",
                || format!("list the keys of lease {lease}"),
                Some(lease),
                || {
                    let mut c = self.client.clone();
                    async move {
                        c.lease_time_to_live(
                            lease.0,
                            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
                        )
                        .await
                    }
                },
            )
            .await?;
        // etcd answers an unknown lease with TTL -1 rather than an error.
        if resp.ttl() < 0 {
            return Err(StoreError::LeaseExpired {
                op: format!("list the keys of lease {lease}"),
                lease,
            });
        }
        Ok(resp
            .keys()
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let res = self
            .call(
                "revoke",
                || format!("revoke lease {lease}"),
                Some(lease),
                || {
                    let mut c = self.client.clone();
                    async move { c.lease_revoke(lease.0).await }
                },
            )
            .await;
        match res {
            Ok(_) | Err(StoreError::LeaseExpired { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        let resp = self
            .call(
                "put",
                || format!("put key {key}"),
                lease,
                || {
                    let mut c = self.client.clone();
                    let opts = lease.map(|l| PutOptions::new().with_lease(l.0));
                    let (k, v) = (key.to_owned(), value.clone());
                    async move { c.put(k, v, opts).await }
                },
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        let mut resp = self
            .call(
                "get",
                || format!("get key {key}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let k = key.to_owned();
                    async move { c.get(k, None).await }
                },
            )
            .await?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<Entry>, Revision), StoreError> {
        let mut resp = self
            .call(
                "get_prefix",
                || format!("list keys under {prefix}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let k = prefix.to_owned();
                    async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
                },
            )
            .await?;
        Ok(entries_of(&mut resp))
    }

    async fn create_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "create_if_absent",
                || format!("create key {key}"),
                lease,
                || {
                    let mut c = self.client.clone();
                    let opts = lease.map(|l| PutOptions::new().with_lease(l.0));
                    let txn = Txn::new()
                        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, value.clone(), opts)]);
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn delete_if_revision(
        &self,
        key: &str,
        mod_revision: Revision,
    ) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "delete_if_revision",
                || format!("delete key {key} at revision {mod_revision}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let txn = Txn::new()
                        .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
                        .and_then([TxnOp::delete(key, None)]);
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn put_if_revision(
        &self,
        key: &str,
        value: Vec<u8>,
        mod_revision: Revision,
    ) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "put_if_revision",
                || format!("write key {key} at revision {mod_revision}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let txn = Txn::new()
                        .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
                        .and_then([TxnOp::put(key, value.clone(), None)]);
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn delete_if_lease(&self, key: &str, lease: LeaseId) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "delete_if_lease",
                || format!("delete key {key} if bound to lease {lease}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let txn = txn::delete_if_lease(key, lease);
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn put_if_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "put_if_lease",
                || format!("update key {key} if bound to lease {lease}"),
                Some(lease),
                || {
                    let mut c = self.client.clone();
                    let txn = txn::put_if_lease(key, value.clone(), lease);
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn put_if_holder(
        &self,
        guard: &str,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "put_if_holder",
                || format!("put key {key} if {guard} is bound to lease {lease}"),
                Some(lease),
                || {
                    let mut c = self.client.clone();
                    let txn = txn::put_if_holder(guard, key, value.clone(), lease);
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn claim_primary(&self, claim: Claim) -> Result<bool, StoreError> {
        let lease = claim.lease;
        let op = format!("claim primary key {} with lease {lease}", claim.primary_key);
        let resp = self
            .call(
                "claim_primary",
                || op.clone(),
                Some(lease),
                || {
                    let mut c = self.client.clone();
                    let txn = txn::claim(claim.clone());
                    async move { c.txn(txn).await }
                },
            )
            .await?;
        Ok(resp.succeeded())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let resp = self
            .call(
                "delete",
                || format!("delete key {key}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let k = key.to_owned();
                    async move { c.delete(k, None).await }
                },
            )
            .await?;
        Ok(resp.deleted() > 0)
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: Revision,
    ) -> Result<Watch, StoreError> {
        let op = format!("watch keys under {prefix} from revision {start_revision}");
        let mut stream = self
            .call(
                "watch",
                || op.clone(),
                None,
                || {
                    let mut c = self.client.clone();
                    let k = prefix.to_owned();
                    let opts = WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(start_revision);
                    async move { c.watch(k, Some(opts)).await }
                },
            )
            .await?;
        let (tx, rx) = mpsc::channel(64);
        // Not a named task: `tokio::task::Builder` needs `tokio_unstable`.
        let task = tokio::spawn(async move {
            let broken = loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            break if resp.compact_revision() > 0 {
                                WatchBroken::Compacted {
                                    compact_revision: resp.compact_revision(),
                                }
                            } else {
                                WatchBroken::Cancelled {
                                    reason: resp.cancel_reason().to_owned(),
                                }
                            };
                        }
                        let events: Vec<WatchEvent> = resp
                            .events()
                            .iter()
                            .filter_map(|ev| {
                                let kv = ev.kv()?;
                                let key = key_string(kv.key());
                                let mod_revision = kv.mod_revision();
                                Some(match ev.event_type() {
                                    etcd_client::EventType::Put => WatchEvent::Put {
                                        key,
                                        value: kv.value().to_vec(),
                                        mod_revision,
                                    },
                                    etcd_client::EventType::Delete => {
                                        WatchEvent::Delete { key, mod_revision }
                                    }
                                })
                            })
                            .collect();
                        if !events.is_empty()
                            && tx.send(WatchMessage::Events(events)).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => break WatchBroken::Closed,
                    Err(e) => break WatchBroken::Failed(classify(op.clone(), e, None)),
                }
            };
            metrics::request("watch_stream", "broken");
            let _ = tx.send(WatchMessage::Broken(broken)).await;
        });
        Ok(Watch::new(rx, Some(task)))
    }
}
