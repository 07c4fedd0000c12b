//! `Autopilot-Signature: t=<unix seconds>,v1=<hex>`: HMAC-SHA256, keyed by the webhook's
//! secret, over `"<t>.<body>"` (the decimal timestamp, a dot, the exact body bytes).
//!
//! A receiver recomputes the HMAC over the raw body it received (before any JSON parsing),
//! compares it with `v1` in constant time, and refuses a `t` too far from its clock (five
//! minutes is usual) so a captured request cannot be replayed later; the CloudEvent `id`
//! (with `source`) lets it drop a delivery it already has. Every attempt is signed afresh,
//! so a retry carries a current `t`. More `v1=` entries may follow in a later version (a
//! secret rotation): accept the request when any of them matches.

use std::fmt::Write as _;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The header name.
pub const HEADER: &str = "Autopilot-Signature";

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
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

/// The header value for `body` signed with `secret` at `t` (Unix seconds).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret, t, body).finalize().into_bytes())
    )
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not `t=<digits>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// `t` is further than the tolerance from now.
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No `v1` matches.
    #[error("signature mismatch")]
    Mismatch,
}

/// Checks a header value against `body` as a receiver would: `t` within `tolerance_secs` of
/// `now` and some `v1` equal (in constant time) to the HMAC of `"<t>.<body>"`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match k {
            "t" => t = Some(v.parse::<u64>().map_err(|_| VerifyError::Malformed)?),
            "v1" => sigs.push(unhex(v).ok_or(VerifyError::Malformed)?),
            _ => {} // later schemes
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if sigs.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if t.abs_diff(now) > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let ok = sigs
        .iter()
        .any(|s| mac(secret, t, body).verify_slice(s).is_ok());
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"0123456789abcdef",
        //   b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }

    #[test]
    fn verifies_and_refuses() {
        let key = b"a-signing-secret-of-some-length";
        let body = br#"{"specversion":"1.0"}"#;
        let h = sign(key, 1000, body);
        assert_eq!(verify(key, &h, body, 1010, 300), Ok(()));
        assert_eq!(
            verify(key, &h, br#"{"specversion":"1.1"}"#, 1010, 300),
            Err(VerifyError::Mismatch),
            "another body"
        );
        assert_eq!(
            verify(b"another-secret-entirely", &h, body, 1010, 300),
            Err(VerifyError::Mismatch),
            "another key"
        );
        assert_eq!(verify(key, &h, body, 2000, 300), Err(VerifyError::Stale));
        let forged_t = h.replace("t=1000", "t=1001");
        assert_eq!(
            verify(key, &forged_t, body, 1010, 300),
            Err(VerifyError::Mismatch),
            "the timestamp is signed"
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(key, bad, body, 1, 300),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
        let rotated = format!("{h},v1={}", "00".repeat(32));
        assert_eq!(
            verify(key, &rotated, body, 1010, 300),
            Ok(()),
            "any v1 may match"
        );
    }
}
