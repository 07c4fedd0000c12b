//! Proof that a clone-stream request comes from a node of the cluster, without sending a
//! password: an HMAC-SHA256 keyed by the replication account's password (which every node
//! has) over the cluster, the requesting node, a timestamp and a nonce.
//!
//! `Authorization: Autopilot-Clone node=<id>, ts=<unix secs>, nonce=<hex>, mac=<hex>` with
//! `mac = HMAC(key, "autopilot-clone\n<cluster>\n<node>\n<ts>\n<nonce>")`. The server accepts
//! a timestamp within [`MAX_SKEW`] of its clock and a nonce it has not seen within
//! [`NONCE_MEMORY`]; the comparison is constant-time.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The authorization scheme name.
pub const SCHEME: &str = "Autopilot-Clone";
/// Largest accepted difference between the request's timestamp and the server's clock.
pub const MAX_SKEW: u64 = 60;
/// How long a nonce is remembered (twice the skew: a replay within the window is refused).
pub const NONCE_MEMORY: u64 = 2 * MAX_SKEW;
/// Most nonces remembered; beyond it requests are refused until old ones expire.
const MAX_NONCES: usize = 4096;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The MAC over one request; `None` cannot happen (HMAC takes keys of any length).
fn mac(key: &str, cluster: &str, node: &str, ts: u64, nonce: &str) -> Option<HmacSha256> {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes()).ok()?;
    m.update(format!("autopilot-clone\n{cluster}\n{node}\n{ts}\n{nonce}").as_bytes());
    Some(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The `Authorization` header value for `node` at `ts` with a fresh random nonce.
pub fn header(key: &str, cluster: &str, node: &str, ts: u64) -> Result<String, String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| format!("no random nonce from the OS: {e}"))?;
    let nonce = hex(&raw);
    let tag = mac(key, cluster, node, ts, &nonce).ok_or("the HMAC key was refused")?;
    let tag = hex(&tag.finalize().into_bytes());
    Ok(format!(
        "{SCHEME} node={node}, ts={ts}, nonce={nonce}, mac={tag}"
    ))
}

/// The fields of a parsed header.
#[derive(Debug, PartialEq, Eq)]
struct Claim<'a> {
    node: &'a str,
    ts: u64,
    nonce: &'a str,
    mac: Vec<u8>,
}

fn parse(value: &str) -> Option<Claim<'_>> {
    let rest = value.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let (mut node, mut ts, mut nonce, mut tag) = (None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let slot = match k {
            "node" => &mut node,
            "ts" => &mut ts,
            "nonce" => &mut nonce,
            "mac" => &mut tag,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let nonce = nonce?;
    if nonce.len() < 16 || nonce.len() > 128 || unhex(nonce).is_none() {
        return None;
    }
    Some(Claim {
        node: node.filter(|n| !n.is_empty() && n.len() <= 253)?,
        ts: ts?.parse().ok()?,
        nonce,
        mac: unhex(tag?)?,
    })
}

/// Checks request proofs and remembers the nonces it accepted.
#[derive(Debug, Default)]
pub struct Verifier {
    /// (accepted at, nonce), oldest first.
    seen: Mutex<VecDeque<(u64, String)>>,
}

impl Verifier {
    /// The requesting node's id when `value` is a valid, fresh, unreplayed proof for
    /// `cluster` under `key` at server time `now`; `None` otherwise (no reason given: the
    /// caller answers 401 without detail).
    pub fn verify(&self, value: &str, key: &str, cluster: &str, now: u64) -> Option<String> {
        let claim = parse(value)?;
        if claim.ts.abs_diff(now) > MAX_SKEW {
            return None;
        }
        mac(key, cluster, claim.node, claim.ts, claim.nonce)?
            .verify_slice(&claim.mac)
            .ok()?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while seen
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > NONCE_MEMORY)
        {
            seen.pop_front();
        }
        if seen.len() >= MAX_NONCES || seen.iter().any(|(_, n)| n == claim.nonce) {
            return None;
        }
        seen.push_back((now, claim.nonce.to_owned()));
        Some(claim.node.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_proof_is_accepted_once() {
        let v = Verifier::default();
        let h = header("secret", "c1", "n2", 1000).expect("nonce");
        assert_eq!(v.verify(&h, "secret", "c1", 1030).as_deref(), Some("n2"));
        assert_eq!(v.verify(&h, "secret", "c1", 1031), None, "replayed");
    }

    #[test]
    fn wrong_key_cluster_time_or_shape_is_refused() {
        let v = Verifier::default();
        let h = header("secret", "c1", "n2", 1000).expect("nonce");
        assert_eq!(v.verify(&h, "other", "c1", 1000), None);
        assert_eq!(v.verify(&h, "secret", "c2", 1000), None);
        assert_eq!(v.verify(&h, "secret", "c1", 1061), None);
        assert_eq!(v.verify(&h, "secret", "c1", 939), None);
        let forged = h.replace("node=n2", "node=n3");
        assert_eq!(v.verify(&forged, "secret", "c1", 1000), None);
        for bad in [
            "",
            "Basic abc",
            "Autopilot-Clone node=n2",
            "Autopilot-Clone ,,,,",
        ] {
            assert_eq!(v.verify(bad, "secret", "c1", 1000), None, "{bad:?}");
        }
        assert_eq!(v.verify(&h, "secret", "c1", 1000).as_deref(), Some("n2"));
    }

    #[test]
    fn nonces_are_forgotten_after_the_memory() {
        let v = Verifier::default();
        let h = header("k", "c", "n", 1000).expect("nonce");
        assert!(v.verify(&h, "k", "c", 1000).is_some());
        // The timestamp is stale by then anyway: the window covers every acceptable replay.
        assert!(v.verify(&h, "k", "c", 1000 + NONCE_MEMORY + 1).is_none());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC*") {
            let _ = Verifier::default().verify(&s, "k", "c", 0);
        }
    }
}
