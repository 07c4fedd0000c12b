//! The etcd contract between agents, the coordinator and anyone watching the keys.
//!
//! - [`wire`]: the key layout and the JSON documents — the public contract.
//! - `store` (feature `store`, on by default): the `Store` trait and its etcd implementation.
//! - `snapshot` (feature `store`): one consistent read of a cluster's keys, every document
//!   decoded once.
//! - [`secret`]: secrets and TLS material that never show in logs or errors.
//! - [`signature`]: the `Autopilot-Signature` header of webhook deliveries (the coordinator's
//!   and the agents' backup notifications).

pub mod secret;
pub mod signature;
#[cfg(feature = "store")]
pub mod snapshot;
#[cfg(feature = "store")]
pub mod store;
pub mod wire;

/// `err` and its sources, joined with `: `, for logs and problem details.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
